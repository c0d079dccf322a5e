//! `[upstream]`: the CMS behind authgate: its URL (scheme and authority
//! only: requests are forwarded with their own path), timeouts, the idle
//! connection pool and the CA to trust for it.

use std::path::PathBuf;
use std::time::Duration;

use super::values::{duration, readable_file};
use super::{key_err, ConfigError, RawConfig};

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub url: http::Uri,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// The longest silence of a response body once its head is in.
    pub body_idle_timeout: Duration,
    pub pool_max_idle: usize,
    pub pool_idle_timeout: Duration,
    pub ca_file: Option<PathBuf>,
}

impl RawConfig {
    pub(super) fn compile_upstream(&self) -> Result<UpstreamConfig, ConfigError> {
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
            body_idle_timeout: duration("upstream.body_idle_timeout", &u.body_idle_timeout)?,
            pool_max_idle: u.pool_max_idle,
            pool_idle_timeout: duration("upstream.pool_idle_timeout", &u.pool_idle_timeout)?,
            ca_file: u.ca_file.clone(),
        })
    }
}
