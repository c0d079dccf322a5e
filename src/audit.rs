//! The audit trail: who did what to which token, user or role, and proof
//! that the record was not edited.
//!
//! Every management write (CLI, REST API, web page, bootstrap file) appends
//! exactly one [`Event`] in the same transaction as the change
//! (`store::native::append_event`), so an event never exists without its
//! change and a change that rolls back leaves none. Showing a key again
//! (`*-token.view-key`) is an event of its own.
//!
//! **The chain.** Events are numbered from a database sequence (1, 2, 3,
//! ...; a write that rolls back leaves a gap, and a wiped table does not
//! start again at 1) under a transaction-level advisory lock, so concurrent
//! writers (two replicas, a CLI beside them) produce one chain. Each event
//! stores the previous event's hash and its own: `hash = hex(HMAC-SHA256(
//! key, prev_hash "\n" canonical))`, where `canonical` is the event's JSON
//! with a fixed field order (every field but `hash`; see
//! [`Event::canonical`]). The key is `audit.key`, or one derived from
//! `tokens.salt` when that is unset ([`AuditKey::from_config`]). [`verify`]
//! walks the chain and names the first event that was edited, deleted or
//! reordered.
//!
//! **What may be deleted.** A database trigger refuses `UPDATE` and
//! `TRUNCATE`, and a `DELETE` of any event that no retention checkpoint
//! already in the table names (migration `0006_audit_anchor.sql`): the
//! retention job appends an `audit.checkpoint` event naming the cut first,
//! then deletes up to it, so a pruned chain still verifies; the newest
//! event can never go. No session setting switches this off.
//!
//! **The head.** The chain alone cannot show that its newest events were
//! cut by someone who can switch triggers off (the table's owner). So every
//! `authgate::audit` log line carries the head it leaves (`head=ID:HASH`),
//! to keep outside the database (a SIEM), and [`verify_head`] (`audit
//! verify --head ID:HASH`) fails when the table's chain does not reach it.
//!
//! **Request ids.** `request_id` is authgate's own id of the request (the
//! management listener makes one for every request); what the client sent
//! as `X-Request-Id`, when it is a plain id, is kept apart as
//! `client_request_id`, never in its place.
//!
//! No event holds a key, a key's hash or an encrypted key.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::Mac;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::config::Config;

/// The permission that reads the audit trail (Strapi Enterprise's name);
/// super admins hold it, and so does the bootstrap token.
pub const READ_PERMISSION: &str = "admin::audit-logs.read";

/// The action of a checkpoint left by the retention job.
pub const CHECKPOINT: &str = "audit.checkpoint";

/// The `prev_hash` of the first event ever written.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Which way in a management action came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Cli,
    Api,
    Ui,
    Bootstrap,
    /// The retention job (checkpoints only).
    Retention,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Cli => "cli",
            Via::Api => "api",
            Via::Ui => "ui",
            Via::Bootstrap => "bootstrap",
            Via::Retention => "retention",
        }
    }
}

/// Where a management request came from, beyond who made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub via: Via,
    /// authgate's own id of the request.
    pub request_id: Option<String>,
    /// What the client sent as `X-Request-Id` (a plain id only: see
    /// [`crate::request_id::is_sane`]), recorded apart and labelled.
    pub client_request_id: Option<String>,
    pub client_ip: Option<IpAddr>,
}

impl Origin {
    pub fn cli() -> Self {
        Self {
            via: Via::Cli,
            request_id: None,
            client_request_id: None,
            client_ip: None,
        }
    }

    pub fn bootstrap() -> Self {
        Self {
            via: Via::Bootstrap,
            ..Self::cli()
        }
    }

    pub fn retention() -> Self {
        Self {
            via: Via::Retention,
            ..Self::cli()
        }
    }
}

/// The actor of the host CLI without `--as`, the bootstrap file and the
/// retention job.
pub const OPERATOR: &str = "operator";

/// Who acted, how, and with which chain key: what a store write needs to
/// append its event.
#[derive(Debug, Clone)]
pub struct AuditCtx {
    /// The admin user's email, or `operator` for the host CLI.
    pub actor: String,
    pub origin: Origin,
    pub key: AuditKey,
}

/// What a write records, before the store numbers, stamps and chains it.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    pub action: String,
    pub target: Target,
    /// `{"field": {"before": .., "after": ..}}` for the fields that changed.
    pub changes: Value,
}

/// What an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `api-token`, `admin-token`, `user`, `role` or `audit`.
    pub kind: &'static str,
    pub id: i64,
    pub name: String,
}

/// One recorded event, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: i64,
    /// UTC, microsecond precision (what Postgres keeps).
    pub at: SystemTime,
    pub action: String,
    pub actor: String,
    pub via: String,
    pub target_kind: String,
    pub target_id: i64,
    pub target_name: String,
    pub changes: Value,
    /// authgate's own request id.
    pub request_id: Option<String>,
    /// The client's `X-Request-Id`, apart (`None` on events written before
    /// it was recorded).
    pub client_request_id: Option<String>,
    pub client_ip: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

/// The chain's HMAC key.
#[derive(Clone)]
pub struct AuditKey(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(<redacted>)")
    }
}

impl AuditKey {
    pub fn new(key: &[u8]) -> Self {
        Self(Zeroizing::new(key.to_vec()))
    }

    /// `audit.key`, else a key derived from `tokens.salt` (so upgrading needs
    /// no new setting; [`AuditKey::is_derived`] says which).
    pub fn from_config(cfg: &Config) -> Self {
        match &cfg.audit.key {
            Some(k) => Self::new(k.expose().as_bytes()),
            None => {
                let mut mac = crate::token::hmac_sha256(cfg.tokens.salt.expose().as_bytes());
                mac.update(b"authgate audit chain key v1");
                Self::new(&mac.finalize().into_bytes())
            }
        }
    }

    pub fn is_derived(cfg: &Config) -> bool {
        cfg.audit.key.is_none()
    }

    /// `hex(HMAC-SHA256(key, prev "\n" canonical))`.
    pub fn chain(&self, prev: &str, canonical: &str) -> String {
        let mut mac = crate::token::hmac_sha256(&self.0);
        mac.update(prev.as_bytes());
        mac.update(b"\n");
        mac.update(canonical.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// A time as RFC 3339 UTC with microseconds, the form the chain hashes.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

/// A `since` filter: a duration back from now (`24h`, `7d`) or an RFC 3339
/// time; `None` when it is neither.
pub fn parse_since(s: &str) -> Option<SystemTime> {
    humantime::parse_duration(s)
        .ok()
        .and_then(|d| SystemTime::now().checked_sub(d))
        .or_else(|| humantime::parse_rfc3339_weak(s).ok())
}

/// `t` truncated to whole microseconds (what a timestamptz keeps).
pub fn to_micros(t: SystemTime) -> SystemTime {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    UNIX_EPOCH + Duration::from_micros(d.as_micros() as u64)
}

impl Event {
    /// Stamp a draft as event `id` after `prev_hash`.
    pub fn seal(id: i64, at: SystemTime, draft: Draft, ctx: &AuditCtx, prev_hash: &str) -> Self {
        let mut e = Event {
            id,
            at: to_micros(at),
            action: draft.action,
            actor: ctx.actor.clone(),
            via: ctx.origin.via.as_str().to_owned(),
            target_kind: draft.target.kind.to_owned(),
            target_id: draft.target.id,
            target_name: draft.target.name,
            changes: draft.changes,
            request_id: ctx.origin.request_id.clone(),
            client_request_id: ctx.origin.client_request_id.clone(),
            client_ip: ctx.origin.client_ip.map(|ip| ip.to_string()),
            prev_hash: prev_hash.to_owned(),
            hash: String::new(),
        };
        e.hash = ctx.key.chain(prev_hash, &e.canonical());
        e
    }

    /// The hashed form: every field but `hash` and `prev_hash` (which the
    /// HMAC covers separately), in this order, as compact JSON (`changes`
    /// with its keys sorted, as serde_json keeps maps). The client's request
    /// id is a tenth element, present only when there is one: events from
    /// before it was recorded keep their nine and verify as written, and an
    /// id added to one, or removed, changes its length and so its hash.
    pub fn canonical(&self) -> String {
        let mut fields = vec![
            json!(self.id),
            json!(rfc3339(self.at)),
            json!(self.action),
            json!(self.actor),
            json!(self.via),
            json!([self.target_kind, self.target_id, self.target_name]),
            self.changes.clone(),
            json!(self.request_id),
            json!(self.client_ip),
        ];
        if let Some(c) = &self.client_request_id {
            fields.push(json!(c));
        }
        Value::Array(fields).to_string()
    }

    /// `ID:HASH`, the head this event leaves (see [`verify_head`]).
    pub fn head(&self) -> String {
        format!("{}:{}", self.id, self.hash)
    }

    /// The event as `audit list --json` and the API show it (Strapi
    /// Enterprise's audit-log shape plus the chain fields).
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "at": rfc3339(self.at),
            "action": self.action,
            "actor": self.actor,
            "via": self.via,
            "target": {"kind": self.target_kind, "id": self.target_id, "name": self.target_name},
            "changes": self.changes,
            "request_id": self.request_id,
            "client_request_id": self.client_request_id,
            "client_ip": self.client_ip,
            "hash": self.hash,
        })
    }

    /// One structured log line (target `authgate::audit`) for a SIEM, with
    /// the head the event leaves (`head=ID:HASH`): kept outside the
    /// database, it is what `audit verify --head` checks the table against.
    pub fn log(&self) {
        tracing::info!(
            target: "authgate::audit",
            id = self.id,
            action = %self.action,
            actor = %self.actor,
            via = %self.via,
            target_kind = %self.target_kind,
            target_id = self.target_id,
            target_name = %self.target_name,
            changes = %self.changes,
            request_id = self.request_id.as_deref().unwrap_or("-"),
            client_request_id = self.client_request_id.as_deref().unwrap_or("-"),
            client_ip = self.client_ip.as_deref().unwrap_or("-"),
            hash = %self.hash,
            head = %self.head(),
            "audit event"
        );
    }
}

/// `{"field": {"before": b, "after": a}}` for each pair that differs.
pub fn changes(fields: &[(&str, Value, Value)]) -> Value {
    let mut m = serde_json::Map::new();
    for (name, before, after) in fields {
        if before != after {
            m.insert(
                (*name).to_owned(),
                json!({"before": before, "after": after}),
            );
        }
    }
    Value::Object(m)
}

/// Why a chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    #[error("event {0} was edited (its hash does not match its contents)")]
    Edited(i64),
    #[error("the event before event {0} was deleted or the events were reordered")]
    Unlinked(i64),
    #[error("events before event {0} were deleted without a checkpoint")]
    CutWithoutCheckpoint(i64),
    #[error("the chain does not reach the head {head} ({end}): its newest events were cut")]
    HeadNotReached { head: i64, end: String },
    #[error("event {0} is not the head you hold (its hash differs): the chain was rewritten")]
    HeadMismatch(i64),
    #[error("the head {head} is older than the oldest event kept ({first}, pruned by retention): check against a newer head")]
    HeadPruned { head: i64, first: i64 },
}

/// A head kept outside the database: `ID:HASH` from an `authgate::audit`
/// log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub id: i64,
    pub hash: String,
}

impl std::str::FromStr for Head {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (id, hash) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}`: expected ID:HASH (the head= of an audit log line)"))?;
        let id = id
            .parse::<i64>()
            .ok()
            .filter(|i| *i > 0)
            .ok_or_else(|| format!("`{id}`: expected an event id"))?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("the hash must be 64 hex characters".into());
        }
        Ok(Head {
            id,
            hash: hash.to_ascii_lowercase(),
        })
    }
}

/// [`verify`], and then that the chain reaches `head`: the event with its
/// id is there with its hash. A head past the table's newest event (or a
/// head whose id is missing from the chain) means events were cut from its
/// end; a head below the oldest event kept cannot be checked (the
/// retention job pruned it), which is a failure too, so the operator takes
/// a newer head rather than trusting a check that did not happen.
pub fn verify_head(events: &[Event], key: &AuditKey, head: &Head) -> Result<usize, Broken> {
    let n = verify(events, key)?;
    match events.iter().find(|e| e.id == head.id) {
        Some(e) if e.hash == head.hash => Ok(n),
        Some(e) => Err(Broken::HeadMismatch(e.id)),
        None => match events.first() {
            Some(first) if head.id < first.id => Err(Broken::HeadPruned {
                head: head.id,
                first: first.id,
            }),
            _ => Err(Broken::HeadNotReached {
                head: head.id,
                end: events.last().map_or("the table is empty".to_owned(), |l| {
                    format!("it ends at event {}", l.id)
                }),
            }),
        },
    }
}

/// Walk `events` (in id order, as read): each must hash to its own `hash`
/// under `key`, follow its predecessor's hash and id, and the first must
/// start the chain or follow a checkpoint's cut. Returns the number of
/// events checked.
pub fn verify(events: &[Event], key: &AuditKey) -> Result<usize, Broken> {
    let Some(first) = events.first() else {
        return Ok(0);
    };
    for e in events {
        if key.chain(&e.prev_hash, &e.canonical()) != e.hash {
            return Err(Broken::Edited(e.id));
        }
    }
    if !(first.id == 1 && first.prev_hash == GENESIS) {
        // Pruned: some (verified) checkpoint must name exactly this cut:
        // the last event deleted (below the first kept) and its hash.
        let cut = events.iter().any(|c| {
            c.action == CHECKPOINT
                && c.changes["pruned_through"]
                    .as_i64()
                    .is_some_and(|through| through < first.id)
                && c.changes["last_hash"].as_str() == Some(first.prev_hash.as_str())
        });
        if !cut {
            return Err(Broken::CutWithoutCheckpoint(first.id));
        }
    }
    // Ids only grow (a rolled-back write leaves a gap); the hashes link
    // each event to the one before it, which is what proves none is gone.
    for pair in events.windows(2) {
        if pair[1].id <= pair[0].id || pair[1].prev_hash != pair[0].hash {
            return Err(Broken::Unlinked(pair[1].id));
        }
    }
    Ok(events.len())
}

#[cfg(test)]
mod tests;
