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

pub mod admin;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::PostgresConfig;
use crate::model::{
    ContentApiType, Owner, Ownership, Permission, PermissionSet, TokenKind, TokenRecord,
};
use crate::token::TokenHash;

/// Errors at the database boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached in time: callers may fall back to
    /// stale data or answer 503.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// A request the data does not allow (not found, duplicate, refused).
    #[error("{0}")]
    Invalid(String),
    #[error("invalid database URL: {0}")]
    Url(String),
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
];

/// The NOTIFY channel of a schema.
pub fn channel(schema: &str) -> String {
    format!("authgate_{schema}")
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

/// Every stored hash (for [`crate::known::KnownHashes`]), streamed so a
/// million tokens do not sit in memory as rows.
pub async fn issued_hashes(client: &tokio_postgres::Client) -> Result<Vec<TokenHash>, StoreError> {
    use futures_util::TryStreamExt;
    let rows = client
        .query_raw("SELECT access_key FROM tokens", std::iter::empty::<&str>())
        .await?;
    futures_util::pin_mut!(rows);
    let mut out = Vec::new();
    while let Some(row) = rows.try_next().await? {
        let hex: &str = row.try_get(0)?;
        // A malformed stored hash cannot match any key; skip it.
        if let Some(h) = TokenHash::from_hex(hex) {
            out.push(h);
        }
    }
    Ok(out)
}

/// Create or upgrade the schema. Returns the versions applied now.
pub async fn migrate(cfg: &PostgresConfig) -> Result<Vec<i32>, StoreError> {
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

const FIND_TOKEN: &str = "
SELECT t.id, t.kind, t.name, t.type, t.expires_at, t.rate_limit, t.owner_id,
       ARRAY(SELECT p.action FROM token_permissions p WHERE p.token_id = t.id ORDER BY p.id) AS perm_actions,
       ARRAY(SELECT p.subject FROM token_permissions p WHERE p.token_id = t.id ORDER BY p.id) AS perm_subjects,
       u.id AS user_id, u.email, u.is_active, u.blocked,
       EXISTS (SELECT 1 FROM user_roles ur JOIN roles r ON r.id = ur.role_id
               WHERE ur.user_id = u.id AND r.code = 'super-admin') AS super_admin,
       ARRAY(SELECT ur.role_id FROM user_roles ur WHERE ur.user_id = u.id ORDER BY ur.role_id) AS role_ids,
       ARRAY(SELECT rp.action FROM user_roles ur JOIN role_permissions rp ON rp.role_id = ur.role_id
             WHERE ur.user_id = u.id ORDER BY rp.id) AS role_actions,
       ARRAY(SELECT rp.subject FROM user_roles ur JOIN role_permissions rp ON rp.role_id = ur.role_id
             WHERE ur.user_id = u.id ORDER BY rp.id) AS role_subjects
FROM tokens t
LEFT JOIN users u ON u.id = t.owner_id
WHERE t.access_key = $1";

const TOUCH_TOKENS: &str = "
UPDATE tokens SET last_used_at = v.ts
FROM (SELECT unnest($1::bigint[]) AS id, unnest($2::timestamptz[]) AS ts) v
WHERE tokens.id = v.id AND (tokens.last_used_at IS NULL OR tokens.last_used_at < v.ts)";

fn zip_permissions(actions: Vec<String>, subjects: Vec<Option<String>>) -> PermissionSet {
    actions
        .into_iter()
        .zip(subjects)
        .map(|(a, s)| Permission::new(a, s))
        .collect()
}

fn record_from_row(row: &tokio_postgres::Row) -> Result<TokenRecord, StoreError> {
    let kind_s: String = row.try_get("kind")?;
    let kind: TokenKind = kind_s.parse().map_err(StoreError::Invalid)?;
    let token_type = match row.try_get::<_, Option<String>>("type")? {
        Some(t) if kind == TokenKind::ContentApi => {
            Some(t.parse::<ContentApiType>().map_err(StoreError::Invalid)?)
        }
        _ => None,
    };
    let permissions = zip_permissions(row.try_get("perm_actions")?, row.try_get("perm_subjects")?);
    let ownership = match kind {
        TokenKind::ContentApi => Ownership::None,
        TokenKind::Admin => match row.try_get::<_, Option<i64>>("user_id")? {
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
        },
    };
    let rate_limit: Option<i32> = row.try_get("rate_limit")?;
    Ok(TokenRecord {
        id: row.try_get("id")?,
        kind,
        name: row.try_get("name")?,
        token_type,
        expires_at: row.try_get("expires_at")?,
        permissions,
        ownership,
        rate_limit: rate_limit.and_then(|r| u32::try_from(r).ok()),
    })
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
                let stmt = client.prepare_cached(FIND_TOKEN).await?;
                let row = client.query_opt(&stmt, &[&hash_hex]).await?;
                row.as_ref().map(record_from_row).transpose()
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
            let stmt = client.prepare_cached(TOUCH_TOKENS).await?;
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

    /// Current pool status (size, available) for metrics.
    pub fn pool_status(&self) -> deadpool_postgres::Status {
        self.pool.status()
    }
}
