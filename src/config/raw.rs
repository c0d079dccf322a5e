//! The file as written: one serde struct per section, with its defaults.
//!
//! Unknown keys are rejected (`deny_unknown_fields`), so a typo fails at
//! start. Values stay strings here ("30s", "127.0.0.1:8080"); the file of
//! each section (`server.rs`, `postgres.rs`, ...) turns them into checked
//! runtime types. `RawConfig` is also what `check-config` prints (with the
//! layout defaults filled in and secrets redacted), so every field
//! serialises.
//!
//! Adding a key: a field here and its default in the section's `Default`,
//! then its check in the section's file; a new section also needs a field
//! in [`RawConfig`] and its name in `env.rs`'s `SECTIONS`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::secret::{Secret, SecretUrl};

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
    pub decision: RawDecision,
    pub audit: RawAudit,
    pub log: RawLog,
    pub tracing: RawTracing,
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
    pub tunnel_idle_timeout: String,
    pub shutdown_delay: String,
    pub shutdown_grace: String,
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_uri_bytes: usize,
    pub trusted_proxies: Vec<String>,
    pub trusted_headers: Vec<String>,
    pub enforcement: String,
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
            tunnel_idle_timeout: "10m".into(),
            shutdown_delay: "0s".into(),
            shutdown_grace: "30s".into(),
            max_connections: 10_000,
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
            trusted_proxies: Vec::new(),
            trusted_headers: Vec::new(),
            enforcement: "enforce".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUpstream {
    pub url: String,
    pub connect_timeout: String,
    pub request_timeout: String,
    pub body_idle_timeout: String,
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
            body_idle_timeout: "60s".into(),
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
    /// A direct connection for LISTEN/NOTIFY when `url` goes through a
    /// pooler that cannot carry it (PgBouncer or PgCat in transaction mode).
    pub listen_url: Option<SecretUrl>,
    /// "none" (authgate's pool holds its server sessions) or "transaction"
    /// (a pooler in transaction mode sits between: keep nothing on them).
    pub pooler: String,
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
            listen_url: None,
            pooler: "none".into(),
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
    pub cluster: Option<Vec<SecretUrl>>,
    pub sentinels: Option<Vec<String>>,
    pub sentinel_master: Option<SecretUrl>,
    pub sentinel_password: Option<Secret>,
    pub sentinel_tls: bool,
    pub ca_file: Option<PathBuf>,
    pub timeout: String,
}

impl Default for RawRedis {
    fn default() -> Self {
        Self {
            url: None,
            cluster: None,
            sentinels: None,
            sentinel_master: None,
            sentinel_password: None,
            sentinel_tls: false,
            ca_file: None,
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
    /// Peers whose `X-Forwarded-For` names the client on this listener
    /// (its own list: the proxy's `server.trusted_proxies` is not used).
    pub trusted_proxies: Vec<String>,
    /// The `Host` names this listener answers to (DNS rebinding).
    pub allowed_hosts: Vec<String>,
}

impl Default for RawManagement {
    fn default() -> Self {
        Self {
            listen: Some("127.0.0.1:9091".into()),
            bootstrap_token_file: None,
            session_ttl: "30m".into(),
            trusted_proxies: Vec::new(),
            allowed_hosts: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDecision {
    /// The decision listener (forward-auth, ext_authz); "" (default) is off.
    pub listen: String,
    /// Callers answered (IPs or CIDR blocks): the front proxies. Default
    /// loopback only.
    pub trusted_callers: Vec<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl Default for RawDecision {
    fn default() -> Self {
        Self {
            listen: String::new(),
            trusted_callers: super::decision::DEFAULT_TRUSTED_CALLERS
                .map(String::from)
                .to_vec(),
            tls_cert: None,
            tls_key: None,
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

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTracing {
    /// Base URL of an OTLP/HTTP receiver (`/v1/traces` is appended); ""
    /// turns tracing off.
    pub otlp_endpoint: String,
    /// Share of requests recorded (0.0 to 1.0), by trace id; a client's
    /// unsampled `traceparent` is never recorded.
    pub sample_ratio: f64,
    /// The `service.name` of the spans.
    pub service_name: String,
}

impl Default for RawTracing {
    fn default() -> Self {
        Self {
            otlp_endpoint: String::new(),
            sample_ratio: 1.0,
            service_name: "authgate".into(),
        }
    }
}
