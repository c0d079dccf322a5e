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
