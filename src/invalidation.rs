//! Cache invalidation events and the Postgres listener that receives them.
//!
//! Triggers in the database (see `migrations/`) NOTIFY the channel
//! `authgate_<schema>` (`authgate_strapi5_<schema>` in the strapi5 layout,
//! whose triggers are opt-in) on every change that can alter a decision. Each
//! replica keeps one dedicated connection that `LISTEN`s there and applies
//! each event to its cache precisely: a token (by hash, or by id), every
//! token of an owner, every token of the users of a role.
//!
//! The connection itself, and the proof that it hears what is sent, are
//! in [`listener`].

mod listener;

pub use listener::{listen, Listener, ListenerStatus};

use std::time::SystemTime;

use crate::cache::TokenCache;
use crate::known::KnownHashes;
use crate::metrics::Metrics;
use crate::model::TokenRecord;
use crate::token::TokenHash;

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A token row; with its hash when known.
    Token { id: i64, hash: Option<TokenHash> },
    /// A user's status, email or roles.
    User(i64),
    /// A role's permissions or code.
    Role(i64),
    /// Anything: forget everything.
    All,
}

/// An event and when the database emitted it (Unix ms), if it said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub event: Event,
    pub sent_ms: Option<u64>,
}

impl Message {
    /// Parse `token:<id>[:<hash>]`, `user:<id>`, `role:<id>` or `all`,
    /// optionally followed by `@<unix ms>`.
    pub fn parse(payload: &str) -> Option<Message> {
        let (body, sent_ms) = match payload.rsplit_once('@') {
            Some((b, ms)) => (b, Some(ms.parse().ok()?)),
            None => (payload, None),
        };
        let mut parts = body.split(':');
        let event = match (parts.next()?, parts.next(), parts.next(), parts.next()) {
            ("all", None, None, None) => Event::All,
            ("token", Some(id), hash, None) => Event::Token {
                id: id.parse().ok()?,
                hash: match hash {
                    Some(h) => Some(TokenHash::from_hex(h)?),
                    None => None,
                },
            },
            ("user", Some(id), None, None) => Event::User(id.parse().ok()?),
            ("role", Some(id), None, None) => Event::Role(id.parse().ok()?),
            _ => return None,
        };
        Some(Message { event, sent_ms })
    }

    /// The wire form (inverse of [`Message::parse`]).
    pub fn encode(&self) -> String {
        let body = match &self.event {
            Event::All => "all".to_owned(),
            Event::Token { id, hash: Some(h) } => format!("token:{id}:{}", h.to_hex()),
            Event::Token { id, hash: None } => format!("token:{id}"),
            Event::User(id) => format!("user:{id}"),
            Event::Role(id) => format!("role:{id}"),
        };
        match self.sent_ms {
            Some(ms) => format!("{body}@{ms}"),
            None => body,
        }
    }
}

/// Apply one event to a cache.
pub async fn apply<V>(cache: &TokenCache<V>, event: &Event)
where
    V: AsRef<TokenRecord> + Send + Sync + 'static,
{
    match event {
        // The id covers every record of the token, under any key; the
        // hash, a cached absence of it.
        Event::Token { id, hash } => cache.invalidate_token(*id, hash.as_ref()).await,
        Event::User(id) => cache.invalidate_owner(*id),
        Event::Role(id) => cache.invalidate_role(*id),
        Event::All => cache.invalidate_all(),
    }
}

/// Receive a message from `source`: apply it and count it.
pub async fn receive<V>(
    cache: &TokenCache<V>,
    known: &KnownHashes,
    metrics: &Metrics,
    source: &str,
    payload: &str,
) where
    V: AsRef<TokenRecord> + Send + Sync + 'static,
{
    let Some(msg) = Message::parse(payload) else {
        tracing::warn!(source, "ignoring an unreadable invalidation message");
        return;
    };
    if let Event::Token { hash: Some(h), .. } = &msg.event {
        known.insert(h);
    }
    apply(cache, &msg.event).await;
    metrics.invalidations.with_label_values(&[source]).inc();
    if let Some(sent) = msg.sent_ms {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        metrics
            .invalidation_lag
            .observe(now.saturating_sub(sent) as f64 / 1000.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_encode() {
        let h = "ab".repeat(64);
        let rows = [
            (format!("token:5:{h}@1700000000123"), true),
            ("token:5@1".to_owned(), true),
            ("token:5".to_owned(), true),
            ("user:9@2".to_owned(), true),
            ("role:3".to_owned(), true),
            ("all".to_owned(), true),
            ("token:x".to_owned(), false),
            ("token:5:nothex".to_owned(), false),
            ("user:1:2".to_owned(), false),
            ("group:1".to_owned(), false),
            ("user:1@soon".to_owned(), false),
            (String::new(), false),
        ];
        for (payload, ok) in rows {
            let m = Message::parse(&payload);
            assert_eq!(m.is_some(), ok, "{payload}");
            if let Some(m) = m {
                assert_eq!(m.encode(), payload);
            }
        }
        let m = Message::parse(&format!("token:5:{h}@7")).unwrap();
        assert_eq!(
            m.event,
            Event::Token {
                id: 5,
                hash: TokenHash::from_hex(&h)
            }
        );
        assert_eq!(m.sent_ms, Some(7));
    }
}
