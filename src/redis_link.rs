//! Redis: what must be shared across replicas.
//!
//! Two uses, both optional (`[redis]`):
//! * **invalidation fan-out**: replicas relay every invalidation they hear
//!   from Postgres to a Redis channel, the management commands publish
//!   their changes there too, and every replica subscribes. Replicas whose
//!   Postgres connection sits behind a pooler that drops LISTEN (PgBouncer in
//!   transaction mode) still hear about revocations;
//! * **rate-limit counters** shared by all replicas (see [`crate::ratelimit`]).
//!
//! Three modes, one section (`config::RedisMode`): one server (`url`,
//! `redis://` or `rediss://`), a Redis Cluster (`cluster`, seed nodes), or
//! the master that Redis Sentinel names (`sentinels` + `sentinel_master`).
//! `target` says how each is reached; the operations below do not care.
//!
//! **In a cluster** every script runs on one key (one slot by
//! construction; no hash tag, so the counters spread over the shards), and
//! the invalidation channel is **sharded** pub/sub (`SPUBLISH` /
//! `SSUBSCRIBE`, Redis 7+, RESP3 on the subscribing connection). Classic
//! `PUBLISH` in a cluster is copied over the cluster bus to every node of
//! every shard, so its cost grows with the cluster while ours stays with the
//! one shard that owns the channel's slot (managed services advise the
//! same: ElastiCache turns classic pub/sub into sharded internally on
//! serverless caches). And a sharded subscription follows the slot: when the
//! slot's master changes, Redis ends the subscription (`SUNSUBSCRIBE`) or
//! the connection closes, so a lost subscription is noticed, never silent.
//!
//! Redis is never on the critical path of correctness: every operation has a
//! short timeout (`redis.timeout`); a failure is logged, counted in
//! `authgate_redis_errors_total`, and the caller carries on (rate limits fail
//! open). After a failure the link drops its connection and rests for
//! [`REST`] before connecting again (so a dead Redis costs one timeout per
//! second, not one per request). Connecting runs in a task of its own,
//! bounded by [`RedisLink::connect_bound`] (not by an operation's timeout:
//! a cluster connects to every node); an operation waits for it at most two
//! timeouts, then fails open while the connect goes on. Each connect asks
//! afresh where the master is (the cluster's slot map, the sentinels), so
//! after a failover the link reaches the new master within `REST` plus one
//! connect of Redis naming it; the subscription within the bound in
//! `subscribe`.

mod subscribe;
mod target;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::RedisConfig;
use crate::metrics::Metrics;

pub use target::LinkError;
use target::{Conn, Target};

/// Fixed-window counter: increment, set the expiry on first use. One key:
/// in a cluster a script's keys must share a slot, and one key always does.
const INCR_WINDOW: &str = r"
local c = redis.call('INCR', KEYS[1])
if c == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return c";

/// How long the link rests after a failure before connecting again.
pub const REST: Duration = Duration::from_secs(1);

/// The invalidation channel of a schema.
pub fn channel(schema: &str) -> String {
    format!("authgate:invalidate:{schema}")
}

/// The connection, and whether a connect is under way.
#[derive(Default)]
struct Slot {
    conn: Option<(u64, Conn)>,
    generation: u64,
    connecting: bool,
}

/// What the link and its connect task share.
struct Shared {
    target: Target,
    timeout: Duration,
    slot: Mutex<Slot>,
    /// Told when a connect ends (either way).
    connected: tokio::sync::watch::Sender<()>,
    /// Milliseconds since `started` before which no new attempt is made.
    rest_until: AtomicU64,
    started: Instant,
    metrics: Metrics,
}

/// A shared, lazily (re)connected Redis link.
pub struct RedisLink {
    shared: Arc<Shared>,
    channel: String,
    script: redis::Script,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn connect_bound(&self) -> Duration {
        (self.timeout * 10).max(Duration::from_secs(1))
    }

    /// Rest after a failure; log the first failure of an outage.
    fn rest(&self, op: &str, e: &dyn std::fmt::Display) {
        let now = self.now_ms();
        let until = now + REST.as_millis() as u64;
        let first = self.rest_until.swap(until, Ordering::Relaxed) <= now;
        if first {
            tracing::warn!(op, error = %e, mode = self.target.mode(), "redis unavailable; carrying on without it");
        }
    }

    /// Connect, then tell whoever waits. Runs in a task of its own.
    async fn connect(self: Arc<Self>) {
        let attempt = tokio::time::timeout(self.connect_bound(), self.target.connect(self.timeout));
        let result = attempt.await;
        {
            let mut slot = self.slot();
            slot.connecting = false;
            match result {
                Ok(Ok(c)) => {
                    slot.generation += 1;
                    slot.conn = Some((slot.generation, c));
                    tracing::info!(mode = self.target.mode(), "connected to redis");
                }
                Ok(Err(e)) => self.rest("connect", &e),
                Err(_) => self.rest("connect", &"connect timed out"),
            }
        }
        self.connected.send_replace(());
    }
}

impl RedisLink {
    pub fn new(cfg: &RedisConfig, channel: String, metrics: Metrics) -> Result<Self, LinkError> {
        Ok(Self {
            shared: Arc::new(Shared {
                target: Target::new(cfg)?,
                timeout: cfg.timeout,
                slot: Mutex::new(Slot::default()),
                connected: tokio::sync::watch::channel(()).0,
                rest_until: AtomicU64::new(0),
                started: Instant::now(),
                metrics,
            }),
            channel,
            script: redis::Script::new(INCR_WINDOW),
        })
    }

    fn target(&self) -> &Target {
        &self.shared.target
    }

    fn channel(&self) -> &str {
        &self.channel
    }

    fn op_timeout(&self) -> Duration {
        self.shared.timeout
    }

    /// How long one connect may take: ten operation timeouts, at least a
    /// second (TLS handshakes, a sentinel lookup, every node of a cluster).
    pub fn connect_bound(&self) -> Duration {
        self.shared.connect_bound()
    }

    fn count_error(&self, op: &str) {
        self.shared
            .metrics
            .redis_errors
            .with_label_values(&[op])
            .inc();
    }

    /// An operation failed on connection `generation`: count it, drop that
    /// connection, rest.
    fn failed(&self, op: &str, generation: u64, e: &dyn std::fmt::Display) {
        self.count_error(op);
        {
            let mut slot = self.shared.slot();
            if slot.conn.as_ref().is_some_and(|(g, _)| *g == generation) {
                slot.conn = None;
            }
        }
        self.shared.rest(op, e);
    }

    /// The connection, or `None` (counted under `op`) when there is none
    /// within `wait`.
    async fn conn_within(&self, op: &str, wait: Duration) -> Option<(u64, Conn)> {
        let mut told = {
            let mut slot = self.shared.slot();
            if let Some(c) = &slot.conn {
                return Some(c.clone());
            }
            if self.shared.now_ms() < self.shared.rest_until.load(Ordering::Relaxed) {
                drop(slot);
                self.count_error(op);
                return None;
            }
            let told = self.shared.connected.subscribe();
            if !slot.connecting {
                slot.connecting = true;
                tokio::spawn(self.shared.clone().connect());
            }
            told
        };
        let _ = tokio::time::timeout(wait, told.changed()).await;
        let c = self.shared.slot().conn.clone();
        if c.is_none() {
            self.count_error(op);
        }
        c
    }

    async fn conn(&self, op: &str) -> Option<(u64, Conn)> {
        self.conn_within(op, self.shared.timeout * 2).await
    }

    /// Connect now, waiting as long as a connect may take (the CLI, which
    /// publishes once and exits). Whether there is a connection.
    pub async fn connect_now(&self) -> bool {
        self.conn_within("publish", self.connect_bound())
            .await
            .is_some()
    }

    /// Publish an invalidation message. Errors are logged and counted.
    pub async fn publish(&self, payload: &str) {
        let Some((generation, mut c)) = self.conn("publish").await else {
            return;
        };
        let mut publish = redis::cmd(self.target().publish_command());
        publish.arg(&self.channel).arg(payload);
        self.bounded("publish", generation, publish.query_async::<i64>(&mut c))
            .await;
    }

    /// Run one command within `redis.timeout`; a failure or a timeout is
    /// logged and counted under `op` and gives `None`.
    async fn bounded<T>(
        &self,
        op: &str,
        generation: u64,
        command: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Option<T> {
        match tokio::time::timeout(self.shared.timeout, command).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                self.failed(op, generation, &e);
                None
            }
            Err(_) => {
                self.failed(op, generation, &"timed out");
                None
            }
        }
    }

    /// Count one hit in a fixed window: returns the count so far, or `None`
    /// when Redis is unavailable (the caller fails open).
    pub async fn incr_window(&self, key: &str, window: Duration) -> Option<u64> {
        let (generation, mut c) = self.conn("ratelimit").await?;
        let ms = window.as_millis().max(1) as u64;
        let mut incr = self.script.key(key);
        incr.arg(ms);
        self.bounded("ratelimit", generation, incr.invoke_async::<u64>(&mut c))
            .await
    }

    /// Read a counter (0 when absent); `None` when Redis is unavailable.
    pub async fn get_count(&self, key: &str) -> Option<u64> {
        let (generation, mut c) = self.conn("ratelimit").await?;
        let mut get = redis::cmd("GET");
        get.arg(key);
        let count = self.bounded(
            "ratelimit",
            generation,
            get.query_async::<Option<u64>>(&mut c),
        );
        Some(count.await?.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key a script touches is `KEYS[1]`: in a cluster, the keys of
    /// one script must hash to one slot, which one key does by itself. A
    /// script on more keys needs a hash tag (`{authgate:<schema>}:...`) on
    /// all of them first.
    #[test]
    fn scripts_touch_one_key() {
        for script in [INCR_WINDOW] {
            let mut rest = script;
            let mut seen = 0;
            while let Some(at) = rest.find("KEYS[") {
                rest = &rest[at + 5..];
                assert!(rest.starts_with("1]"), "a second key in {script}");
                seen += 1;
            }
            assert!(seen > 0, "a script without keys runs on a random node");
        }
    }
}
