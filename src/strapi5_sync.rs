//! The strapi5 layout's change poller: Strapi announces nothing, so
//! authgate looks.
//!
//! Every `postgres.poll_interval` (250 ms by default) one query computes a
//! fingerprint of each table a decision reads: `count(*)`, `max(id)` and
//! `sum(hashtext(row(<the columns a decision reads>, <version>)::text))`.
//! The checksum sees every change of those columns, whether or not the
//! writer touched `updated_at` (link tables have none). The version is the
//! row's `xmin` (the transaction that last wrote it), so a change undone
//! before the next poll (a user deactivated and restored) still moves the
//! fingerprint: a lookup made in between may have cached the middle state.
//! Tokens are versioned by `updated_at` instead, which Strapi sets on every
//! edit, so that `last_used_at`, which authgate itself writes, moves nothing.
//! When a table's fingerprint moves, that table alone is re-read (id, link
//! ids and a row digest), diffed against the previous snapshot, and each
//! changed row becomes the invalidation event the triggers would have sent
//! ([`events`]): a token, a user, a role. A re-read of `strapi_api_tokens`
//! also replaces the known-hash set, so it stays exact (deleted keys
//! leave it too).
//!
//! With authgate's triggers installed and the listener connected, the
//! poller watches only `strapi_api_tokens` (for the known-hash set: a
//! request with an unknown key waits for a poll instead of costing a
//! lookup, see `known`) and the stored content types (the triggers do not
//! cover `strapi_core_store_settings`): when Strapi rewrites
//! [`crate::content_types::CORE_STORE_KEY`] the route table is rebuilt
//! ([`crate::policy::PolicyStore`]). Whenever the listener is down, the
//! poller watches everything, so changes keep arriving within one
//! interval.
//!
//! The snapshots outlive reconnects: changes made while the poller could
//! not reach the database are found by the next diff.
//!
//! This module keeps the snapshots, the diff and the events; the store
//! ([`crate::store::strapi5::watch`]) holds the statements that read
//! Strapi's tables, and answers in [`Table`]s, fingerprints and rows.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::IsolationLevel;

use crate::store::sql::Db;

use crate::cache::TokenCache;
use crate::config::PostgresConfig;
use crate::content_types;
use crate::invalidation::{self, Event, ListenerStatus};
use crate::known::{KnownHashes, Loading};
use crate::metrics::Metrics;
use crate::model::TokenRecord;
use crate::policy::PolicyStore;
use crate::store::strapi5::watch::{self, Fingerprint, RowKind, RowState, Snapshot, Table};
use crate::store::{self, StoreError};
use crate::token::TokenHash;

/// What a changed row of a watched table means for the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// The row is a token.
    Token,
    /// The row is a content-API permission: the tokens linked to it.
    ContentPermission,
    /// The row is an admin permission: the roles and tokens linked to it.
    AdminPermission,
    /// The row is a user.
    User,
    /// The row is a role.
    Role,
    /// A link row: the token it links.
    TokenLink,
    /// A link row: the user it links.
    UserLink,
    /// A link row: the role it links.
    RoleLink,
}

/// What a change of a row of `table` means. A link row names its token,
/// user or role: an owner link changes the token (not the user), a role
/// link the user (not the role), a permission link the role or token
/// holding it.
fn effect(table: Table) -> Effect {
    match table {
        Table::Tokens => Effect::Token,
        Table::TokenPermissions => Effect::ContentPermission,
        Table::TokenPermissionLinks => Effect::TokenLink,
        Table::TokenOwnerLinks => Effect::TokenLink,
        Table::Users => Effect::User,
        Table::UserRoleLinks => Effect::UserLink,
        Table::Roles => Effect::Role,
        Table::AdminPermissions => Effect::AdminPermission,
        Table::RolePermissionLinks => Effect::RoleLink,
        Table::TokenAdminPermissionLinks => Effect::TokenLink,
    }
}

/// The rows of `table` whose state differs between `old` and `new`
/// (added, removed or changed), with both states.
fn changed(old: &Snapshot, new: &Snapshot) -> Vec<(i64, Option<RowState>, Option<RowState>)> {
    let mut out: Vec<_> = new
        .iter()
        .filter(|(id, s)| old.get(id) != Some(s))
        .map(|(id, s)| (*id, old.get(id).copied(), Some(*s)))
        .collect();
    out.extend(
        old.iter()
            .filter(|(id, _)| !new.contains_key(id))
            .map(|(id, s)| (*id, Some(*s), None)),
    );
    out.sort_by_key(|c| c.0);
    out
}

/// The rows of the link table `links` whose `from` id is `id`: their `to`
/// ids, from the current snapshots `now`.
fn linked(
    now: &[Snapshot],
    links: Table,
    from: RowKind,
    id: i64,
    to: RowKind,
) -> impl Iterator<Item = i64> + '_ {
    let (at, other) = (links.link(from), links.link(to));
    now[links.index()]
        .values()
        .filter(move |r| at.is_some_and(|at| r.links[at] == Some(id)))
        .filter_map(move |r| other.and_then(|o| r.links[o]))
}

/// The invalidation events of a diff of `table`, given every table's
/// current snapshot (the link tables, to follow a permission to its roles
/// and tokens) and the keys of the tokens just re-read.
fn events(
    table: Table,
    old: &Snapshot,
    now: &[Snapshot],
    keys: &HashMap<i64, TokenHash>,
) -> Vec<Event> {
    let mut out = Vec::new();
    for (id, before, after) in changed(old, &now[table.index()]) {
        let link = |kind: RowKind| {
            let n = table.link(kind);
            [before, after]
                .into_iter()
                .flatten()
                .filter_map(move |s| n.and_then(|n| s.links.get(n).copied().flatten()))
        };
        match effect(table) {
            Effect::Token => out.push(Event::Token {
                id,
                hash: keys.get(&id).copied(),
            }),
            Effect::User => out.push(Event::User(id)),
            Effect::Role => out.push(Event::Role(id)),
            Effect::TokenLink => {
                out.extend(link(RowKind::Token).map(|id| Event::Token { id, hash: None }))
            }
            Effect::UserLink => out.extend(link(RowKind::User).map(Event::User)),
            Effect::RoleLink => out.extend(link(RowKind::Role).map(Event::Role)),
            Effect::ContentPermission => out.extend(
                linked(
                    now,
                    Table::TokenPermissionLinks,
                    RowKind::ContentPermission,
                    id,
                    RowKind::Token,
                )
                .map(|id| Event::Token { id, hash: None }),
            ),
            Effect::AdminPermission => {
                let (from, table) = (RowKind::AdminPermission, Table::RolePermissionLinks);
                out.extend(linked(now, table, from, id, RowKind::Role).map(Event::Role));
                out.extend(
                    linked(
                        now,
                        Table::TokenAdminPermissionLinks,
                        from,
                        id,
                        RowKind::Token,
                    )
                    .map(|id| Event::Token { id, hash: None }),
                );
            }
        }
    }
    out.dedup();
    out
}

/// What the poller keeps between polls.
#[derive(Default)]
struct State {
    /// By table; `None` until the table is first read (until then a diff
    /// means nothing).
    fingerprints: Vec<Option<Fingerprint>>,
    snapshots: Vec<Snapshot>,
    content_types: Option<Fingerprint>,
}

/// Everything the poller updates.
pub struct Targets<V> {
    pub cache: Arc<TokenCache<V>>,
    pub known: Arc<KnownHashes>,
    pub policy: Arc<PolicyStore>,
    pub metrics: Metrics,
    pub listener: ListenerStatus,
}

/// `f`, bounded by `postgres.query_timeout`.
async fn timed<T, E, F>(cfg: &PostgresConfig, f: F) -> Result<T, StoreError>
where
    F: std::future::Future<Output = Result<T, E>>,
    StoreError: From<E>,
{
    tokio::time::timeout(cfg.query_timeout, f)
        .await
        .map_err(|_| StoreError::Unavailable("change poll timed out".into()))?
        .map_err(StoreError::from)
}

/// Read Strapi's stored content types (`None`: no such row).
pub async fn read_content_types(
    client: &impl Db,
) -> Result<Option<content_types::Discovered>, StoreError> {
    let stored = watch::stored_content_types(client, content_types::CORE_STORE_KEY).await?;
    let Some(value) = stored else { return Ok(None) };
    content_types::parse(&value)
        .map(Some)
        .map_err(|e| StoreError::Invalid(e.to_string()))
}

/// Read the stored content types into the policy; logs what it found.
pub async fn load_content_types(client: &impl Db, policy: &PolicyStore) -> Result<(), StoreError> {
    match read_content_types(client).await? {
        Some(d) => {
            let uids: Vec<&str> = d.types.iter().map(|t| t.uid.as_str()).collect();
            tracing::info!(content_types = ?uids, "content types read from Strapi");
            policy.set_found(d.types);
        }
        None => {
            tracing::warn!(
                "strapi5 layout: no `{}` row in strapi_core_store_settings; only [[content_types]] are mapped",
                content_types::CORE_STORE_KEY
            );
            policy.set_found(Vec::new());
        }
    }
    Ok(())
}

/// One poll. `full`: every table (no triggers, or no listener); else the
/// tokens only (for the known-hash set: the triggers announce the rest).
/// The content types in both cases.
///
/// The whole poll reads one snapshot (a read-only repeatable-read
/// transaction): the fingerprints, the re-reads and the link tables a diff
/// follows all show the same moment. Read at different moments, a
/// permission re-read before a change and its link table after it can
/// each look unchanged, and the change is never announced.
async fn poll_once<V>(
    client: &mut tokio_postgres::Client,
    cfg: &PostgresConfig,
    state: &mut State,
    t: &Targets<V>,
    full: bool,
) -> Result<(), StoreError>
where
    V: AsRef<TokenRecord> + Send + Sync + 'static,
{
    let which: &[Table] = if full { &Table::ALL } else { &[Table::Tokens] };
    let tx = timed(
        cfg,
        client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start(),
    )
    .await?;
    timed(cfg, tx.batch_execute(&store::sql::settings_of(cfg))).await?;
    let key = content_types::CORE_STORE_KEY;
    let prints = timed(cfg, watch::fingerprints(&tx, which, key)).await?;
    state.fingerprints.resize(Table::ALL.len(), None);
    state
        .snapshots
        .resize_with(Table::ALL.len(), Snapshot::default);
    let mut olds = Vec::new();
    let mut keys = None;
    let mut first_load = false;
    for (&table, print) in which.iter().zip(&prints.tables) {
        let i = table.index();
        let before = state.fingerprints[i];
        if before == Some(*print) {
            continue;
        }
        let read = timed(cfg, watch::reread(&tx, table)).await?;
        if table == Table::Tokens {
            keys = Some(read.keys);
        }
        let old = std::mem::replace(&mut state.snapshots[i], read.rows);
        if before.is_some() {
            olds.push((table, old));
        } else {
            first_load = true;
        }
        state.fingerprints[i] = Some(*print);
    }
    if first_load {
        // Records cached before this first read may predate a change it
        // already contains: nothing to diff against, so forget them all.
        t.cache.invalidate_all();
    }
    let no_keys = HashMap::new();
    for (table, old) in &olds {
        for e in events(
            *table,
            old,
            &state.snapshots,
            keys.as_ref().unwrap_or(&no_keys),
        ) {
            invalidation::apply(&t.cache, &e).await;
            t.metrics.invalidations.with_label_values(&["poll"]).inc();
        }
    }
    if let Some(keys) = &keys {
        let mut loading = Loading::default();
        for h in keys.values() {
            loading.add(h);
        }
        t.known.replace_polled(loading);
    }
    let content_types_now = prints.content_types;
    if state.content_types != Some(content_types_now) {
        match load_content_types(&tx, &t.policy).await {
            Ok(()) => {}
            // A stored value we cannot read: keep what we had, say so once.
            Err(StoreError::Invalid(e)) => {
                tracing::warn!(error = %e, "strapi5 layout: cannot read Strapi's content types; keeping the previous ones")
            }
            Err(e) => return Err(e),
        }
        state.content_types = Some(content_types_now);
    }
    timed(cfg, tx.commit()).await
}

/// How often the catalog is checked for authgate's triggers.
const INSPECT_EVERY: Duration = Duration::from_secs(10);

/// Poll until `shutdown`, reconnecting with backoff (100 ms to 5 s).
pub async fn run<V>(
    cfg: PostgresConfig,
    t: Targets<V>,
    shutdown: impl std::future::Future<Output = ()>,
) where
    V: AsRef<TokenRecord> + Send + Sync + 'static,
{
    tokio::pin!(shutdown);
    let mut state = State::default();
    let mut backoff = Duration::from_millis(100);
    // A polled set is trusted (and a waiting request waits) this long.
    let fresh_for = (cfg.poll_interval * 4).max(Duration::from_millis(200));
    loop {
        let session = async {
            let mut client = store::connect(&cfg).await?;
            let mut triggers = watch::triggers_installed(&client, &cfg.schema).await?;
            let mut inspected = Instant::now();
            let mut tick = tokio::time::interval(cfg.poll_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if inspected.elapsed() >= INSPECT_EVERY {
                    triggers = watch::triggers_installed(&client, &cfg.schema).await?;
                    inspected = Instant::now();
                }
                let full = !(triggers && t.listener.is_listening());
                let started_at = Instant::now();
                let n = t.known.poll_started();
                let r = poll_once(&mut client, &cfg, &mut state, &t, full).await;
                t.known.poll_done(n, started_at, r.is_ok(), fresh_for);
                r?;
                backoff = Duration::from_millis(100);
            }
            #[allow(unreachable_code)]
            Ok::<(), StoreError>(())
        };
        tokio::select! {
            r = session => if let Err(e) = r {
                tracing::warn!(error = %e, retry_in = ?backoff, "strapi5 change poller failed");
            },
            _ = &mut shutdown => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = &mut shutdown => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests;
