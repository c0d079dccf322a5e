//! Postgres: the token store.
//!
//! The store knows rows, not HTTP. It offers a narrow interface: look a
//! token up by hash ([`Store::find_token`]), record uses in batches
//! ([`Store::touch_tokens`]), check the database is there ([`Store::ping`]),
//! plus the management operations in [`admin`]. One lookup is one round trip:
//! the token, its permissions, its owner and the owner's role permissions
//! come back in a single row.
//!
//! Every operation is bounded by `postgres.query_timeout` (and getting a
//! connection by `postgres.connect_timeout`), so an unreachable database
//! yields [`StoreError::Unavailable`] quickly instead of a pile of waiting
//! requests.
//!
//! Schema changes are SQL files under `migrations/`, embedded in the binary
//! and applied in order by [`migrate`], each recorded in `schema_migrations`
//! inside the configured schema, under an advisory lock so two `migrate` jobs
//! cannot race.
//!
//! # Layouts
//!
//! `postgres.layout` says whose tables hold the tokens: authgate's own
//! ([`native`], written by `authgate migrate` and the CLI), or a Strapi 5
//! database read in place ([`strapi5`], read-only except `last_used_at`).
//! Every layout-specific statement lives in those two modules; the
//! [`Store`] dispatches on [`Layout`] and returns the same [`TokenRecord`]
//! either way, so nothing above the store knows which layout it runs on.

pub mod admin;
pub mod audit;
mod native;
pub mod strapi5;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres_rustls::MakeRustlsConnect;

pub use crate::config::Layout;
use crate::config::PostgresConfig;
use crate::model::{Owner, Ownership, Permission, PermissionSet, TokenRecord};
use crate::token::TokenHash;

/// Errors at the database boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached in time: callers may fall back to
    /// stale data or answer 503.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {}", db_message(.0))]
    Db(#[from] tokio_postgres::Error),
    /// A request the data does not allow (not found, duplicate, refused).
    #[error("{0}")]
    Invalid(String),
    #[error("invalid database URL: {0}")]
    Url(String),
    /// A management write in a layout whose data authgate only reads.
    #[error("{0}")]
    ReadOnly(String),
}

/// What Postgres said, not just "db error".
fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.to_string(),
        None => e.to_string(),
    }
}

impl StoreError {
    /// True for errors that mean "the database is not there right now".
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Unavailable(_) => true,
            StoreError::Db(e) => e.is_closed() || e.code().is_none(),
            _ => false,
        }
    }
}

/// The embedded migrations of the native layout, in order.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../migrations/authgate/0001_init.sql"),
    ),
    (
        2,
        "notify",
        include_str!("../migrations/authgate/0002_notify.sql"),
    ),
    (3, "audit", AUDIT_MIGRATION),
];

/// The audit table (see [`crate::audit`]): in the configured schema in the
/// authgate layout, in schema `authgate` in the strapi5 layout.
pub const AUDIT_MIGRATION: &str = include_str!("../migrations/authgate/0003_audit.sql");

/// The NOTIFY channel the invalidation triggers of this layout and schema use.
pub fn channel(cfg: &PostgresConfig) -> String {
    match cfg.layout {
        Layout::Authgate => format!("authgate_{}", cfg.schema),
        Layout::Strapi5 => strapi5::channel(&cfg.schema),
    }
}

/// Connection settings: the URL plus the schema as search_path.
pub fn pg_config(cfg: &PostgresConfig) -> Result<tokio_postgres::Config, StoreError> {
    let mut pg: tokio_postgres::Config = cfg
        .url
        .expose()
        .parse()
        .map_err(|e: tokio_postgres::Error| StoreError::Url(e.to_string()))?;
    pg.options(format!("-c search_path={}", cfg.schema));
    pg.ssl_mode(if cfg.tls_verify {
        tokio_postgres::config::SslMode::Require
    } else {
        tokio_postgres::config::SslMode::Disable
    });
    pg.connect_timeout(cfg.connect_timeout);
    if pg.get_application_name().is_none() {
        pg.application_name("authgate");
    }
    Ok(pg)
}

/// TLS for Postgres connections. With `postgres.tls = "verify"` every
/// connection is encrypted and the server's certificate is checked against
/// `postgres.ca_file` (else the system roots) and the host name; with
/// `"off"` (the default, for a database on localhost or in the pod's
/// network) connections are plain.
pub fn tls(cfg: &PostgresConfig) -> Result<MakeRustlsConnect, StoreError> {
    let client = crate::tls::client_config(cfg.ca_file.as_deref())
        .map_err(|e| StoreError::Url(e.to_string()))?;
    Ok(MakeRustlsConnect::new(client))
}

/// Open one connection outside the pool (migrations, LISTEN).
pub async fn connect(cfg: &PostgresConfig) -> Result<tokio_postgres::Client, StoreError> {
    let pg = pg_config(cfg)?;
    let (client, conn) = tokio::time::timeout(cfg.connect_timeout, pg.connect(tls(cfg)?))
        .await
        .map_err(|_| {
            StoreError::Unavailable(format!("connect timed out after {:?}", cfg.connect_timeout))
        })?
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
}

/// Pair the `action` and `subject` arrays of a lookup row.
fn zip_permissions(actions: Vec<String>, subjects: Vec<Option<String>>) -> PermissionSet {
    actions
        .into_iter()
        .zip(subjects)
        .map(|(a, s)| Permission::new(a, s))
        .collect()
}

/// An admin token's owner from a lookup row. Both layouts' lookup queries
/// name the owner's columns alike: `user_id` (NULL when the owner row is
/// gone), `email`, `is_active`, `blocked`, `super_admin`, `role_ids`,
/// `role_actions`, `role_subjects`.
fn ownership_from_row(row: &tokio_postgres::Row) -> Result<Ownership, StoreError> {
    Ok(match row.try_get::<_, Option<i64>>("user_id")? {
        None => Ownership::Missing,
        Some(id) => Ownership::owner(Owner {
            id,
            email: row.try_get("email")?,
            is_active: row.try_get("is_active")?,
            blocked: row.try_get("blocked")?,
            super_admin: row.try_get("super_admin")?,
            permissions: zip_permissions(
                row.try_get("role_actions")?,
                row.try_get("role_subjects")?,
            ),
            role_ids: row.try_get("role_ids")?,
        }),
    })
}

/// Every stored hash (for [`crate::known::KnownHashes`]), streamed to
/// `each` so a million tokens never sit in memory as rows or full hashes.
///
/// `false` when the database does not announce new tokens, so a set of known
/// hashes would go stale and refuse them: the strapi5 layout without
/// authgate's triggers (which this reports in the log).
pub async fn issued_hashes(
    client: &tokio_postgres::Client,
    cfg: &PostgresConfig,
    mut each: impl FnMut(&TokenHash),
) -> Result<bool, StoreError> {
    use futures_util::TryStreamExt;
    let query = match cfg.layout {
        Layout::Authgate => native::ISSUED_HASHES,
        Layout::Strapi5 => {
            if !strapi5::announces_changes(client, cfg).await? {
                return Ok(false);
            }
            strapi5::ISSUED_HASHES
        }
    };
    let rows = client.query_raw(query, std::iter::empty::<&str>()).await?;
    futures_util::pin_mut!(rows);
    while let Some(row) = rows.try_next().await? {
        let hex: &str = row.try_get(0)?;
        // A malformed stored hash cannot match any key; skip it.
        if let Some(h) = TokenHash::from_hex(hex) {
            each(&h);
        }
    }
    Ok(true)
}

/// Create or upgrade the schema. Returns the versions applied now.
///
/// In the strapi5 layout this installs only authgate's invalidation
/// triggers on Strapi's tables (see [`strapi5::install`]).
pub async fn migrate(cfg: &PostgresConfig) -> Result<Vec<i32>, StoreError> {
    if cfg.layout == Layout::Strapi5 {
        return strapi5::install(cfg).await;
    }
    let mut client = connect(cfg).await?;
    let tx = client.transaction().await?;
    // Serialise concurrent migrations of the same schema.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('authgate:' || $1))",
        &[&cfg.schema],
    )
    .await?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {s};
         CREATE TABLE IF NOT EXISTS {s}.schema_migrations (
             version integer PRIMARY KEY,
             name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );",
        s = cfg.schema
    ))
    .await?;
    let done: Vec<i32> = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let newest = MIGRATIONS.last().map_or(0, |m| m.0);
    if let Some(v) = done.iter().find(|v| **v > newest) {
        return Err(StoreError::Invalid(format!(
            "schema `{}` is at version {v}, newer than this authgate knows ({newest}): upgrade authgate",
            cfg.schema
        )));
    }
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if done.contains(version) {
            continue;
        }
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await?;
        applied.push(*version);
    }
    tx.commit().await?;
    Ok(applied)
}

/// The token store: a connection pool and the configured timeouts.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    query_timeout: Duration,
    breaker: Arc<Breaker>,
    layout: Layout,
}

/// Fails lookups fast while the database is known to be down.
///
/// After a lookup fails for unavailability, further lookups fail at once
/// for `rest` (they would only queue behind the same timeout), except one
/// probe per `rest` that checks whether the database is back. A success
/// closes the breaker. So during an outage a cache miss costs microseconds,
/// not a connect timeout, and recovery needs no restart.
struct Breaker {
    started: Instant,
    /// Milliseconds since `started` until which lookups fail fast; 0 = closed.
    open_until: AtomicU64,
    rest: Duration,
}

impl Breaker {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64 + 1
    }

    /// May a lookup go to the database now?
    fn allow(&self) -> bool {
        let until = self.open_until.load(Ordering::Acquire);
        let now = self.now_ms();
        if until == 0 || now >= until {
            // Closed, or time for a probe: only one caller wins the probe.
            return until == 0
                || self
                    .open_until
                    .compare_exchange(
                        until,
                        now + self.rest.as_millis() as u64,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_ok();
        }
        false
    }

    fn failed(&self) {
        self.open_until.store(
            self.now_ms() + self.rest.as_millis() as u64,
            Ordering::Release,
        );
    }

    fn succeeded(&self) {
        self.open_until.store(0, Ordering::Release);
    }
}

impl Store {
    /// Build the pool. Connections are opened lazily, so this succeeds even
    /// while the database is down.
    pub fn new(cfg: &PostgresConfig) -> Result<Self, StoreError> {
        let mut pg = pg_config(cfg)?;
        // The server enforces the bound too, so a slow query frees its connection.
        pg.options(format!(
            "-c search_path={} -c statement_timeout={}",
            cfg.schema,
            cfg.query_timeout.as_millis().max(1)
        ));
        let mgr = Manager::from_config(
            pg,
            tls(cfg)?,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(cfg.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(cfg.connect_timeout))
            .create_timeout(Some(cfg.connect_timeout))
            .recycle_timeout(Some(cfg.connect_timeout))
            .build()
            .map_err(|e| StoreError::Url(e.to_string()))?;
        let breaker = Breaker {
            started: Instant::now(),
            open_until: AtomicU64::new(0),
            rest: cfg.connect_timeout.min(Duration::from_secs(1)),
        };
        Ok(Self {
            pool,
            query_timeout: cfg.query_timeout,
            breaker: Arc::new(breaker),
            layout: cfg.layout,
        })
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    /// Run `f` bounded by the query timeout.
    async fn bounded<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>>,
    {
        tokio::time::timeout(self.query_timeout, f)
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!("query timed out after {:?}", self.query_timeout))
            })?
    }

    /// The token whose `access_key` is `hash_hex`, with everything a decision needs.
    pub async fn find_token(&self, hash_hex: &str) -> Result<Option<TokenRecord>, StoreError> {
        if !self.breaker.allow() {
            return Err(StoreError::Unavailable(
                "database unavailable (failing fast until it answers again)".into(),
            ));
        }
        let r = self
            .bounded(async {
                let client = self.client().await?;
                let stmt = client
                    .prepare_cached(match self.layout {
                        Layout::Authgate => native::FIND_TOKEN,
                        Layout::Strapi5 => strapi5::FIND_TOKEN,
                    })
                    .await?;
                let Some(row) = client.query_opt(&stmt, &[&hash_hex]).await? else {
                    return Ok(None);
                };
                match self.layout {
                    Layout::Authgate => native::record_from_row(&row).map(Some),
                    Layout::Strapi5 => strapi5::record_from_row(&row),
                }
            })
            .await;
        match &r {
            Err(e) if e.is_unavailable() => self.breaker.failed(),
            _ => self.breaker.succeeded(),
        }
        r
    }

    /// Record token uses: one statement for the whole batch, never moving
    /// `last_used_at` backwards.
    pub async fn touch_tokens(&self, uses: &[(i64, SystemTime)]) -> Result<u64, StoreError> {
        if uses.is_empty() {
            return Ok(0);
        }
        let ids: Vec<i64> = uses.iter().map(|u| u.0).collect();
        let times: Vec<SystemTime> = uses.iter().map(|u| u.1).collect();
        self.bounded(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(match self.layout {
                    Layout::Authgate => native::TOUCH_TOKENS,
                    Layout::Strapi5 => strapi5::TOUCH_TOKENS,
                })
                .await?;
            Ok(client.execute(&stmt, &[&ids, &times]).await?)
        })
        .await
    }

    /// Is the database reachable?
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.bounded(async {
            let client = self.client().await?;
            client.simple_query("SELECT 1").await?;
            Ok(())
        })
        .await
    }

    /// The audit table, qualified as this layout needs.
    pub(crate) fn audit_table(&self) -> &'static str {
        match self.layout {
            Layout::Authgate => "audit_events",
            Layout::Strapi5 => "authgate.audit_events",
        }
    }

    /// Which tables this store reads.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Refuse a management write in a layout authgate only reads.
    pub(crate) fn writable(&self, what: &str) -> Result<(), StoreError> {
        match self.layout {
            Layout::Authgate => Ok(()),
            Layout::Strapi5 => Err(StoreError::ReadOnly(format!(
                "cannot {what} in the strapi5 layout: tokens, users and roles are managed in Strapi's admin panel"
            ))),
        }
    }

    /// Current pool status (size, available) for metrics.
    pub fn pool_status(&self) -> deadpool_postgres::Status {
        self.pool.status()
    }
}
