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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::{GenericClient, IsolationLevel};

use crate::cache::TokenCache;
use crate::config::PostgresConfig;
use crate::content_types;
use crate::invalidation::{self, Event, ListenerStatus};
use crate::known::{KnownHashes, Loading};
use crate::metrics::Metrics;
use crate::model::TokenRecord;
use crate::policy::PolicyStore;
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
    /// A link row: the token whose id is link column `n`.
    TokenAt(usize),
    /// A link row: the user whose id is link column `n`.
    UserAt(usize),
    /// A link row: the role whose id is link column `n`.
    RoleAt(usize),
}

/// A table the decision reads.
struct Watched {
    table: &'static str,
    /// Link columns (ids of other rows), kept in the snapshot.
    links: &'static [&'static str],
    /// The other columns a decision reads, and the row's version, digested.
    columns: &'static str,
    effect: Effect,
}

const TOKENS: usize = 0;
const TOKEN_PERMISSION_LINKS: usize = 2;
const ROLE_PERMISSION_LINKS: usize = 8;
const TOKEN_ADMIN_PERMISSION_LINKS: usize = 9;

const WATCHED: &[Watched] = &[
    Watched {
        table: "strapi_api_tokens",
        links: &[],
        columns: "access_key, kind, type, name, expires_at, updated_at",
        effect: Effect::Token,
    },
    Watched {
        table: "strapi_api_token_permissions",
        links: &[],
        columns: "action, xmin",
        effect: Effect::ContentPermission,
    },
    Watched {
        table: "strapi_api_token_permissions_token_lnk",
        links: &["api_token_permission_id", "api_token_id"],
        columns: "xmin",
        effect: Effect::TokenAt(1),
    },
    Watched {
        table: "strapi_api_tokens_admin_user_owner_lnk",
        links: &["api_token_id", "user_id"],
        columns: "xmin",
        effect: Effect::TokenAt(0),
    },
    Watched {
        table: "admin_users",
        links: &[],
        columns: "is_active, blocked, email, xmin",
        effect: Effect::User,
    },
    Watched {
        table: "admin_users_roles_lnk",
        links: &["user_id", "role_id"],
        columns: "xmin",
        effect: Effect::UserAt(0),
    },
    Watched {
        table: "admin_roles",
        links: &[],
        columns: "code, xmin",
        effect: Effect::Role,
    },
    Watched {
        table: "admin_permissions",
        links: &[],
        columns: "action, subject, xmin",
        effect: Effect::AdminPermission,
    },
    Watched {
        table: "admin_permissions_role_lnk",
        links: &["permission_id", "role_id"],
        columns: "xmin",
        effect: Effect::RoleAt(1),
    },
    Watched {
        table: "admin_permissions_api_token_lnk",
        links: &["permission_id", "api_token_id"],
        columns: "xmin",
        effect: Effect::TokenAt(1),
    },
];

/// The row expression whose hash is a row's digest.
fn row_expr(w: &Watched) -> String {
    let mut cols = vec!["id".to_owned()];
    cols.extend(w.links.iter().map(|l| (*l).to_owned()));
    if !w.columns.is_empty() {
        cols.push(w.columns.to_owned());
    }
    format!("row({})::text", cols.join(", "))
}

/// The fingerprint of the stored content types (one row, in every mode).
const CONTENT_TYPES_FINGERPRINT: &str = "SELECT count(*)::bigint, coalesce(max(id), 0)::bigint, coalesce(sum(hashtext(coalesce(value, ''))), 0)::bigint FROM strapi_core_store_settings WHERE key = 'strapi_content_types_schema'";

/// One query: the fingerprint of the watched tables `which` (indexes into
/// [`WATCHED`]), then the content types'.
pub fn fingerprint_query(which: &[usize]) -> String {
    let mut parts: Vec<String> = which
        .iter()
        .filter_map(|i| WATCHED.get(*i))
        .map(|w| {
            format!(
                "SELECT count(*)::bigint, coalesce(max(id), 0)::bigint, coalesce(sum(hashtext({})), 0)::bigint FROM {}",
                row_expr(w),
                w.table
            )
        })
        .collect();
    parts.push(CONTENT_TYPES_FINGERPRINT.to_owned());
    parts
        .into_iter()
        .map(|p| format!("({p})"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

/// count, max id, checksum.
type Fingerprint = (i64, i64, i64);

/// A row of a snapshot: its link ids and its digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RowState {
    links: [Option<i64>; 2],
    digest: i32,
}

type Snapshot = HashMap<i64, RowState>;

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

/// The rows of a link table whose column `at` is `id`: the other column.
fn linked(links: &Snapshot, at: usize, id: i64, other: usize) -> impl Iterator<Item = i64> + '_ {
    links
        .values()
        .filter(move |r| r.links[at] == Some(id))
        .filter_map(move |r| r.links[other])
}

/// The invalidation events of a diff of `WATCHED[table]`, given every
/// table's current snapshot (the link tables, to follow a permission to
/// its roles and tokens) and the keys of the tokens just re-read.
fn events(
    table: usize,
    old: &Snapshot,
    now: &[Snapshot],
    keys: &HashMap<i64, TokenHash>,
) -> Vec<Event> {
    let Some(w) = WATCHED.get(table) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (id, before, after) in changed(old, &now[table]) {
        let link = |n: usize| {
            [before, after]
                .into_iter()
                .flatten()
                .filter_map(move |s| s.links.get(n).copied().flatten())
        };
        match w.effect {
            Effect::Token => out.push(Event::Token {
                id,
                hash: keys.get(&id).copied(),
            }),
            Effect::User => out.push(Event::User(id)),
            Effect::Role => out.push(Event::Role(id)),
            Effect::TokenAt(n) => out.extend(link(n).map(|id| Event::Token { id, hash: None })),
            Effect::UserAt(n) => out.extend(link(n).map(Event::User)),
            Effect::RoleAt(n) => out.extend(link(n).map(Event::Role)),
            Effect::ContentPermission => out.extend(
                linked(&now[TOKEN_PERMISSION_LINKS], 0, id, 1)
                    .map(|id| Event::Token { id, hash: None }),
            ),
            Effect::AdminPermission => {
                out.extend(linked(&now[ROLE_PERMISSION_LINKS], 0, id, 1).map(Event::Role));
                out.extend(
                    linked(&now[TOKEN_ADMIN_PERMISSION_LINKS], 0, id, 1)
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

async fn timed<T, F>(cfg: &PostgresConfig, f: F) -> Result<T, StoreError>
where
    F: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
{
    tokio::time::timeout(cfg.query_timeout, f)
        .await
        .map_err(|_| StoreError::Unavailable("change poll timed out".into()))?
        .map_err(StoreError::from)
}

fn fingerprint_of(row: &tokio_postgres::Row) -> Result<Fingerprint, StoreError> {
    Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
}

/// Read Strapi's stored content types (`None`: no such row).
pub async fn read_content_types(
    client: &impl GenericClient,
) -> Result<Option<content_types::Discovered>, StoreError> {
    let row = client
        .query_opt(
            "SELECT value FROM strapi_core_store_settings WHERE key = $1 ORDER BY id LIMIT 1",
            &[&content_types::CORE_STORE_KEY],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let value: Option<String> = row.try_get(0)?;
    let Some(value) = value else { return Ok(None) };
    content_types::parse(&value)
        .map(Some)
        .map_err(|e| StoreError::Invalid(e.to_string()))
}

/// Read the stored content types into the policy; logs what it found.
pub async fn load_content_types(
    client: &impl GenericClient,
    policy: &PolicyStore,
) -> Result<(), StoreError> {
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

/// Re-read one table into a snapshot (and, for the tokens, their keys).
async fn reread(
    client: &impl GenericClient,
    cfg: &PostgresConfig,
    table: usize,
) -> Result<(Snapshot, HashMap<i64, TokenHash>), StoreError> {
    let w = &WATCHED[table];
    let mut cols = vec!["id::bigint".to_owned()];
    for i in 0..2 {
        cols.push(match w.links.get(i) {
            Some(l) => format!("{l}::bigint"),
            None => "NULL::bigint".to_owned(),
        });
    }
    cols.push(format!("hashtext({})", row_expr(w)));
    cols.push(if table == TOKENS {
        "access_key".to_owned()
    } else {
        "NULL::text".to_owned()
    });
    let sql = format!("SELECT {} FROM {}", cols.join(", "), w.table);
    let rows = timed(cfg, client.query(&sql, &[])).await?;
    let mut snap = Snapshot::with_capacity(rows.len());
    let mut keys = HashMap::new();
    for row in &rows {
        let id: i64 = row.try_get(0)?;
        snap.insert(
            id,
            RowState {
                links: [row.try_get(1)?, row.try_get(2)?],
                digest: row.try_get(3)?,
            },
        );
        let key: Option<&str> = row.try_get(4)?;
        if let Some(h) = key.and_then(TokenHash::from_hex) {
            keys.insert(id, h);
        }
    }
    Ok((snap, keys))
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
    let which: Vec<usize> = if full {
        (0..WATCHED.len()).collect()
    } else {
        vec![TOKENS]
    };
    let tx = timed(
        cfg,
        client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start(),
    )
    .await?;
    let client = &tx;
    let rows = timed(cfg, client.query(&fingerprint_query(&which), &[])).await?;
    let prints: Vec<Fingerprint> = rows.iter().map(fingerprint_of).collect::<Result<_, _>>()?;
    if prints.len() != which.len() + 1 {
        return Err(StoreError::Invalid(
            "fingerprint query: wrong row count".into(),
        ));
    }
    state.fingerprints.resize(WATCHED.len(), None);
    state
        .snapshots
        .resize_with(WATCHED.len(), Snapshot::default);
    let mut olds = Vec::new();
    let mut keys = None;
    let mut first_load = false;
    for (&i, print) in which.iter().zip(&prints) {
        let before = state.fingerprints[i];
        if before == Some(*print) {
            continue;
        }
        let (snap, k) = reread(client, cfg, i).await?;
        if i == TOKENS {
            keys = Some(k);
        }
        let old = std::mem::replace(&mut state.snapshots[i], snap);
        if before.is_some() {
            olds.push((i, old));
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
    for (i, old) in &olds {
        for e in events(*i, old, &state.snapshots, keys.as_ref().unwrap_or(&no_keys)) {
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
    let content_types_now = prints[which.len()];
    if state.content_types != Some(content_types_now) {
        match load_content_types(client, &t.policy).await {
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
            let mut triggers = triggers_installed(&client, &cfg).await?;
            let mut inspected = Instant::now();
            let mut tick = tokio::time::interval(cfg.poll_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if inspected.elapsed() >= INSPECT_EVERY {
                    triggers = triggers_installed(&client, &cfg).await?;
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

async fn triggers_installed(
    client: &tokio_postgres::Client,
    cfg: &PostgresConfig,
) -> Result<bool, StoreError> {
    let i = store::strapi5::inspect(client, &cfg.schema).await?;
    if !i.missing_tables.is_empty() {
        return Err(StoreError::Invalid(format!(
            "schema `{}` has no table {}",
            cfg.schema,
            i.missing_tables.join(", ")
        )));
    }
    Ok(i.triggers == store::strapi5::Triggers::Installed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(rows: &[(i64, [Option<i64>; 2], i32)]) -> Snapshot {
        rows.iter()
            .map(|(id, links, digest)| {
                (
                    *id,
                    RowState {
                        links: *links,
                        digest: *digest,
                    },
                )
            })
            .collect()
    }

    fn tables(set: &[(usize, Snapshot)]) -> Vec<Snapshot> {
        let mut v = vec![Snapshot::default(); WATCHED.len()];
        for (i, s) in set {
            v[*i] = s.clone();
        }
        v
    }

    #[test]
    fn the_watched_list_is_the_layouts_tables() {
        let watched: Vec<&str> = WATCHED.iter().map(|w| w.table).collect();
        let mut a = watched.clone();
        a.sort_unstable();
        let mut b = store::strapi5::TABLES.to_vec();
        b.sort_unstable();
        assert_eq!(a, b);
        assert_eq!(WATCHED[TOKENS].table, "strapi_api_tokens");
        assert_eq!(
            WATCHED[TOKEN_PERMISSION_LINKS].table,
            "strapi_api_token_permissions_token_lnk"
        );
        assert_eq!(
            WATCHED[ROLE_PERMISSION_LINKS].table,
            "admin_permissions_role_lnk"
        );
        assert_eq!(
            WATCHED[TOKEN_ADMIN_PERMISSION_LINKS].table,
            "admin_permissions_api_token_lnk"
        );
        let all: Vec<usize> = (0..WATCHED.len()).collect();
        let q = fingerprint_query(&all);
        assert_eq!(q.matches("UNION ALL").count(), WATCHED.len());
        assert_eq!(fingerprint_query(&[TOKENS]).matches("UNION ALL").count(), 1);
        assert!(
            q.contains("row(id, permission_id, role_id, xmin)::text"),
            "{q}"
        );
    }

    #[test]
    fn a_token_regenerated_created_or_deleted() {
        let old = snap(&[(1, [None, None], 10), (2, [None, None], 20)]);
        let now = tables(&[(
            TOKENS,
            snap(&[(1, [None, None], 11), (3, [None, None], 30)]),
        )]);
        let h = TokenHash([7; 64]);
        let keys = HashMap::from([(1, h)]);
        assert_eq!(
            events(TOKENS, &old, &now, &keys),
            vec![
                Event::Token {
                    id: 1,
                    hash: Some(h)
                },
                Event::Token { id: 2, hash: None },
                Event::Token { id: 3, hash: None },
            ]
        );
        assert!(
            events(TOKENS, &now[TOKENS], &now, &keys).is_empty(),
            "no change, no event"
        );
    }

    #[test]
    fn permissions_follow_their_links() {
        // admin permission 5 belongs to role 9 and to token 4.
        let now = tables(&[
            (7, snap(&[(5, [None, None], 2)])),
            (ROLE_PERMISSION_LINKS, snap(&[(1, [Some(5), Some(9)], 0)])),
            (
                TOKEN_ADMIN_PERMISSION_LINKS,
                snap(&[(1, [Some(5), Some(4)], 0)]),
            ),
        ]);
        let old = snap(&[(5, [None, None], 1)]);
        assert_eq!(
            events(7, &old, &now, &HashMap::new()),
            vec![Event::Role(9), Event::Token { id: 4, hash: None }]
        );
        // A role link removed (a permission revoked): the role.
        let old_links = snap(&[(1, [Some(5), Some(9)], 0), (2, [Some(6), Some(8)], 0)]);
        assert_eq!(
            events(ROLE_PERMISSION_LINKS, &old_links, &now, &HashMap::new()),
            vec![Event::Role(8)]
        );
        // A content-API permission's action edited: its token.
        let now = tables(&[
            (1, snap(&[(3, [None, None], 2)])),
            (TOKEN_PERMISSION_LINKS, snap(&[(1, [Some(3), Some(12)], 0)])),
        ]);
        assert_eq!(
            events(1, &snap(&[(3, [None, None], 1)]), &now, &HashMap::new()),
            vec![Event::Token { id: 12, hash: None }]
        );
        // A user's role link moved from user 1 to user 2: both.
        let now = tables(&[(5, snap(&[(1, [Some(2), Some(3)], 0)]))]);
        assert_eq!(
            events(
                5,
                &snap(&[(1, [Some(1), Some(3)], 0)]),
                &now,
                &HashMap::new()
            ),
            vec![Event::User(1), Event::User(2)]
        );
    }
}
