//! The Redis fan-out of a management command: replicas hear about changes
//! from Postgres triggers; with Redis configured the change is also
//! published there, for replicas whose Postgres connection cannot LISTEN
//! (e.g. behind PgBouncer).

use std::time::SystemTime;

use super::{Command, RoleCmd, TokenCmd, UpdateArgs, UserCmd};
use crate::config::Config;
use crate::invalidation::{Event, Message};
use crate::store::Store;

/// What a management command is about to change, for the Redis fan-out.
pub(super) async fn changed_by(store: &Store, cmd: &Command) -> Option<Event> {
    let user = |email: &str| {
        let email = email.to_owned();
        async move {
            store
                .user_by_email(&email)
                .await
                .ok()
                .flatten()
                .map(|u| Event::User(u.id))
        }
    };
    let role = |name: &str| {
        let name = name.to_owned();
        async move {
            let roles = store.list_roles().await.ok()?;
            roles
                .into_iter()
                .find(|r| r.name == name)
                .map(|r| Event::Role(r.id))
        }
    };
    match cmd {
        Command::Token(
            TokenCmd::Regenerate { id, .. }
            | TokenCmd::Delete { id, .. }
            | TokenCmd::Update(UpdateArgs { id, .. }),
        ) => Some(Event::Token {
            id: *id,
            hash: None,
        }),
        Command::User(
            UserCmd::Deactivate { email }
            | UserCmd::Activate { email }
            | UserCmd::Block { email }
            | UserCmd::Unblock { email }
            | UserCmd::Delete { email }
            | UserCmd::AddRole { email, .. }
            | UserCmd::RemoveRole { email, .. },
        ) => user(email).await,
        Command::Role(
            RoleCmd::Grant { role: r, .. }
            | RoleCmd::Revoke { role: r, .. }
            | RoleCmd::Delete { name: r },
        ) => role(r).await,
        _ => None,
    }
}

/// Publish `event` on Redis (`cfg.redis` set), warning when it could not be
/// sent: replicas then rely on Postgres NOTIFY and the cache TTL.
pub(super) async fn publish(cfg: &Config, event: Event) {
    let Some(r) = &cfg.redis else { return };
    let metrics = crate::metrics::Metrics::new();
    let channel = crate::redis_link::channel(&cfg.postgres.schema);
    match crate::redis_link::RedisLink::new(r, channel, metrics.clone()) {
        Ok(link) => {
            link.connect_now().await;
            let sent_ms = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            link.publish(
                &Message {
                    event,
                    sent_ms: Some(sent_ms),
                }
                .encode(),
            )
            .await;
            if metrics.redis_errors.with_label_values(&["publish"]).get() > 0 {
                say_err!("authgate: warning: could not publish the change to redis; replicas rely on Postgres NOTIFY and the cache TTL");
            }
        }
        Err(e) => say_err!("authgate: warning: {e}"),
    }
}
