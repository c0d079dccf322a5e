//! `[server]`: the listener clients talk to: address, TLS files, timeouts,
//! the limits on a request head, and who may set forwarding headers.
//!
//! `upstream.host` is checked here too: it is applied by the forwarding
//! room (`crate::forward`), with the `X-Forwarded-*` headers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::values::{cidrs, duration, readable_file, socket_addr};
use super::{key_err, ConfigError, RawConfig};

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub worker_threads: usize,
    pub tls: Option<TlsFiles>,
    pub request_header_timeout: Duration,
    pub idle_timeout: Duration,
    /// A WebSocket tunnel with no byte either way for this long is closed.
    pub tunnel_idle_timeout: Duration,
    pub shutdown_delay: Duration,
    pub shutdown_grace: Duration,
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_uri_bytes: usize,
    pub forwarding: crate::forward::Forwarding,
    /// `server.enforcement`: refuse what authorization denies, or only
    /// report it (reloadable).
    pub enforcement: Enforcement,
}

/// What the gateway does with a request authorization denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforcement {
    /// Refuse it (the default).
    Enforce,
    /// Forward it without identity, as if authgate were not there, and
    /// log and count what it would have answered (day one in front of a
    /// legacy CMS).
    Report,
}

impl Enforcement {
    pub fn as_str(self) -> &'static str {
        match self {
            Enforcement::Enforce => "enforce",
            Enforcement::Report => "report",
        }
    }
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl RawConfig {
    pub(super) fn compile_server(&self) -> Result<ServerConfig, ConfigError> {
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
        let enforcement = match s.enforcement.as_str() {
            "enforce" => Enforcement::Enforce,
            "report" => Enforcement::Report,
            other => {
                return Err(key_err(
                    "server.enforcement",
                    format!("`{other}`: expected \"enforce\" or \"report\""),
                ))
            }
        };
        let trusted = cidrs("server.trusted_proxies", &s.trusted_proxies)?;
        let trusted_headers = trusted_headers(&s.trusted_headers)?;
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
            tunnel_idle_timeout: positive(
                "server.tunnel_idle_timeout",
                duration("server.tunnel_idle_timeout", &s.tunnel_idle_timeout)?,
            )?,
            shutdown_delay: duration("server.shutdown_delay", &s.shutdown_delay)?,
            shutdown_grace: duration("server.shutdown_grace", &s.shutdown_grace)?,
            max_connections: s.max_connections,
            max_header_bytes: s.max_header_bytes,
            max_headers: s.max_headers,
            max_uri_bytes: s.max_uri_bytes,
            forwarding: crate::forward::Forwarding {
                trusted,
                trusted_headers,
                host,
            },
            enforcement,
        })
    }
}

fn positive(key: &str, d: Duration) -> Result<Duration, ConfigError> {
    match d.is_zero() {
        true => Err(key_err(key, "must be greater than 0")),
        false => Ok(d),
    }
}

/// `server.trusted_headers`: overriding headers only (any other passes, or
/// is authgate's to set, whoever sends it).
fn trusted_headers(names: &[String]) -> Result<Vec<http::HeaderName>, ConfigError> {
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let key = format!("server.trusted_headers[{i}]");
        let n = http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
            .map_err(|_| key_err(&key, format!("`{name}` is not a header name")))?;
        if !crate::forward::peer::is_overriding(n.as_str()) {
            return Err(key_err(
                key,
                format!("`{name}` is not a route-, method- or client-overriding header: it is forwarded (or set by authgate) whoever sends it"),
            ));
        }
        out.push(n);
    }
    Ok(out)
}
