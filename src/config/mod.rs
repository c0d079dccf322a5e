//! `config.toml`: parsed once into types that cannot be wrong.
//!
//! The file is read into a TOML table, environment overrides are laid over
//! it (`AUTHGATE_<SECTION>_<KEY>`, plus Strapi's own `API_TOKEN_SALT` and
//! `ENCRYPTION_KEY`), and the result is deserialised with unknown keys
//! rejected. [`RawConfig::compile`] then turns strings into durations,
//! addresses, URLs and compiled route tables. Nothing later re-checks a
//! string: an invalid config fails at start with one message naming the key.
//!
//! Secrets (`tokens.salt`, `tokens.encryption_key`, `identity.signing_key`,
//! passwords inside URLs) are wrapped in [`Secret`], whose `Debug` and
//! `Serialize` print `<redacted>`.
//!
//! | file | holds |
//! | --- | --- |
//! | `mod.rs` | [`Config`], [`ConfigError`], loading, and [`RawConfig::compile`], which calls one `compile_*` per section |
//! | `raw.rs` | the file as written: a `Raw*` struct per section, with its defaults |
//! | `env.rs` | the environment overrides |
//! | `secret.rs` | [`Secret`], [`SecretUrl`] |
//! | `values.rs` | the shared checks: durations, addresses, files, identifiers |
//! | `server.rs` | `[server]` |
//! | `upstream.rs` | `[upstream]` |
//! | `postgres.rs` | `[postgres]` and the [`Layout`] |
//! | `redis.rs` | `[redis]` |
//! | `tokens.rs` | `[tokens]`, `[cache]`, `[rate_limit]` |
//! | `routes.rs` | `[routes]`, `[[content_types]]`, the action tables |
//! | `identity.rs` | `[identity]` |
//! | `management.rs` | `[management]`, `[audit]` |
//! | `decision.rs` | `[decision]` |
//! | `observability.rs` | `[log]`, `[metrics]` |
//! | `tracing.rs` | `[tracing]` (OTLP traces) |
//!
//! Each section's file holds its runtime type and the `compile_*` that
//! checks its raw section. A new section gets a file of its own: its
//! `Raw*` struct in `raw.rs`, its name in `env.rs`'s `SECTIONS`, a field
//! in [`Config`] and one call in [`RawConfig::compile`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::authz::SessionPolicy;
use crate::route::{RouteSpec, RouteTable};
use env::apply_env;

mod decision;
mod env;
mod identity;
mod management;
mod observability;
mod postgres;
mod raw;
mod redis;
mod routes;
mod secret;
mod server;
mod tokens;
mod tracing;
mod upstream;
mod values;

pub use self::tracing::TracingConfig;
pub use decision::DecisionConfig;
pub use identity::IdentityConfig;
pub use management::{AuditConfig, ManagementConfig};
pub use observability::{LogConfig, LogFormat};
pub use postgres::{Layout, PostgresConfig};
pub use raw::{
    RawAction, RawAudit, RawCache, RawConfig, RawContentType, RawDecision, RawIdentity, RawLog,
    RawManagement, RawMetrics, RawPostgres, RawRateLimit, RawRedis, RawRoutes, RawRule, RawServer,
    RawTokens, RawTracing, RawUpstream,
};
pub use redis::{RedisConfig, RedisMode, SentinelConfig};
pub use routes::DEFAULT_ACTIONS;
pub use secret::{Secret, SecretUrl};
pub use server::{Enforcement, ServerConfig, TlsFiles};
pub use tokens::{CacheConfig, RateLimitConfig, TokensConfig};
pub use upstream::UpstreamConfig;

/// A config problem: the key and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config key `{key}`: {problem}")]
    Key { key: String, problem: String },
    #[error("environment variable {var}: {problem}")]
    Env { var: String, problem: String },
}

fn key_err(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.into(),
        problem: problem.into(),
    }
}

/// The config file path: `--config`, else `AUTHGATE_CONFIG`, else `./config.toml`.
pub fn resolve_path(arg: Option<&Path>) -> PathBuf {
    if let Some(p) = arg {
        return p.to_path_buf();
    }
    match std::env::var_os("AUTHGATE_CONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("config.toml"),
    }
}

/// Read, overlay the environment, deserialise. `env` is injectable for tests.
pub fn load_raw_with_env(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<RawConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_raw(&text, path, env)
}

/// Parse config text (see [`load_raw_with_env`]).
pub fn parse_raw(
    text: &str,
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<RawConfig, ConfigError> {
    let mut table: toml::Table =
        text.parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax {
                path: path.to_path_buf(),
                message: e.message().to_owned(),
            })?;
    apply_env(&mut table, env)?;
    let de = toml::Value::Table(table);
    serde_path_to_error::deserialize::<_, RawConfig>(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner().to_string();
        key_err(
            if key == "." {
                "(top level)".into()
            } else {
                key
            },
            inner,
        )
    })
}

/// Load the config from `path` with the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_raw_with_env(path, std::env::vars())?.compile()
}

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub upstream: UpstreamConfig,
    pub postgres: PostgresConfig,
    pub redis: Option<RedisConfig>,
    pub tokens: TokensConfig,
    pub cache: CacheConfig,
    pub routes: std::sync::Arc<RouteTable>,
    /// What `routes` was built from, so the strapi5 layout can rebuild it
    /// with the content types Strapi stores (`content_types::merge`).
    pub route_spec: std::sync::Arc<RouteSpec>,
    pub sessions: SessionPolicy,
    /// Largest GraphQL body read to find a read-only token's operation.
    pub graphql_max_body: usize,
    pub identity: IdentityConfig,
    pub rate_limit: RateLimitConfig,
    pub metrics_listen: Option<SocketAddr>,
    pub management: ManagementConfig,
    /// `[decision]`: the front proxies' decision listener.
    pub decision: DecisionConfig,
    pub audit: AuditConfig,
    pub log: LogConfig,
    pub tracing: TracingConfig,
    /// The deserialised file, for `check-config` (secrets redacted on print).
    pub raw: RawConfig,
}

impl RawConfig {
    /// Check every value and build the runtime config: one `compile_*` per
    /// section of the file, in the file's order.
    pub fn compile(self) -> Result<Config, ConfigError> {
        let server = self.compile_server()?;
        let upstream = self.compile_upstream()?;
        let postgres = self.compile_postgres()?;
        let layout = postgres.layout;
        let tokens = self.compile_tokens()?;
        let cache = self.compile_cache(layout)?;
        let (sessions, spec) = self.compile_routes()?;
        let routes = RouteTable::build(&spec).map_err(|e| key_err("routes", e))?;
        let identity = self.compile_identity()?;
        let rate_limit = self.compile_rate_limit()?;
        let metrics_listen = self.compile_metrics()?;
        let management = self.compile_management()?;
        let decision = self.compile_decision()?;
        let log = self.compile_log()?;
        let redis = self.compile_redis()?;
        let audit = self.compile_audit()?;
        let tracing = self.compile_tracing()?;
        Ok(Config {
            server,
            upstream,
            redis,
            tokens,
            cache,
            routes: std::sync::Arc::new(routes),
            route_spec: std::sync::Arc::new(spec),
            sessions,
            graphql_max_body: self.routes.graphql_max_body,
            identity,
            rate_limit,
            metrics_listen,
            management,
            decision,
            audit,
            log,
            tracing,
            raw: {
                // Print what is in force, layout defaults included.
                let mut raw = self;
                raw.postgres.schema = Some(postgres.schema.clone());
                raw.cache
                    .ttl
                    .get_or_insert_with(|| layout.default_cache_ttl().to_owned());
                raw
            },
            postgres,
        })
    }
}

impl Config {
    /// The effective config as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(&self.raw)
            .unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

#[cfg(test)]
mod tests;
