//! Redis: what must be shared across replicas.
//!
//! Two uses, both optional (`[redis] url`):
//! * **invalidation fan-out**: replicas relay every invalidation they hear
//!   from Postgres to a Redis channel, the management commands publish
//!   their changes there too, and every replica subscribes. Replicas whose
//!   Postgres connection sits behind a pooler that drops LISTEN (PgBouncer in
//!   transaction mode) still hear about revocations;
//! * **rate-limit counters** shared by all replicas (see [`crate::ratelimit`]).
//!
//! Redis is never on the critical path of correctness: every operation has a
//! short timeout (`redis.timeout`); a failure is logged, counted in
//! `authgate_redis_errors_total`, and the caller carries on (rate limits fail
//! open). After a failure the link rests for a second before trying again,
//! so a dead Redis costs one timeout per second, not one per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;

use crate::metrics::Metrics;

/// Fixed-window counter: increment, set the expiry on first use.
const INCR_WINDOW: &str = r"
local c = redis.call('INCR', KEYS[1])
if c == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return c";

/// The invalidation channel of a schema.
pub fn channel(schema: &str) -> String {
    format!("authgate:invalidate:{schema}")
}

/// A shared, lazily (re)connected Redis connection.
pub struct RedisLink {
    client: redis::Client,
    conn: Mutex<Option<MultiplexedConnection>>,
    timeout: Duration,
    channel: String,
    /// Milliseconds since `started` before which no new attempt is made.
    rest_until: AtomicU64,
    started: Instant,
    metrics: Metrics,
    script: redis::Script,
}

impl RedisLink {
    pub fn new(
        url: &str,
        timeout: Duration,
        channel: String,
        metrics: Metrics,
    ) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: redis::Client::open(url)?,
            conn: Mutex::new(None),
            timeout,
            channel,
            rest_until: AtomicU64::new(0),
            started: Instant::now(),
            metrics,
            script: redis::Script::new(INCR_WINDOW),
        })
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn failed(&self, op: &str, e: &dyn std::fmt::Display) {
        self.metrics.redis_errors.with_label_values(&[op]).inc();
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let first = self
            .rest_until
            .swap(self.now_ms() + 1000, Ordering::Relaxed)
            <= self.now_ms();
        if first {
            tracing::warn!(op, error = %e, "redis unavailable; carrying on without it");
        }
    }

    async fn conn(&self, op: &str) -> Option<MultiplexedConnection> {
        if let Some(c) = self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Some(c);
        }
        if self.now_ms() < self.rest_until.load(Ordering::Relaxed) {
            self.metrics.redis_errors.with_label_values(&[op]).inc();
            return None;
        }
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        match tokio::time::timeout(
            self.timeout * 2,
            self.client
                .get_multiplexed_async_connection_with_config(&cfg),
        )
        .await
        {
            Ok(Ok(c)) => {
                *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
                Some(c)
            }
            Ok(Err(e)) => {
                self.failed(op, &e);
                None
            }
            Err(_) => {
                self.failed(op, &"connect timed out");
                None
            }
        }
    }

    /// Publish an invalidation message. Errors are logged and counted.
    pub async fn publish(&self, payload: &str) {
        let Some(mut c) = self.conn("publish").await else {
            return;
        };
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(&self.channel).arg(payload);
        self.bounded("publish", publish.query_async::<i64>(&mut c))
            .await;
    }

    /// Run one command within `redis.timeout`; a failure or a timeout is
    /// logged and counted under `op` and gives `None`.
    async fn bounded<T>(
        &self,
        op: &str,
        command: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Option<T> {
        match tokio::time::timeout(self.timeout, command).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                self.failed(op, &e);
                None
            }
            Err(_) => {
                self.failed(op, &"timed out");
                None
            }
        }
    }

    /// Count one hit in a fixed window: returns the count so far, or `None`
    /// when Redis is unavailable (the caller fails open).
    pub async fn incr_window(&self, key: &str, window: Duration) -> Option<u64> {
        let mut c = self.conn("ratelimit").await?;
        let ms = window.as_millis().max(1) as u64;
        let mut incr = self.script.key(key);
        incr.arg(ms);
        self.bounded("ratelimit", incr.invoke_async::<u64>(&mut c))
            .await
    }

    /// Read a counter (0 when absent); `None` when Redis is unavailable.
    pub async fn get_count(&self, key: &str) -> Option<u64> {
        let mut c = self.conn("ratelimit").await?;
        let mut get = redis::cmd("GET");
        get.arg(key);
        let count = self.bounded("ratelimit", get.query_async::<Option<u64>>(&mut c));
        Some(count.await?.unwrap_or(0))
    }

    /// Subscribe to the invalidation channel until `shutdown`, handing every
    /// message to `on_message`. Reconnects with backoff.
    pub async fn subscribe<F, Fut>(
        self: Arc<Self>,
        on_message: F,
        shutdown: impl std::future::Future<Output = ()>,
    ) where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        tokio::pin!(shutdown);
        let mut backoff = Duration::from_millis(100);
        let mut first = true;
        loop {
            let reconnect = !std::mem::replace(&mut first, false);
            let on_message = &on_message;
            let session = async {
                let mut pubsub =
                    tokio::time::timeout(self.timeout * 10, self.client.get_async_pubsub())
                        .await
                        .map_err(|_| "connect timed out".to_owned())?
                        .map_err(|e| e.to_string())?;
                pubsub
                    .subscribe(&self.channel)
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(channel = %self.channel, "subscribed to redis invalidations");
                if reconnect {
                    // Messages may have been missed while disconnected.
                    on_message("all".to_owned()).await;
                }
                let mut messages = pubsub.on_message();
                while let Some(msg) = messages.next().await {
                    match msg.get_payload::<String>() {
                        Ok(p) => on_message(p).await,
                        Err(e) => tracing::debug!(error = %e, "unreadable redis message"),
                    }
                }
                Err::<(), String>("subscription closed".into())
            };
            tokio::select! {
                r = session => {
                    if let Err(e) = r {
                        self.metrics.redis_errors.with_label_values(&["subscribe"]).inc();
                        tracing::warn!(error = %e, retry_in = ?backoff, "redis subscription lost");
                    }
                }
                _ = &mut shutdown => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = &mut shutdown => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}
