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
//! Every layout-specific statement lives in those two modules (the strapi5
//! change poller's in [`strapi5::watch`]); the rows both return, and their
//! shared decoders, are in [`rows`]. The [`Store`] chooses the layout once
//! per operation (the lookups through one `Statements` table, the
//! management operations in [`admin`]) and returns the same
//! [`TokenRecord`] either way. What differs between layouts and matters
//! above the store (may it write? must it be polled?) is reported as
//! [`Capabilities`], which the layers above ask instead of the layout.

pub mod admin;
pub mod audit;
mod native;
pub mod rows;
pub mod sql;
pub mod strapi5;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres_rustls::MakeRustlsConnect;

pub use crate::config::Layout;
use crate::config::PostgresConfig;
use crate::model::{TokenCounts, TokenRecord, TokenStats};
use crate::token::TokenHash;
use rows::Col;
use sql::Db;

/// [`Statements::token_stats`] of a layout: its `FROM` clause gives `kind`
/// and the expiry `e`; the five counts are the same in both.
macro_rules! token_stats_sql {
    ($from:literal) => {
        concat!(
            "SELECT kind,
  count(*) FILTER (WHERE e IS NULL OR e > $1) AS active,
  count(*) FILTER (WHERE e <= $1) AS expired,
  count(*) FILTER (WHERE e > $1 AND e <= $1 + interval '1 day') AS within_1d,
  count(*) FILTER (WHERE e > $1 AND e <= $1 + interval '7 days') AS within_7d,
  count(*) FILTER (WHERE e > $1 AND e <= $1 + interval '30 days') AS within_30d
",
            $from
        )
    };
}
pub(crate) use token_stats_sql;

/// Errors at the database boundary.
///
/// The kinds tell apart whose problem it is: the caller's ([`Invalid`],
/// [`ReadOnly`]: a management request the data does not allow), the stored
/// data's ([`Corrupt`]: a row that does not decode), the database's
/// availability ([`Unavailable`], [`Connect`], [`Pool`]: try again later),
/// and the configuration's ([`Url`], [`Tls`], [`PoolBuild`]).
///
/// [`Invalid`]: StoreError::Invalid
/// [`ReadOnly`]: StoreError::ReadOnly
/// [`Corrupt`]: StoreError::Corrupt
/// [`Unavailable`]: StoreError::Unavailable
/// [`Connect`]: StoreError::Connect
/// [`Pool`]: StoreError::Pool
/// [`Url`]: StoreError::Url
/// [`Tls`]: StoreError::Tls
/// [`PoolBuild`]: StoreError::PoolBuild
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached in time: callers may fall back to
    /// stale data or answer 503.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A connection outside the pool could not be opened.
    #[error("database unavailable: {source}")]
    Connect {
        #[source]
        source: tokio_postgres::Error,
    },
    /// The pool gave no connection (timed out, or could not open one).
    #[error("database unavailable: {source}")]
    Pool {
        #[source]
        source: deadpool_postgres::PoolError,
    },
    #[error("database error: {}", db_message(.0))]
    Db(#[from] tokio_postgres::Error),
    /// A request the data does not allow (not found, duplicate, refused):
    /// the caller's mistake.
    #[error("{0}")]
    Invalid(String),
    /// A stored row that does not decode (a column of the wrong type, a
    /// value no layout writes): the data's fault, not the caller's.
    #[error("corrupt row in the token store: {what}{}", cause(.source))]
    Corrupt {
        what: String,
        #[source]
        source: Option<tokio_postgres::Error>,
    },
    /// `postgres.url` does not parse.
    #[error("invalid database URL: {source}")]
    Url {
        #[source]
        source: tokio_postgres::Error,
    },
    /// TLS for Postgres could not be set up (`postgres.ca_file`).
    #[error("postgres TLS: {source}")]
    Tls {
        #[source]
        source: crate::tls::TlsError,
    },
    /// The connection pool could not be built.
    #[error("cannot build the connection pool: {source}")]
    PoolBuild {
        #[source]
        source: deadpool_postgres::BuildError,
    },
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

/// `: <why>` when a corrupt row has a decoding error behind it.
fn cause(source: &Option<tokio_postgres::Error>) -> String {
    source
        .as_ref()
        .map_or_else(String::new, |e| format!(": {e}"))
}

impl StoreError {
    /// True for errors that mean "the database is not there right now".
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Unavailable(_) | StoreError::Connect { .. } | StoreError::Pool { .. } => {
                true
            }
            StoreError::Db(e) => e.is_closed() || e.code().is_none(),
            _ => false,
        }
    }
}

pub use native::MIGRATIONS;

/// The audit table (see [`crate::audit`]): in the configured schema in the
/// authgate layout, in schema `authgate` in the strapi5 layout.
pub const AUDIT_MIGRATION: &str = include_str!("../migrations/authgate/0003_audit.sql");

/// The audit table's second version (the client's request id apart, ids
/// from a sequence, deletions only of what a checkpoint names); idempotent,
/// so the strapi5 layout applies it on every `migrate`.
pub const AUDIT_ANCHOR_MIGRATION: &str =
    include_str!("../migrations/authgate/0006_audit_anchor.sql");

/// The NOTIFY channel the invalidation triggers of this layout and schema use.
pub fn channel(cfg: &PostgresConfig) -> String {
    (statements(cfg.layout).channel)(&cfg.schema)
}

/// What the lookups need of a layout: its statements and decoders.
pub(crate) struct Statements {
    /// Every stored hash, one text column.
    pub issued_hashes: &'static str,
    /// The token whose hash is `$1`, with everything a decision needs.
    pub find_token: &'static str,
    /// `id`, and whether `$1` is its current key (`current`), of the token
    /// holding the hash `$1`: its current key first.
    pub key_holder: &'static str,
    /// `last_used_at` of ids `$1` to times `$2`, never backwards.
    pub touch_tokens: &'static str,
    /// A row of `find_token` as a record (`None`: not a token).
    pub record: fn(&tokio_postgres::Row) -> Result<Option<TokenRecord>, StoreError>,
    /// The audit table, qualified as the layout needs.
    pub audit_table: &'static str,
    /// The NOTIFY channel of the triggers on a schema.
    pub channel: fn(&str) -> String,
    /// Per kind (`content-api`, `admin`): active, expired, and active ones
    /// expiring within 1, 7 and 30 days of `$1`.
    pub token_stats: &'static str,
}

/// The one place the lookups choose a layout.
fn statements(layout: Layout) -> &'static Statements {
    match layout {
        Layout::Authgate => &native::STATEMENTS,
        Layout::Strapi5 => &strapi5::STATEMENTS,
    }
}

/// Connection settings of `postgres.url`. No startup `options` (a pooler
/// refuses them): each transaction sets what it needs ([`sql`]).
pub fn pg_config(cfg: &PostgresConfig) -> Result<tokio_postgres::Config, StoreError> {
    url_config(cfg, &cfg.url)
}

/// The invalidation listener's connection: `postgres.listen_url` when set
/// (a direct connection beside a pooler), else `postgres.url`; always to a
/// server that accepts writes, since a standby cannot hear the primary's
/// NOTIFYs. TCP keepalives notice a silent network failure.
pub fn listen_config(cfg: &PostgresConfig) -> Result<tokio_postgres::Config, StoreError> {
    let mut pg = url_config(cfg, cfg.listen_url.as_ref().unwrap_or(&cfg.url))?;
    pg.target_session_attrs(tokio_postgres::config::TargetSessionAttrs::ReadWrite);
    pg.keepalives(true).keepalives_idle(Duration::from_secs(10));
    Ok(pg)
}

/// One of the configured URLs with the settings every connection shares:
/// TLS, the connect timeout, the application name, and a server that
/// accepts writes unless the URL names its own `target_session_attrs`
/// (with several hosts, as in `host1,host2/db`, the one that is primary
/// now, so a failover is followed by the next connection).
fn url_config(
    cfg: &PostgresConfig,
    url: &crate::config::SecretUrl,
) -> Result<tokio_postgres::Config, StoreError> {
    let mut pg: tokio_postgres::Config = url
        .expose()
        .parse()
        .map_err(|source| StoreError::Url { source })?;
    pg.ssl_mode(if cfg.tls_verify {
        tokio_postgres::config::SslMode::Require
    } else {
        tokio_postgres::config::SslMode::Disable
    });
    pg.connect_timeout(cfg.connect_timeout);
    if pg.get_application_name().is_none() {
        pg.application_name("authgate");
    }
    if !url.expose().contains("target_session_attrs") {
        // authgate writes (last_used_at, management) and listens: a
        // standby serves neither.
        pg.target_session_attrs(tokio_postgres::config::TargetSessionAttrs::ReadWrite);
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
        .map_err(|source| StoreError::Tls { source })?;
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
        .map_err(|source| StoreError::Connect { source })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
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
        Layout::Authgate => native::STATEMENTS.issued_hashes,
        Layout::Strapi5 => {
            if !strapi5::announces_changes(client, cfg).await? {
                return Ok(false);
            }
            strapi5::STATEMENTS.issued_hashes
        }
    };
    client
        .batch_execute(&format!("BEGIN; {}", sql::settings_of(cfg)))
        .await?;
    let rows = client
        .query_typed_raw(
            query,
            std::iter::empty::<(&str, tokio_postgres::types::Type)>(),
        )
        .await?;
    futures_util::pin_mut!(rows);
    while let Some(row) = rows.try_next().await? {
        let hex: &str = row.col(0)?;
        // A malformed stored hash cannot match any key; skip it.
        if let Some(h) = TokenHash::from_hex(hex) {
            each(&h);
        }
    }
    client.batch_execute("COMMIT").await?;
    Ok(true)
}

/// The migration versions a database has (`rows` of one integer column),
/// refusing any newer than `known` (`newer(version, newest)` says why).
fn applied_versions(
    rows: &[tokio_postgres::Row],
    known: &[(i32, &str, &str)],
    newer: impl FnOnce(i32, i32) -> String,
) -> Result<Vec<i32>, StoreError> {
    let done = rows
        .iter()
        .map(|r| r.col(0))
        .collect::<Result<Vec<i32>, _>>()?;
    let newest = known.last().map_or(0, |m| m.0);
    match done.iter().find(|v| **v > newest) {
        Some(v) => Err(StoreError::Invalid(newer(*v, newest))),
        None => Ok(done),
    }
}

/// Serialise the migrations that share `key` until `tx` ends.
async fn migration_lock(tx: &impl Db, key: &str) -> Result<(), StoreError> {
    tx.exec("SELECT pg_advisory_xact_lock(hashtext($1))", &[&key])
        .await?;
    Ok(())
}

/// Create or upgrade the schema. Returns the versions applied now.
///
/// In the strapi5 layout this installs only authgate's invalidation
/// triggers on Strapi's tables (see [`strapi5::install`]).
pub async fn migrate(cfg: &PostgresConfig) -> Result<Vec<i32>, StoreError> {
    match cfg.layout {
        Layout::Authgate => native::migrate(cfg).await,
        Layout::Strapi5 => strapi5::install(cfg).await,
    }
}

/// The migrations `authgate migrate` would apply now (the authgate layout;
/// the strapi5 layout's triggers are optional, so none are pending there).
pub async fn pending_migrations(cfg: &PostgresConfig) -> Result<Vec<i32>, StoreError> {
    match cfg.layout {
        Layout::Authgate => native::pending(cfg).await,
        Layout::Strapi5 => Ok(Vec::new()),
    }
}

/// What a store can do, named for what it means, so that nothing above the
/// store branches on the layout ([`Store::capabilities`], or
/// [`capabilities`] before a store is built).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// `migrate` creates and upgrades authgate's own tables. `false`: the
    /// tables are another program's (Strapi's), and `migrate` only installs
    /// authgate's invalidation triggers on them.
    pub owns_schema: bool,
    /// Management writes (tokens, users, roles) are accepted. `false`:
    /// another program's admin panel owns that data; reads still work, and
    /// every write is refused with [`StoreError::ReadOnly`].
    pub writes: bool,
    /// The database announces changes only with opt-in triggers, so a
    /// poller ([`crate::strapi5_sync`]) watches it for changes.
    pub polls_changes: bool,
    /// The database stores content types, which are read into the route
    /// table ([`crate::content_types`]).
    pub stores_content_types: bool,
    /// The audit retention job prunes this store's audit trail. `false`:
    /// the trail (key views only) lives in schema `authgate`, shared by
    /// every Strapi schema, and exists only once `migrate` made it.
    pub prunes_audit: bool,
}

impl Capabilities {
    /// The one place capabilities are read off the layout.
    fn of(layout: Layout) -> Self {
        match layout {
            Layout::Authgate => Self {
                owns_schema: true,
                writes: true,
                polls_changes: false,
                stores_content_types: false,
                prunes_audit: true,
            },
            Layout::Strapi5 => Self {
                owns_schema: false,
                writes: false,
                polls_changes: true,
                stores_content_types: true,
                prunes_audit: false,
            },
        }
    }
}

/// What the store configured by `cfg` can do (see [`Store::capabilities`]).
pub fn capabilities(cfg: &PostgresConfig) -> Capabilities {
    Capabilities::of(cfg.layout)
}

/// A token holding a hash ([`Store::key_holder`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyHolder {
    pub id: i64,
    /// The hash is the token's current key, not a replaced one.
    pub current: bool,
}

/// [`Store::key_holder`] on a connection or inside a transaction.
pub(crate) async fn key_holder(
    c: &impl Db,
    layout: Layout,
    hash_hex: &str,
) -> Result<Option<KeyHolder>, StoreError> {
    let row = c.opt(statements(layout).key_holder, &[&hash_hex]).await?;
    row.as_ref().map(holder).transpose()
}

fn holder(r: &tokio_postgres::Row) -> Result<KeyHolder, StoreError> {
    Ok(KeyHolder {
        id: r.col("id")?,
        current: r.col("current")?,
    })
}

/// The token store: a connection pool and the configured timeouts.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    query_timeout: Duration,
    breaker: Arc<Breaker>,
    layout: Layout,
    /// What each transaction opens with ([`sql::local_settings`]).
    settings: Arc<str>,
    /// `postgres.pooler = "transaction"`.
    pooled: bool,
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
        if !cfg.pooled {
            // The sessions are authgate's own: they carry the schema and
            // the server's bound (so a slow query frees its connection).
            pg.options(format!(
                "-c search_path={} -c statement_timeout={}",
                cfg.schema,
                cfg.query_timeout.as_millis().max(1)
            ));
        }
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
            .map_err(|source| StoreError::PoolBuild { source })?;
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
            settings: sql::settings_of(cfg).into(),
            pooled: cfg.pooled,
        })
    }

    /// A statement of the request path (lookups, `last_used_at`, stats).
    /// On a server session of authgate's own (`postgres.pooler = "none"`)
    /// it is prepared once per connection and kept by name, and the
    /// session carries the schema and statement timeout. Through a pooler
    /// in transaction mode it is unnamed, in a transaction of its own
    /// opened with the local settings, all in one round trip; the server
    /// then plans it every time (see BENCHMARKS.md for the cost).
    async fn lookup_rows(
        &self,
        client: &deadpool_postgres::Object,
        statement: &str,
        params: &[&dyn sql::Param],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        if self.pooled {
            let rows = client.rows(statement, params);
            return Ok(sql::pipelined(client, &self.settings, rows).await?);
        }
        let prepared = client.prepare_cached(statement).await?;
        let values: Vec<_> = params.iter().map(|p| p.sql()).collect();
        Ok(client.query(&prepared, &values).await?)
    }

    /// [`Store::lookup_rows`] for a statement that returns no rows.
    async fn lookup_exec(
        &self,
        client: &deadpool_postgres::Object,
        statement: &str,
        params: &[&dyn sql::Param],
    ) -> Result<u64, StoreError> {
        if self.pooled {
            let sent = client.exec(statement, params);
            return Ok(sql::pipelined(client, &self.settings, sent).await?);
        }
        let prepared = client.prepare_cached(statement).await?;
        let values: Vec<_> = params.iter().map(|p| p.sql()).collect();
        Ok(client.execute(&prepared, &values).await?)
    }

    /// A transaction on `client` opened with the local settings (the
    /// schema, the statement timeout): how every management read and
    /// write runs.
    pub(crate) async fn begin<'c>(
        &self,
        client: &'c mut deadpool_postgres::Object,
    ) -> Result<deadpool_postgres::Transaction<'c>, StoreError> {
        let tx = client.transaction().await?;
        tx.batch_execute(&self.settings).await?;
        Ok(tx)
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|source| {
            let e = StoreError::Pool { source };
            if !self.pooled && format!("{e:?}").contains("unsupported startup parameter") {
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| {
                    tracing::error!(error = %e, "postgres.url goes through a pooler (PgBouncer) that refuses the session settings authgate sends: set postgres.pooler = \"transaction\" (and postgres.listen_url to a direct connection)");
                });
            }
            e
        })
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

    /// How many tokens of each kind are active, expired and about to
    /// expire at `now` (the `authgate_tokens*` gauges; `token_stats`).
    pub async fn token_stats(&self, now: SystemTime) -> Result<TokenStats, StoreError> {
        self.bounded(async {
            let client = self.client().await?;
            let stats = statements(self.layout).token_stats;
            let rows = self.lookup_rows(&client, stats, &[&now]).await?;
            let mut stats = TokenStats::default();
            for row in rows {
                let n = |c: &str| -> Result<u64, StoreError> {
                    Ok(u64::try_from(row.col::<_, i64>(c)?).unwrap_or(0))
                };
                let counts = TokenCounts {
                    active: n("active")?,
                    expired: n("expired")?,
                    expiring_1d: n("within_1d")?,
                    expiring_7d: n("within_7d")?,
                    expiring_30d: n("within_30d")?,
                };
                match row.col::<_, &str>("kind")? {
                    "content-api" => stats.content_api = counts,
                    "admin" => stats.admin = counts,
                    // A kind no token can have (strapi5): counted nowhere,
                    // as the gateway accepts it nowhere.
                    _ => {}
                }
            }
            Ok(stats)
        })
        .await
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
                let stmts = statements(self.layout);
                let rows = self
                    .lookup_rows(&client, stmts.find_token, &[&hash_hex])
                    .await?;
                match rows.first() {
                    Some(row) => (stmts.record)(row),
                    None => Ok(None),
                }
            })
            .await;
        match &r {
            Err(e) if e.is_unavailable() => self.breaker.failed(),
            _ => self.breaker.succeeded(),
        }
        r
    }

    /// Which token holds the hash `hash_hex`, as its current key or as
    /// the replaced key of a regenerate with overlap (ended or not).
    pub async fn key_holder(&self, hash_hex: &str) -> Result<Option<KeyHolder>, StoreError> {
        let client = self.client().await?;
        let sql = statements(self.layout).key_holder;
        let rows = self.lookup_rows(&client, sql, &[&hash_hex]).await?;
        rows.first().map(holder).transpose()
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
            let touch = statements(self.layout).touch_tokens;
            self.lookup_exec(&client, touch, &[&ids, &times]).await
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

    /// `NOTIFY channel, 'payload'` through the pool (`postgres.url`), for
    /// the listener's self-test. Both are authgate's own words (letters,
    /// digits, `_`), never outside input. Its success closes the breaker.
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<(), StoreError> {
        let word = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !word(channel) || !word(payload) {
            return Err(StoreError::Invalid(format!(
                "not a NOTIFY channel and payload: {channel:?} {payload:?}"
            )));
        }
        self.bounded(async {
            let client = self.client().await?;
            client
                .simple_query(&format!("NOTIFY \"{channel}\", '{payload}'"))
                .await?;
            Ok(())
        })
        .await?;
        // The pool reaches the database again (after a failover, the new
        // primary): lookups need not wait for the breaker's next probe.
        self.breaker.succeeded();
        Ok(())
    }

    /// The audit table, qualified as this layout needs.
    pub(crate) fn audit_table(&self) -> &'static str {
        statements(self.layout).audit_table
    }

    /// Which tables this store reads. Above the store, ask
    /// [`Store::capabilities`] instead.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// What this store can do.
    pub fn capabilities(&self) -> Capabilities {
        Capabilities::of(self.layout)
    }

    /// Current pool status (size, available) for metrics.
    pub fn pool_status(&self) -> deadpool_postgres::Status {
        self.pool.status()
    }
}
