//! `[redis]`: which Redis authgate shares its counters and invalidations
//! through, in exactly one of three modes.
//!
//! * `url`: one server, `redis://` or `rediss://` (TLS), or a managed
//!   primary endpoint that moves on failover (the link reconnects by name);
//! * `cluster`: seed nodes of a Redis Cluster (`redis://` or `rediss://`,
//!   one scheme for all);
//! * `sentinels` + `sentinel_master`: the master that the sentinels name.
//!
//! Credentials of the data nodes travel in URLs (`redis://user:pass@...`),
//! in sentinel mode in `sentinel_master` written as a URL whose host is the
//! master's name (`rediss://:pass@mymaster`); the sentinels' own password
//! is `sentinel_password`, their TLS `sentinel_tls` (which a bare master
//! name follows too). `ca_file` (PEM) is the
//! only trust anchor for every TLS connection of the section when set, the
//! system roots otherwise; a certificate check can never be turned off.
//! Everything is checked here, so the link (`crate::redis_link`) only
//! connects.

use std::path::PathBuf;
use std::time::Duration;

use ::redis::IntoConnectionInfo;

use super::secret::{Secret, SecretUrl};
use super::values::{duration, readable_file};
use super::{key_err, ConfigError, RawConfig, RawRedis};

/// The checked `[redis]` section.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub mode: RedisMode,
    /// PEM bundle trusted for every TLS connection of the section (else the
    /// system roots).
    pub ca_file: Option<PathBuf>,
    /// Bound on every Redis operation; beyond it the caller carries on.
    pub timeout: Duration,
}

/// Where Redis is.
#[derive(Debug, Clone)]
pub enum RedisMode {
    /// One server: `redis://`, `rediss://` or `unix://`.
    Url(SecretUrl),
    /// Seed nodes of a cluster, one scheme for all.
    Cluster(Vec<SecretUrl>),
    Sentinel(SentinelConfig),
}

/// `sentinels` and the keys that go with them.
#[derive(Debug, Clone)]
pub struct SentinelConfig {
    /// Host and port of each sentinel.
    pub sentinels: Vec<(String, u16)>,
    /// The master's name, as the sentinels know it.
    pub master: String,
    /// The data nodes' URL: `sentinel_master` as written when it is a URL
    /// (its host the name; its scheme, user, password and database the
    /// data nodes'), else the bare name with TLS as `sentinel_tls` says.
    pub master_url: SecretUrl,
    pub password: Option<Secret>,
    pub tls: bool,
}

impl RedisConfig {
    /// Whether any connection of the section uses TLS.
    pub fn uses_tls(&self) -> bool {
        match &self.mode {
            RedisMode::Url(u) => is_tls(u),
            RedisMode::Cluster(nodes) => nodes.iter().any(is_tls),
            RedisMode::Sentinel(s) => s.tls || is_tls(&s.master_url),
        }
    }
}

fn is_tls(url: &SecretUrl) -> bool {
    url.expose().starts_with("rediss://")
}

fn set(url: &Option<SecretUrl>) -> Option<&SecretUrl> {
    url.as_ref().filter(|u| !u.expose().is_empty())
}

fn set_list<T>(list: &Option<Vec<T>>) -> Option<&[T]> {
    list.as_deref().filter(|l| !l.is_empty())
}

impl RawConfig {
    /// Check `[redis]`; `None` when no mode is set (Redis is optional).
    pub(super) fn compile_redis(&self) -> Result<Option<RedisConfig>, ConfigError> {
        compile(&self.redis)
    }
}

fn compile(raw: &RawRedis) -> Result<Option<RedisConfig>, ConfigError> {
    let url = set(&raw.url);
    let cluster = set_list(&raw.cluster);
    let sentinels = set_list(&raw.sentinels);
    let named: Vec<&str> = [
        (url.is_some(), "`redis.url`"),
        (cluster.is_some(), "`redis.cluster`"),
        (sentinels.is_some(), "`redis.sentinels`"),
    ]
    .into_iter()
    .filter_map(|(on, key)| on.then_some(key))
    .collect();
    if named.len() > 1 {
        return Err(key_err(
            "redis",
            format!(
                "{} are {} set; set exactly one of `url`, `cluster`, `sentinels`",
                named.join(" and "),
                if named.len() == 2 { "both" } else { "all" }
            ),
        ));
    }
    if sentinels.is_none() {
        for (on, key) in [
            (set(&raw.sentinel_master).is_some(), "redis.sentinel_master"),
            (raw.sentinel_password.is_some(), "redis.sentinel_password"),
            (raw.sentinel_tls, "redis.sentinel_tls"),
        ] {
            if on {
                return Err(key_err(key, "is only used with `redis.sentinels`"));
            }
        }
    }
    let mode = match (url, cluster, sentinels) {
        (Some(u), _, _) => RedisMode::Url(data_url("redis.url", u, true)?),
        (_, Some(nodes), _) => RedisMode::Cluster(cluster_nodes(nodes)?),
        (_, _, Some(s)) => RedisMode::Sentinel(sentinel(raw, s)?),
        _ => {
            if raw.ca_file.is_some() {
                return Err(key_err(
                    "redis.ca_file",
                    "is set but no Redis is configured",
                ));
            }
            return Ok(None);
        }
    };
    let cfg = RedisConfig {
        mode,
        ca_file: raw.ca_file.clone(),
        timeout: duration("redis.timeout", &raw.timeout)?,
    };
    if let Some(ca) = &cfg.ca_file {
        if !cfg.uses_tls() {
            return Err(key_err(
                "redis.ca_file",
                "is set but no connection uses TLS (rediss:// or sentinel_tls)",
            ));
        }
        readable_file("redis.ca_file", ca)?;
    }
    Ok(Some(cfg))
}

/// A data node's URL: a scheme authgate speaks, no way around the
/// certificate check, and what the client library itself accepts.
fn data_url(key: &str, url: &SecretUrl, unix: bool) -> Result<SecretUrl, ConfigError> {
    let s = url.expose();
    let scheme_ok = s.starts_with("redis://")
        || s.starts_with("rediss://")
        || (unix && s.starts_with("unix://"));
    if !scheme_ok {
        let schemes = if unix {
            "redis://, rediss:// or unix://"
        } else {
            "redis:// or rediss://"
        };
        return Err(key_err(
            key,
            format!("`{}` must start with {schemes}", url.redacted()),
        ));
    }
    if s.contains('#') {
        return Err(key_err(
            key,
            format!(
                "`{}`: a URL fragment (such as #insecure) is not accepted; certificates are always checked",
                url.redacted()
            ),
        ));
    }
    s.into_connection_info()
        .map_err(|e| key_err(key, format!("`{}` is not a Redis URL: {e}", url.redacted())))?;
    Ok(url.clone())
}

fn cluster_nodes(nodes: &[SecretUrl]) -> Result<Vec<SecretUrl>, ConfigError> {
    let checked = nodes
        .iter()
        .map(|n| data_url("redis.cluster", n, false))
        .collect::<Result<Vec<_>, _>>()?;
    if checked.iter().any(is_tls) && !checked.iter().all(is_tls) {
        return Err(key_err(
            "redis.cluster",
            "mixes redis:// and rediss:// seed nodes; a cluster has one scheme",
        ));
    }
    Ok(checked)
}

fn sentinel(raw: &RawRedis, sentinels: &[String]) -> Result<SentinelConfig, ConfigError> {
    let addrs = sentinels
        .iter()
        .map(|s| host_port(s))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(master_url) = set(&raw.sentinel_master) else {
        return Err(key_err(
            "redis.sentinel_master",
            "is required with `redis.sentinels`: the master's name, e.g. \"mymaster\"",
        ));
    };
    let master_url = if master_url.expose().contains("://") {
        data_url("redis.sentinel_master", master_url, false)?
    } else {
        // A bare name: the data nodes are reached as the sentinels are.
        let scheme = if raw.sentinel_tls { "rediss" } else { "redis" };
        SecretUrl(format!("{scheme}://{}", master_url.expose()))
    };
    let master = master_name(&master_url)?;
    Ok(SentinelConfig {
        sentinels: addrs,
        master,
        master_url,
        password: raw
            .sentinel_password
            .clone()
            .filter(|p| !p.expose().is_empty()),
        tls: raw.sentinel_tls,
    })
}

/// The host part of `sentinel_master` is the master's name.
fn master_name(url: &SecretUrl) -> Result<String, ConfigError> {
    let info = url.expose().into_connection_info().map_err(|e| {
        key_err(
            "redis.sentinel_master",
            format!("`{}`: {e}", url.redacted()),
        )
    })?;
    match info.addr() {
        ::redis::ConnectionAddr::Tcp(host, _) | ::redis::ConnectionAddr::TcpTls { host, .. }
            if !host.is_empty() =>
        {
            Ok(host.clone())
        }
        _ => Err(key_err(
            "redis.sentinel_master",
            format!("`{}` names no master", url.redacted()),
        )),
    }
}

/// `host:port` (`[v6]:port` for IPv6) of one sentinel.
fn host_port(s: &str) -> Result<(String, u16), ConfigError> {
    let bad = || {
        key_err(
            "redis.sentinels",
            format!(
                "`{s}` is not host:port (e.g. \"10.0.0.5:26379\"); the sentinels' password and TLS are `sentinel_password` and `sentinel_tls`"
            ),
        )
    };
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.contains(['/', '@', ':']) && !s.starts_with('[') {
        return Err(bad());
    }
    let port = port.parse::<u16>().map_err(|_| bad())?;
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests;
