//! `[management]`: the token-management listener (API and web page), the
//! bootstrap token and web sessions; and `[audit]`, the trail every
//! management write leaves (see `crate::audit`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::secret::Secret;
use super::values::{cidrs, duration, socket_addr};
use super::{key_err, ConfigError, RawConfig};

#[derive(Debug, Clone)]
pub struct ManagementConfig {
    /// `None`: no management listener.
    pub listen: Option<SocketAddr>,
    pub bootstrap_token_file: Option<PathBuf>,
    pub session_ttl: Duration,
    /// `management.trusted_proxies`: who may name the client here.
    pub proxies: crate::forward::TrustedProxies,
    /// `management.allowed_hosts`, lower case; empty: see
    /// [`ManagementConfig::admits_host`].
    pub allowed_hosts: Vec<String>,
}

impl ManagementConfig {
    /// May a request naming `host` (an authority, validated) be served?
    /// With `allowed_hosts` set, only those names (an entry without a port
    /// matches any port). Without it, a listener on a loopback address
    /// answers only to loopback names (`localhost`, `127.0.0.1`, `[::1]`),
    /// so a web page cannot reach it by rebinding its own DNS name to
    /// 127.0.0.1; a listener on any other address answers to any name.
    pub fn admits_host(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let (name, port) = split_authority(&host);
        let matches = |entry: &str| {
            let (n, p) = split_authority(entry);
            n == name && (p.is_none() || p == port)
        };
        if !self.allowed_hosts.is_empty() {
            return self.allowed_hosts.iter().any(|e| matches(e));
        }
        match self.listen {
            Some(addr) if addr.ip().is_loopback() => ["localhost", "127.0.0.1", "[::1]"]
                .iter()
                .any(|n| matches(n)),
            _ => true,
        }
    }
}

/// `host[:port]` (an IPv6 literal keeps its brackets).
fn split_authority(a: &str) -> (&str, Option<&str>) {
    let colon = match a.rfind(']') {
        Some(end) => a[end..].find(':').map(|i| end + i),
        None => a.rfind(':'),
    };
    match colon {
        Some(i) => (&a[..i], Some(&a[i + 1..])),
        None => (a, None),
    }
}

/// `[audit]`: the management audit trail (see `crate::audit`).
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// `audit.key`; `None`: derived from `tokens.salt`.
    pub key: Option<Secret>,
    pub retention: Duration,
}

impl RawConfig {
    pub(super) fn compile_management(&self) -> Result<ManagementConfig, ConfigError> {
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
            proxies: crate::forward::TrustedProxies {
                proxies: cidrs("management.trusted_proxies", &m.trusted_proxies)?,
                headers: Vec::new(),
            },
            allowed_hosts: m
                .allowed_hosts
                .iter()
                .enumerate()
                .map(
                    |(i, h)| match crate::forward::host::is_authority(h.as_bytes()) {
                        true => Ok(h.to_ascii_lowercase()),
                        false => Err(key_err(
                            format!("management.allowed_hosts[{i}]"),
                            format!("`{h}` is not a host name (with an optional :port)"),
                        )),
                    },
                )
                .collect::<Result<_, _>>()?,
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
}

impl RawConfig {
    pub(super) fn compile_audit(&self) -> Result<AuditConfig, ConfigError> {
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
