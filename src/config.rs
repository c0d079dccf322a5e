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

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::authz::SessionPolicy;
use crate::route::{ContentTypeSpec, PatternSpec, RouteSpec, RouteTable, RuleSpec};

/// The built-in action tables for Strapi 5, used when the config file does
/// not list its own.
pub const DEFAULT_ACTIONS: &str = include_str!("defaults/actions.toml");

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

/// A secret string: never printed.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Drop for Secret {
    // Secrets do not linger in freed memory.
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// A URL whose password is redacted when printed.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(pub String);

impl SecretUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced: `user:password@` in URL form,
    /// `password=...` in libpq key=value form.
    pub fn redacted(&self) -> String {
        let s = &self.0;
        let Some(scheme_end) = s.find("://") else {
            return s
                .split(' ')
                .map(|part| {
                    if part.starts_with("password=") {
                        "password=<redacted>"
                    } else {
                        part
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
        };
        let rest = &s[scheme_end + 3..];
        let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
        match authority
            .rfind('@')
            .and_then(|at| authority[..at].find(':').map(|c| (c, at)))
        {
            Some((colon, at)) => {
                format!(
                    "{}{}:<redacted>{}",
                    &s[..scheme_end + 3],
                    &authority[..colon],
                    &rest[at..]
                )
            }
            None => s.clone(),
        }
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for SecretUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

// ---------------------------------------------------------------------------
// The file as written.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub server: RawServer,
    pub upstream: RawUpstream,
    pub postgres: RawPostgres,
    pub redis: RawRedis,
    pub tokens: RawTokens,
    pub cache: RawCache,
    pub routes: RawRoutes,
    pub content_types: Vec<RawContentType>,
    pub content_api_actions: Option<Vec<RawAction>>,
    pub admin_actions: Option<Vec<RawAction>>,
    pub identity: RawIdentity,
    pub rate_limit: RawRateLimit,
    pub metrics: RawMetrics,
    pub management: RawManagement,
    pub audit: RawAudit,
    pub log: RawLog,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub listen: String,
    pub worker_threads: usize,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub request_header_timeout: String,
    pub idle_timeout: String,
    pub shutdown_delay: String,
    pub shutdown_grace: String,
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_uri_bytes: usize,
    pub trusted_proxies: Vec<String>,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            worker_threads: 0,
            tls_cert: None,
            tls_key: None,
            request_header_timeout: "10s".into(),
            idle_timeout: "60s".into(),
            shutdown_delay: "0s".into(),
            shutdown_grace: "30s".into(),
            max_connections: 10_000,
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUpstream {
    pub url: String,
    pub connect_timeout: String,
    pub request_timeout: String,
    pub pool_max_idle: usize,
    pub pool_idle_timeout: String,
    pub ca_file: Option<PathBuf>,
    pub host: Option<String>,
}

impl Default for RawUpstream {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:1337".into(),
            connect_timeout: "2s".into(),
            request_timeout: "60s".into(),
            pool_max_idle: 64,
            pool_idle_timeout: "90s".into(),
            ca_file: None,
            host: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPostgres {
    pub url: SecretUrl,
    pub pool_size: usize,
    /// "authgate" (authgate's own tables) or "strapi5" (a Strapi 5 database,
    /// read in place).
    pub layout: String,
    /// Unset: `authgate` in the authgate layout, `public` in the strapi5 layout.
    pub schema: Option<String>,
    pub connect_timeout: String,
    pub query_timeout: String,
    pub tls: String,
    pub ca_file: Option<PathBuf>,
    /// strapi5 layout: how often Strapi's tables are fingerprinted for
    /// changes (all of them without authgate's triggers; only the stored
    /// content types with them).
    pub poll_interval: String,
}

impl Default for RawPostgres {
    fn default() -> Self {
        Self {
            url: SecretUrl("postgres://postgres@127.0.0.1:5432/postgres".into()),
            pool_size: 8,
            layout: "authgate".into(),
            schema: None,
            connect_timeout: "2s".into(),
            query_timeout: "2s".into(),
            tls: "off".into(),
            ca_file: None,
            poll_interval: "250ms".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRedis {
    pub url: Option<SecretUrl>,
    pub timeout: String,
}

impl Default for RawRedis {
    fn default() -> Self {
        Self {
            url: None,
            timeout: "100ms".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTokens {
    pub salt: Option<Secret>,
    pub encryption_key: Option<Secret>,
    pub last_used_interval: String,
    pub stats_interval: String,
}

impl Default for RawTokens {
    fn default() -> Self {
        Self {
            salt: None,
            encryption_key: None,
            last_used_interval: "60s".into(),
            stats_interval: "60s".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCache {
    pub capacity: u64,
    /// Unset: 60 s in the authgate layout, 5 s in the strapi5 layout.
    pub ttl: Option<String>,
    pub negative_ttl: String,
    pub stale_if_error: String,
}

impl Default for RawCache {
    fn default() -> Self {
        Self {
            capacity: 100_000,
            ttl: None,
            negative_ttl: "5s".into(),
            stale_if_error: "30s".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRoutes {
    pub admin_prefixes: Vec<String>,
    pub content_api_prefixes: Vec<String>,
    pub graphql_path: Option<String>,
    pub graphql_max_body: usize,
    pub sessions: String,
    pub rule: Vec<RawRule>,
}

impl Default for RawRoutes {
    fn default() -> Self {
        Self {
            admin_prefixes: [
                "/admin",
                "/content-manager",
                "/content-type-builder",
                "/upload",
                "/users-permissions",
                "/i18n",
                "/email",
            ]
            .map(String::from)
            .to_vec(),
            content_api_prefixes: vec!["/api".into(), "/graphql".into()],
            graphql_path: Some("/graphql".into()),
            graphql_max_body: 1024 * 1024,
            sessions: "pass".into(),
            rule: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub prefix: String,
    #[serde(default)]
    pub methods: Option<String>,
    #[serde(default = "default_auth")]
    pub auth: String,
}

fn default_auth() -> String {
    "optional".into()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawContentType {
    pub uid: String,
    #[serde(default)]
    pub plural: Option<String>,
    #[serde(default)]
    pub singular: Option<String>,
    #[serde(default = "default_ct_kind")]
    pub kind: String,
}

fn default_ct_kind() -> String {
    "collection".into()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAction {
    pub route: String,
    /// Omitted: the route needs no specific action.
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub subject: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawIdentity {
    pub header_prefix: String,
    pub signing_key: Option<Secret>,
    pub forward_authorization: bool,
}

impl Default for RawIdentity {
    fn default() -> Self {
        Self {
            header_prefix: "x-auth-".into(),
            signing_key: None,
            forward_authorization: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRateLimit {
    /// Requests per token per window; 0 = off.
    pub per_token: u32,
    pub window: String,
    /// Failed authentications per client IP per window; 0 = off.
    pub failed_auth_per_ip: u32,
}

impl Default for RawRateLimit {
    fn default() -> Self {
        Self {
            per_token: 0,
            window: "1s".into(),
            failed_auth_per_ip: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMetrics {
    pub listen: Option<String>,
}

impl Default for RawMetrics {
    fn default() -> Self {
        Self {
            listen: Some("127.0.0.1:9090".into()),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawManagement {
    /// The token-management API and web page; default 127.0.0.1:9091,
    /// "" turns it off.
    pub listen: Option<String>,
    /// A file holding a 256-hex key (e.g. a mounted Kubernetes Secret):
    /// the first super-admin token, provisioned at start.
    pub bootstrap_token_file: Option<PathBuf>,
    /// A web session ends after this long without a request.
    pub session_ttl: String,
}

impl Default for RawManagement {
    fn default() -> Self {
        Self {
            listen: Some("127.0.0.1:9091".into()),
            bootstrap_token_file: None,
            session_ttl: "30m".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAudit {
    /// The HMAC key of the audit chain; unset: derived from `tokens.salt`.
    pub key: Option<Secret>,
    /// Events older than this are pruned (a checkpoint keeps the chain
    /// verifiable).
    pub retention: String,
}

impl Default for RawAudit {
    fn default() -> Self {
        Self {
            key: None,
            retention: "365d".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    pub format: String,
    pub level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct DefaultActions {
    content_api_actions: Vec<RawAction>,
    admin_actions: Vec<RawAction>,
}

// ---------------------------------------------------------------------------
// Loading.
// ---------------------------------------------------------------------------

/// Sections, longest first so `RATE_LIMIT` wins over a `RATE` prefix.
const SECTIONS: &[&str] = &[
    "management",
    "rate_limit",
    "upstream",
    "postgres",
    "identity",
    "metrics",
    "server",
    "audit",
    "tokens",
    "routes",
    "cache",
    "redis",
    "log",
];

/// Keys whose environment values are always strings, even when they look
/// like numbers.
const STRING_KEYS: &[&str] = &[
    "salt",
    "encryption_key",
    "signing_key",
    "url",
    "listen",
    "schema",
    "layout",
    "header_prefix",
    "level",
    "format",
    "bootstrap_token_file",
];

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

fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (var, value) in env {
        match var.as_str() {
            "API_TOKEN_SALT" => pairs.push(("tokens.salt".into(), value)),
            "ENCRYPTION_KEY" => pairs.push(("tokens.encryption_key".into(), value)),
            "AUTHGATE_CONFIG" => {}
            v if is_service_link(v) => {}
            v if v.starts_with("AUTHGATE_") => {
                let rest = v["AUTHGATE_".len()..].to_ascii_lowercase();
                let section = SECTIONS
                    .iter()
                    .find(|s| rest.starts_with(&format!("{s}_")))
                    .ok_or_else(|| ConfigError::Env {
                        var: var.clone(),
                        problem: format!(
                            "no config section matches (sections: {})",
                            SECTIONS.join(", ")
                        ),
                    })?;
                let key = &rest[section.len() + 1..];
                pairs.push((format!("{section}.{key}"), value));
            }
            _ => {}
        }
    }
    // AUTHGATE_ names win over the Strapi names.
    pairs.sort_by_key(|(k, _)| k.clone());
    for (dotted, value) in pairs {
        let (section, key) = dotted.split_once('.').unwrap_or(("", ""));
        let entry = table
            .entry(section.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(sec) = entry else {
            return Err(key_err(section, "must be a table"));
        };
        sec.insert(key.to_owned(), env_value(key, &value));
    }
    Ok(())
}

/// Kubernetes injects `<SERVICE>_SERVICE_HOST`, `<SERVICE>_SERVICE_PORT[_*]`
/// and `<SERVICE>_PORT[_*]` for every Service in the namespace; a Service
/// named `authgate` or `authgate-metrics` would otherwise look like config.
fn is_service_link(var: &str) -> bool {
    let v = var.to_ascii_uppercase();
    v.ends_with("_SERVICE_HOST")
        || v.ends_with("_SERVICE_PORT")
        || v.contains("_SERVICE_PORT_")
        || v.ends_with("_PORT")
        || v.split("_PORT_")
            .nth(1)
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
}

fn env_value(key: &str, raw: &str) -> toml::Value {
    if STRING_KEYS.contains(&key) {
        return toml::Value::String(raw.to_owned());
    }
    if let Ok(b) = raw.parse::<bool>() {
        return toml::Value::Boolean(b);
    }
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if raw.trim_start().starts_with('[') {
        if let Ok(t) = format!("v = {raw}").parse::<toml::Table>() {
            if let Some(v) = t.get("v") {
                return v.clone();
            }
        }
    }
    toml::Value::String(raw.to_owned())
}

/// Load the config from `path` with the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_raw_with_env(path, std::env::vars())?.compile()
}

// ---------------------------------------------------------------------------
// The compiled config.
// ---------------------------------------------------------------------------

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
    pub audit: AuditConfig,
    pub log: LogConfig,
    /// The deserialised file, for `check-config` (secrets redacted on print).
    pub raw: RawConfig,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub worker_threads: usize,
    pub tls: Option<TlsFiles>,
    pub request_header_timeout: Duration,
    pub idle_timeout: Duration,
    pub shutdown_delay: Duration,
    pub shutdown_grace: Duration,
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_uri_bytes: usize,
    pub forwarding: crate::forwarding::Forwarding,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub url: http::Uri,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub pool_max_idle: usize,
    pub pool_idle_timeout: Duration,
    pub ca_file: Option<PathBuf>,
}

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

#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: SecretUrl,
    /// Bound on every Redis operation; beyond it the caller carries on.
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct TokensConfig {
    pub salt: Secret,
    pub encryption_key: Option<Secret>,
    pub last_used_interval: Duration,
    /// How often the `authgate_tokens*` gauges are recounted from the store.
    pub stats_interval: Duration,
}

/// `[audit]`: the management audit trail (see `crate::audit`).
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// `audit.key`; `None`: derived from `tokens.salt`.
    pub key: Option<Secret>,
    pub retention: Duration,
}

#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub capacity: u64,
    pub ttl: Duration,
    pub negative_ttl: Duration,
    pub stale_if_error: Duration,
}

#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// Lower-case.
    pub header_prefix: String,
    pub signing_key: Option<Secret>,
    pub forward_authorization: bool,
}

#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    pub per_token: u32,
    pub window: Duration,
    pub failed_auth_per_ip: u32,
}

#[derive(Debug, Clone)]
pub struct ManagementConfig {
    /// `None`: no management listener.
    pub listen: Option<SocketAddr>,
    pub bootstrap_token_file: Option<PathBuf>,
    pub session_ttl: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

fn duration(key: &str, s: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        key_err(
            key,
            format!("invalid duration `{s}` ({e}); write e.g. `500ms`, `30s`, `5m`"),
        )
    })
}

fn socket_addr(key: &str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.parse().map_err(|_| {
        key_err(
            key,
            format!("invalid listen address `{s}`; write e.g. `127.0.0.1:8080`"),
        )
    })
}

fn identifier(key: &str, s: &str) -> Result<String, ConfigError> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(key_err(
            key,
            format!("`{s}` is not a plain lower-case SQL identifier"),
        ))
    }
}

fn actions(list: &[RawAction]) -> Vec<PatternSpec> {
    list.iter()
        .map(|a| PatternSpec {
            route: a.route.clone(),
            action: a.action.clone(),
            subject: a.subject.clone(),
        })
        .collect()
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
        let metrics_listen = match &self.metrics.listen {
            Some(l) if !l.is_empty() => Some(socket_addr("metrics.listen", l)?),
            _ => None,
        };
        let management = self.compile_management()?;
        let log = self.compile_log()?;
        let redis = self.compile_redis()?;
        let audit = self.compile_audit()?;
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
            audit,
            log,
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

    fn compile_server(&self) -> Result<ServerConfig, ConfigError> {
        let s = &self.server;
        let tls = match (&s.tls_cert, &s.tls_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                readable_file("server.tls_cert", cert)?;
                readable_file("server.tls_key", key)?;
                Some(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                })
            }
            (Some(_), None) => {
                return Err(key_err(
                    "server.tls_key",
                    "required when server.tls_cert is set",
                ))
            }
            (None, Some(_)) => {
                return Err(key_err(
                    "server.tls_cert",
                    "required when server.tls_key is set",
                ))
            }
        };
        for (k, v) in [
            ("server.max_connections", s.max_connections),
            ("server.max_header_bytes", s.max_header_bytes),
            ("server.max_headers", s.max_headers),
            ("server.max_uri_bytes", s.max_uri_bytes),
        ] {
            if v == 0 {
                return Err(key_err(k, "must be greater than 0"));
            }
        }
        let mut trusted = Vec::new();
        for (i, t) in s.trusted_proxies.iter().enumerate() {
            trusted.push(
                crate::cidr::Cidr::parse_masked(t)
                    .map_err(|e| key_err(format!("server.trusted_proxies[{i}]"), e.to_string()))?,
            );
        }
        // `upstream.host` is applied by the forwarding layer, with the
        // `X-Forwarded-*` headers.
        let host = match &self.upstream.host {
            Some(h) if !h.is_empty() => Some(http::HeaderValue::from_str(h).map_err(|_| {
                key_err(
                    "upstream.host",
                    format!("`{h}` is not a valid Host header value"),
                )
            })?),
            _ => None,
        };
        Ok(ServerConfig {
            listen: socket_addr("server.listen", &s.listen)?,
            worker_threads: s.worker_threads,
            tls,
            request_header_timeout: duration(
                "server.request_header_timeout",
                &s.request_header_timeout,
            )?,
            idle_timeout: duration("server.idle_timeout", &s.idle_timeout)?,
            shutdown_delay: duration("server.shutdown_delay", &s.shutdown_delay)?,
            shutdown_grace: duration("server.shutdown_grace", &s.shutdown_grace)?,
            max_connections: s.max_connections,
            max_header_bytes: s.max_header_bytes,
            max_headers: s.max_headers,
            max_uri_bytes: s.max_uri_bytes,
            forwarding: crate::forwarding::Forwarding { trusted, host },
        })
    }

    fn compile_upstream(&self) -> Result<UpstreamConfig, ConfigError> {
        let u = &self.upstream;
        let url: http::Uri = u
            .url
            .parse()
            .map_err(|e| key_err("upstream.url", format!("invalid URL `{}`: {e}", u.url)))?;
        match url.scheme_str() {
            Some("http") | Some("https") => {}
            _ => {
                return Err(key_err(
                    "upstream.url",
                    format!("`{}` must start with http:// or https://", u.url),
                ))
            }
        }
        if url.authority().is_none() {
            return Err(key_err("upstream.url", format!("`{}` has no host", u.url)));
        }
        if url.path() != "/" && !url.path().is_empty() {
            return Err(key_err(
                "upstream.url",
                format!(
                    "`{}` must not have a path: requests are forwarded with their own path",
                    u.url
                ),
            ));
        }
        if let Some(ca) = &u.ca_file {
            readable_file("upstream.ca_file", ca)?;
        }
        Ok(UpstreamConfig {
            url,
            connect_timeout: duration("upstream.connect_timeout", &u.connect_timeout)?,
            request_timeout: duration("upstream.request_timeout", &u.request_timeout)?,
            pool_max_idle: u.pool_max_idle,
            pool_idle_timeout: duration("upstream.pool_idle_timeout", &u.pool_idle_timeout)?,
            ca_file: u.ca_file.clone(),
        })
    }

    fn compile_postgres(&self) -> Result<PostgresConfig, ConfigError> {
        let p = &self.postgres;
        if p.url.expose().trim().is_empty() {
            return Err(key_err("postgres.url", "must be set"));
        }
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

    fn compile_tokens(&self) -> Result<TokensConfig, ConfigError> {
        let t = &self.tokens;
        let salt = match &t.salt {
            Some(s) if !s.expose().is_empty() => s.clone(),
            _ => {
                return Err(key_err(
                    "tokens.salt",
                    "missing: set it in the file, or with API_TOKEN_SALT or AUTHGATE_TOKENS_SALT (the same salt as the CMS)",
                ))
            }
        };
        let stats_interval = duration("tokens.stats_interval", &t.stats_interval)?;
        if stats_interval < Duration::from_secs(1) {
            return Err(key_err("tokens.stats_interval", "must be at least 1s"));
        }
        Ok(TokensConfig {
            salt,
            encryption_key: t.encryption_key.clone().filter(|k| !k.expose().is_empty()),
            last_used_interval: duration("tokens.last_used_interval", &t.last_used_interval)?,
            stats_interval,
        })
    }

    /// `cache.ttl` defaults by layout (see [`Layout::default_cache_ttl`]).
    fn compile_cache(&self, layout: Layout) -> Result<CacheConfig, ConfigError> {
        let c = &self.cache;
        Ok(CacheConfig {
            capacity: c.capacity,
            ttl: duration(
                "cache.ttl",
                c.ttl.as_deref().unwrap_or(layout.default_cache_ttl()),
            )?,
            negative_ttl: duration("cache.negative_ttl", &c.negative_ttl)?,
            stale_if_error: duration("cache.stale_if_error", &c.stale_if_error)?,
        })
    }

    /// `[routes]`, `[[content_types]]` and the action tables (the file's, or
    /// the built-in ones): the spec the route table is built from.
    fn compile_routes(&self) -> Result<(SessionPolicy, RouteSpec), ConfigError> {
        let sessions = match self.routes.sessions.as_str() {
            "pass" => SessionPolicy::Pass,
            "reject" => SessionPolicy::Reject,
            other => {
                return Err(key_err(
                    "routes.sessions",
                    format!("`{other}`: expected \"pass\" or \"reject\""),
                ))
            }
        };
        let mut rules = Vec::new();
        for (i, r) in self.routes.rule.iter().enumerate() {
            let auth_required = match r.auth.as_str() {
                "required" => true,
                "optional" => false,
                other => {
                    return Err(key_err(
                        format!("routes.rule[{i}].auth"),
                        format!("`{other}`: expected \"required\" or \"optional\""),
                    ))
                }
            };
            rules.push(RuleSpec {
                prefix: r.prefix.clone(),
                methods: r.methods.clone(),
                auth_required,
            });
        }
        let mut content_types = Vec::new();
        for (i, ct) in self.content_types.iter().enumerate() {
            let single = match ct.kind.as_str() {
                "collection" => false,
                "single" => true,
                other => {
                    return Err(key_err(
                        format!("content_types[{i}].kind"),
                        format!("`{other}`: expected \"collection\" or \"single\""),
                    ))
                }
            };
            content_types.push(ContentTypeSpec {
                uid: ct.uid.clone(),
                plural: ct.plural.clone(),
                singular: ct.singular.clone(),
                single,
            });
        }
        let defaults: DefaultActions = toml::from_str(DEFAULT_ACTIONS)
            .map_err(|e| key_err("(built-in action tables)", e.message().to_owned()))?;
        let content_api_actions = actions(
            self.content_api_actions
                .as_ref()
                .unwrap_or(&defaults.content_api_actions),
        );
        let admin_actions = actions(
            self.admin_actions
                .as_ref()
                .unwrap_or(&defaults.admin_actions),
        );
        let spec = RouteSpec {
            admin_prefixes: self.routes.admin_prefixes.clone(),
            content_api_prefixes: self.routes.content_api_prefixes.clone(),
            graphql_path: self.routes.graphql_path.clone(),
            rules,
            content_types,
            content_api_actions,
            admin_actions,
        };
        Ok((sessions, spec))
    }

    fn compile_identity(&self) -> Result<IdentityConfig, ConfigError> {
        let i = &self.identity;
        let prefix = i.header_prefix.to_ascii_lowercase();
        if prefix.is_empty()
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(key_err(
                "identity.header_prefix",
                format!("`{}` is not a header name prefix", i.header_prefix),
            ));
        }
        Ok(IdentityConfig {
            header_prefix: prefix,
            signing_key: i.signing_key.clone().filter(|k| !k.expose().is_empty()),
            forward_authorization: i.forward_authorization,
        })
    }

    fn compile_rate_limit(&self) -> Result<RateLimitConfig, ConfigError> {
        let rl = &self.rate_limit;
        let window = duration("rate_limit.window", &rl.window)?;
        if window.is_zero() {
            return Err(key_err("rate_limit.window", "must be greater than 0"));
        }
        Ok(RateLimitConfig {
            per_token: rl.per_token,
            window,
            failed_auth_per_ip: rl.failed_auth_per_ip,
        })
    }

    fn compile_management(&self) -> Result<ManagementConfig, ConfigError> {
        let m = &self.management;
        let management = ManagementConfig {
            listen: match &m.listen {
                Some(l) if !l.is_empty() => Some(socket_addr("management.listen", l)?),
                _ => None,
            },
            bootstrap_token_file: m
                .bootstrap_token_file
                .clone()
                .filter(|p| !p.as_os_str().is_empty()),
            session_ttl: duration("management.session_ttl", &m.session_ttl)?,
        };
        if management.bootstrap_token_file.is_some() && management.listen.is_none() {
            return Err(key_err(
                "management.bootstrap_token_file",
                "needs management.listen: the token is provisioned by the management listener",
            ));
        }
        if management.session_ttl.is_zero() {
            return Err(key_err("management.session_ttl", "must be greater than 0"));
        }
        Ok(management)
    }

    fn compile_log(&self) -> Result<LogConfig, ConfigError> {
        let format = match self.log.format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(key_err(
                    "log.format",
                    format!("`{other}`: expected \"text\" or \"json\""),
                ))
            }
        };
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| key_err("log.level", format!("`{}`: {e}", self.log.level)))?;
        Ok(LogConfig {
            format,
            level: self.log.level.clone(),
        })
    }

    fn compile_redis(&self) -> Result<Option<RedisConfig>, ConfigError> {
        let Some(url) = self.redis.url.clone().filter(|u| !u.expose().is_empty()) else {
            return Ok(None);
        };
        if !url.expose().starts_with("redis://") && !url.expose().starts_with("unix://") {
            return Err(key_err(
                "redis.url",
                format!("`{}` must start with redis://", url.redacted()),
            ));
        }
        Ok(Some(RedisConfig {
            url,
            timeout: duration("redis.timeout", &self.redis.timeout)?,
        }))
    }

    fn compile_audit(&self) -> Result<AuditConfig, ConfigError> {
        let retention = duration("audit.retention", &self.audit.retention)?;
        if retention < Duration::from_secs(86_400) {
            return Err(key_err("audit.retention", "must be at least 1d"));
        }
        Ok(AuditConfig {
            key: self.audit.key.clone().filter(|k| !k.expose().is_empty()),
            retention,
        })
    }
}

/// A path named in the config must exist and be readable at start.
fn readable_file(key: &str, path: &std::path::Path) -> Result<(), ConfigError> {
    std::fs::metadata(path)
        .map(|_| ())
        .map_err(|e| key_err(key, format!("cannot read `{}`: {e}", path.display())))
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
