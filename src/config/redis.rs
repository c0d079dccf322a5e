//! `[redis]`: the optional Redis that carries invalidations between
//! replicas and shares the rate-limit counters. Unset: each replica is on
//! its own.

use std::time::Duration;

use super::secret::SecretUrl;
use super::values::duration;
use super::{key_err, ConfigError, RawConfig};

#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: SecretUrl,
    /// Bound on every Redis operation; beyond it the caller carries on.
    pub timeout: Duration,
}

impl RawConfig {
    pub(super) fn compile_redis(&self) -> Result<Option<RedisConfig>, ConfigError> {
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
}
