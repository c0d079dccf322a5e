//! `[postgres]`: where the tokens are: the database, its [`Layout`]
//! (authgate's own tables, or a Strapi 5 database read in place), the
//! schema, pool, timeouts and TLS. The layout also sets other sections'
//! defaults (`cache.ttl`, `postgres.schema`).

use std::path::PathBuf;
use std::time::Duration;

use super::secret::SecretUrl;
use super::values::{duration, identifier, readable_file};
use super::{key_err, ConfigError, RawConfig};

/// Which tables hold the tokens (`postgres.layout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// authgate's own tables, created by `authgate migrate`.
    #[default]
    Authgate,
    /// A Strapi 5 database, read in place (see `docs/strapi5.md`).
    Strapi5,
}

impl Layout {
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Authgate => "authgate",
            Layout::Strapi5 => "strapi5",
        }
    }

    /// The schema holding the tables when `postgres.schema` is unset.
    pub fn default_schema(self) -> &'static str {
        match self {
            Layout::Authgate => "authgate",
            Layout::Strapi5 => "public",
        }
    }

    /// `cache.ttl` when unset. Without authgate's triggers a Strapi database
    /// announces no changes, so the TTL is what bounds a revocation's delay.
    pub fn default_cache_ttl(self) -> &'static str {
        match self {
            Layout::Authgate => "60s",
            Layout::Strapi5 => "5s",
        }
    }
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Layout {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "authgate" => Ok(Layout::Authgate),
            "strapi5" => Ok(Layout::Strapi5),
            other => Err(format!("`{other}`: expected \"authgate\" or \"strapi5\"")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PostgresConfig {
    pub url: SecretUrl,
    /// Where the invalidation listener connects (`listen_url`, else `url`).
    pub listen_url: Option<SecretUrl>,
    /// A pooler in transaction mode is between authgate and Postgres
    /// (`pooler = "transaction"`): lookups keep no prepared statement on a
    /// server session.
    pub pooled: bool,
    pub pool_size: usize,
    pub layout: Layout,
    /// Where the token tables are: authgate's schema, or Strapi's (usually `public`).
    pub schema: String,
    pub connect_timeout: Duration,
    pub query_timeout: Duration,
    /// Encrypt and verify every connection (`tls = "verify"`).
    pub tls_verify: bool,
    /// PEM CA bundle for the database's TLS certificate (else system roots).
    pub ca_file: Option<PathBuf>,
    /// strapi5 layout: the period of the change poller (`strapi5_sync`).
    pub poll_interval: Duration,
}

impl RawConfig {
    pub(super) fn compile_postgres(&self) -> Result<PostgresConfig, ConfigError> {
        let p = &self.postgres;
        if p.url.expose().trim().is_empty() {
            return Err(key_err("postgres.url", "must be set"));
        }
        if p.listen_url
            .as_ref()
            .is_some_and(|u| u.expose().trim().is_empty())
        {
            return Err(key_err(
                "postgres.listen_url",
                "is empty: remove it to listen through postgres.url",
            ));
        }
        let pooled = match p.pooler.as_str() {
            "none" => false,
            "transaction" => true,
            other => {
                return Err(key_err(
                    "postgres.pooler",
                    format!("`{other}`: expected \"none\" or \"transaction\""),
                ))
            }
        };
        if p.pool_size == 0 {
            return Err(key_err("postgres.pool_size", "must be greater than 0"));
        }
        let layout: Layout = p
            .layout
            .parse()
            .map_err(|e| key_err("postgres.layout", e))?;
        let poll_interval = duration("postgres.poll_interval", &p.poll_interval)?;
        if poll_interval < Duration::from_millis(10) || poll_interval > Duration::from_secs(60) {
            return Err(key_err(
                "postgres.poll_interval",
                "must be between 10ms and 60s",
            ));
        }
        let tls_verify = match p.tls.as_str() {
            "off" => false,
            "verify" => true,
            other => {
                return Err(key_err(
                    "postgres.tls",
                    format!("`{other}`: expected \"off\" or \"verify\""),
                ))
            }
        };
        if let Some(ca) = &p.ca_file {
            readable_file("postgres.ca_file", ca)?;
        }
        Ok(PostgresConfig {
            poll_interval,
            url: p.url.clone(),
            listen_url: p.listen_url.clone(),
            pooled,
            pool_size: p.pool_size,
            layout,
            schema: identifier(
                "postgres.schema",
                p.schema.as_deref().unwrap_or(layout.default_schema()),
            )?,
            connect_timeout: duration("postgres.connect_timeout", &p.connect_timeout)?,
            query_timeout: duration("postgres.query_timeout", &p.query_timeout)?,
            tls_verify,
            ca_file: p.ca_file.clone(),
        })
    }
}
