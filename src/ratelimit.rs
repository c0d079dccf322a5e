//! Rate limits: per token, and per client IP on failed authentications.
//!
//! Algorithm: fixed windows of `rate_limit.window`. A key's counter starts
//! at the first request of a window and resets at its end; a request is
//! refused (429, `Retry-After` = seconds to the window's end) once the
//! counter exceeds the limit. Fixed windows are simple to share (one
//! atomic increment with an expiry) and their known weakness, up to twice
//! the limit across a window boundary, is acceptable for abuse protection.
//!
//! With `[redis]` (any mode) the counters live in Redis, shared by every
//! replica: one atomic Lua script (`INCR`, and `PEXPIRE` on the first hit)
//! per check, on one key named by the window's index (`now / window`), so
//! all replicas count the same window. One key per script is one slot in a
//! cluster by itself; the keys carry no hash tag, so a cluster spreads them
//! over its shards. Redis unavailable: the check fails open (the request is
//! allowed) and `authgate_rate_limit_fail_open_total` counts it. Without
//! Redis the counters live in this process.
//!
//! The failed-authentication guard counts 401s per client IP; when over its
//! limit, that IP's token-bearing requests are refused before any lookup, so
//! a brute-force run cannot reach the database.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::RateLimitConfig;
use crate::metrics::Metrics;
use crate::redis_link::RedisLink;
use crate::trace::{attr, Kind, Span};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Token(i64),
    Ip(IpAddr),
}

struct Window {
    started: Instant,
    count: u64,
}

/// Per-process fixed-window counters.
struct Local {
    windows: Mutex<HashMap<Key, Window>>,
}

impl Local {
    /// Count one hit; return the new count and the time left in the window.
    fn hit(&self, key: Key, window: Duration, now: Instant) -> (u64, Duration) {
        let mut w = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if w.len() > 100_000 {
            w.retain(|_, v| now.duration_since(v.started) < window);
        }
        let e = w.entry(key).or_insert(Window {
            started: now,
            count: 0,
        });
        if now.duration_since(e.started) >= window {
            *e = Window {
                started: now,
                count: 0,
            };
        }
        e.count += 1;
        (
            e.count,
            window.saturating_sub(now.duration_since(e.started)),
        )
    }

    fn peek(&self, key: Key, window: Duration, now: Instant) -> (u64, Duration) {
        let w = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        match w.get(&key) {
            Some(e) if now.duration_since(e.started) < window => (
                e.count,
                window.saturating_sub(now.duration_since(e.started)),
            ),
            _ => (0, Duration::ZERO),
        }
    }
}

/// A Redis call of the limiter, as a CLIENT span under `parent`.
fn redis_span(parent: &Span, operation: &'static str) -> Span {
    let mut span = parent.child(operation, Kind::Client);
    span.set_attr(attr::DB_SYSTEM_NAME, "redis");
    span.set_attr(attr::DB_OPERATION_NAME, operation);
    span
}

/// Mark the span failed when Redis did not answer.
fn span_result(span: &mut Span, n: Option<u64>) -> Option<u64> {
    if n.is_none() {
        span.set_error(
            "redis_unavailable",
            "redis did not answer; the limit failed open",
        );
    }
    n
}

fn retry_secs(left: Duration) -> u64 {
    left.as_secs() + u64::from(left.subsec_nanos() > 0)
}

/// The limiter the proxy consults.
pub struct RateLimiter {
    cfg: RateLimitConfig,
    local: Local,
    redis: Option<(Arc<RedisLink>, String)>,
    metrics: Metrics,
}

/// Index of the current window and the time left in it (aligned on the
/// Unix epoch so every replica agrees).
fn aligned_window(window: Duration) -> (u64, Duration) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let w = window.as_millis().max(1) as u64;
    (now / w, Duration::from_millis(w - now % w))
}

impl RateLimiter {
    /// Limits that are 0 are off; a token's own `rate_limit` applies even
    /// when the default per-token limit is off.
    pub fn new(cfg: &RateLimitConfig, metrics: Metrics) -> Self {
        Self {
            cfg: cfg.clone(),
            local: Local {
                windows: Mutex::new(HashMap::new()),
            },
            redis: None,
            metrics,
        }
    }

    /// Share the counters through Redis; `prefix` separates deployments
    /// (e.g. the Postgres schema).
    pub fn with_redis(mut self, link: Arc<RedisLink>, prefix: &str) -> Self {
        self.redis = Some((link, format!("authgate:rl:{prefix}")));
        self
    }

    /// Count a hit on `key`: the count in this window and the time left, or
    /// `None` when the shared store is unavailable (fail open). A Redis
    /// call is a span under `parent`.
    async fn hit(&self, key: Key, parent: &mut Span) -> Option<(u64, Duration)> {
        match &self.redis {
            None => Some(self.local.hit(key, self.cfg.window, Instant::now())),
            Some((link, prefix)) => {
                let (index, left) = aligned_window(self.cfg.window);
                let k = match key {
                    Key::Token(id) => format!("{prefix}:t:{id}:{index}"),
                    Key::Ip(ip) => format!("{prefix}:ip:{ip}:{index}"),
                };
                let mut span = redis_span(parent, "EVALSHA");
                let n = link.incr_window(&k, self.cfg.window).await;
                self.settle(parent, span_result(&mut span, n), span)
                    .map(|n| (n, left))
            }
        }
    }

    async fn peek(&self, key: Key, parent: &mut Span) -> Option<(u64, Duration)> {
        match &self.redis {
            None => Some(self.local.peek(key, self.cfg.window, Instant::now())),
            Some((link, prefix)) => {
                let (index, left) = aligned_window(self.cfg.window);
                let Key::Ip(ip) = key else { return None };
                let mut span = redis_span(parent, "GET");
                let n = link.get_count(&format!("{prefix}:ip:{ip}:{index}")).await;
                self.settle(parent, span_result(&mut span, n), span)
                    .map(|n| (n, left))
            }
        }
    }

    /// End a Redis call's span; count a failure (the check fails open).
    fn settle(&self, parent: &mut Span, n: Option<u64>, span: Span) -> Option<u64> {
        parent.end_child(span);
        if n.is_none() {
            self.metrics.rate_limit_errors.inc();
        }
        n
    }

    /// Count a request of a token; `Some(retry_after_secs)` when over the
    /// limit. `override_limit` is the token's own `rate_limit` column.
    pub async fn check_token(
        &self,
        token_id: i64,
        override_limit: Option<u32>,
        span: &mut Span,
    ) -> Option<u64> {
        let limit = override_limit.unwrap_or(self.cfg.per_token);
        if limit == 0 {
            return None;
        }
        let (count, left) = self.hit(Key::Token(token_id), span).await?;
        (count > u64::from(limit)).then(|| {
            self.metrics
                .rate_limited
                .with_label_values(&["token"])
                .inc();
            retry_secs(left)
        })
    }

    /// Is this IP over its failed-authentication limit?
    pub async fn ip_blocked(&self, ip: IpAddr, span: &mut Span) -> Option<u64> {
        if self.cfg.failed_auth_per_ip == 0 {
            return None;
        }
        let (count, left) = self.peek(Key::Ip(ip), span).await?;
        (count >= u64::from(self.cfg.failed_auth_per_ip)).then(|| {
            self.metrics.rate_limited.with_label_values(&["ip"]).inc();
            retry_secs(left)
        })
    }

    /// Count a failed authentication from this IP.
    pub async fn note_failed_auth(&self, ip: IpAddr, span: &mut Span) {
        if self.cfg.failed_auth_per_ip > 0 {
            self.hit(Key::Ip(ip), span).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_token: u32, per_ip: u32) -> RateLimiter {
        RateLimiter::new(
            &RateLimitConfig {
                per_token,
                window: Duration::from_millis(200),
                failed_auth_per_ip: per_ip,
            },
            Metrics::new(),
        )
    }

    #[tokio::test]
    async fn token_limit_per_window() {
        let l = limiter(3, 0);
        for _ in 0..3 {
            assert_eq!(l.check_token(1, None, &mut Span::none()).await, None);
        }
        assert_eq!(l.check_token(1, None, &mut Span::none()).await, Some(1));
        assert_eq!(
            l.check_token(2, None, &mut Span::none()).await,
            None,
            "other tokens are separate"
        );
        assert_eq!(
            l.check_token(3, Some(0), &mut Span::none()).await,
            None,
            "an override of 0 means unlimited"
        );
        assert_eq!(l.check_token(4, Some(1), &mut Span::none()).await, None);
        assert!(
            l.check_token(4, Some(1), &mut Span::none()).await.is_some(),
            "a per-token override applies"
        );
        tokio::time::sleep(Duration::from_millis(220)).await;
        assert_eq!(
            l.check_token(1, None, &mut Span::none()).await,
            None,
            "a new window starts"
        );
    }

    #[tokio::test]
    async fn failed_auth_guard() {
        let l = limiter(0, 2);
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(l.ip_blocked(ip, &mut Span::none()).await, None);
        l.note_failed_auth(ip, &mut Span::none()).await;
        assert_eq!(l.ip_blocked(ip, &mut Span::none()).await, None);
        l.note_failed_auth(ip, &mut Span::none()).await;
        assert!(l.ip_blocked(ip, &mut Span::none()).await.is_some());
        assert_eq!(
            l.ip_blocked("10.9.9.9".parse().unwrap(), &mut Span::none())
                .await,
            None
        );
    }
}
