//! What happens to a presented token, section by section: `[tokens]` (the
//! salt its hash is made with, the key of its viewable copy, how often its
//! use is recorded), `[cache]` (how long a look-up is kept) and
//! `[rate_limit]` (how often it, and a failing client, may ask).

use std::time::Duration;

use super::postgres::Layout;
use super::secret::Secret;
use super::values::duration;
use super::{key_err, ConfigError, RawConfig};

#[derive(Debug, Clone)]
pub struct TokensConfig {
    pub salt: Secret,
    pub encryption_key: Option<Secret>,
    pub last_used_interval: Duration,
    /// How often the `authgate_tokens*` gauges are recounted from the store.
    pub stats_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub capacity: u64,
    pub ttl: Duration,
    pub negative_ttl: Duration,
    pub stale_if_error: Duration,
}

#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    pub per_token: u32,
    pub window: Duration,
    pub failed_auth_per_ip: u32,
}

impl RawConfig {
    pub(super) fn compile_tokens(&self) -> Result<TokensConfig, ConfigError> {
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
}

impl RawConfig {
    /// `cache.ttl` defaults by layout (see [`Layout::default_cache_ttl`]).
    pub(super) fn compile_cache(&self, layout: Layout) -> Result<CacheConfig, ConfigError> {
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
}

impl RawConfig {
    pub(super) fn compile_rate_limit(&self) -> Result<RateLimitConfig, ConfigError> {
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
}
