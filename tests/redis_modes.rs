//! Redis in every mode authgate speaks (issue 27), on real servers: one
//! server over TLS, a Redis Cluster (TLS, three masters with a replica
//! each), and a master with a replica behind three sentinels (TLS and
//! passwords). One test per topology, so each is started once and its
//! scenarios run in turn:
//!
//! * rate limits shared by two replicas (A and B);
//! * the invalidation relay: B's Postgres listener is cut (it hears
//!   revocations only through Redis), a token deleted in SQL reaches B
//!   through A's relay;
//! * TLS: the wrong CA, or the system roots for a private CA, is refused;
//! * a failover (master killed, replica promoted) under load: cached and
//!   uncached tokens keep working, rate limits fail open (counted), a
//!   revocation still arrives through Postgres LISTEN, and afterwards a
//!   revocation reaches B through Redis again. The times to follow are
//!   measured, printed and written to `target/redis-failover.txt`.

// Test code: a failure here is the test failing, so it may unwrap.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::listen_cut::ListenCut;
use support::redis_servers::{
    Cluster, SentinelSet, TlsRedis, DATA_PASSWORD, SENTINEL_MASTER, SENTINEL_PASSWORD,
};
use support::*;

/// Two in-process replicas on one schema; B's Postgres listener can be cut.
struct Pair {
    env: Env,
    a: Gateway,
    b: Gateway,
    cut: ListenCut,
}

const FAIL_OPEN: &str = "authgate_rate_limit_fail_open_total";
const FROM_REDIS: &str = "authgate_invalidations_total{source=\"redis\"}";
const SUBSCRIBE_ERRORS: &str = "authgate_redis_errors_total{op=\"subscribe\"}";

async fn value(g: &Gateway, series: &str) -> f64 {
    metric(&g.metrics_text().await, series)
}

impl Pair {
    /// A and B with `[redis]` set to `redis`, both subscribed, B's listener
    /// cut.
    async fn start(redis: &str) -> Pair {
        let env = Env::with_config(&format!(
            "[redis]\n{redis}timeout = \"250ms\"\n[rate_limit]\nper_token = 100000\nwindow = \"1h\"\n"
        ))
        .await;
        let a = env.gateway().await;
        let cut = ListenCut::start("127.0.0.1:5432".parse().unwrap()).await;
        let mut cfg = env.config();
        cfg.postgres.url = authgate::config::SecretUrl(
            database_url().replace("127.0.0.1:5432", &cut.addr.to_string()),
        );
        let b = Gateway::start(cfg).await;
        let pair = Pair { env, a, b, cut };
        pair.wait_subscribed().await;
        pair.cut.cut();
        eventually(Duration::from_secs(5), "B's listener cut", || async {
            !pair.b.listener.is_listening()
        })
        .await;
        pair
    }

    /// Publish harmless messages until both replicas hear one from Redis.
    async fn wait_subscribed(&self) {
        let cfg = self.env.config();
        let link = authgate::redis_link::RedisLink::new(
            cfg.redis.as_ref().unwrap(),
            authgate::redis_link::channel(&self.env.schema),
            authgate::metrics::Metrics::new(),
        )
        .unwrap();
        let before = [
            value(&self.a, FROM_REDIS).await,
            value(&self.b, FROM_REDIS).await,
        ];
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            link.connect_now().await;
            link.publish("role:0").await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            if value(&self.a, FROM_REDIS).await > before[0]
                && value(&self.b, FROM_REDIS).await > before[1]
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replicas not subscribed to redis"
            );
        }
    }

    /// `n` tokens made in SQL: (id, key).
    async fn tokens(&self, prefix: &str, n: usize) -> Vec<(i64, String)> {
        let hasher = authgate::token::Hasher::new(SALT);
        let keys: Vec<String> = (0..n)
            .map(|_| authgate::token::generate_key().unwrap())
            .collect();
        let values: Vec<String> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                format!(
                    "('content-api', '{prefix}-{i}', 'read-only', '{}')",
                    hasher.hash_hex(k)
                )
            })
            .collect();
        let rows = sql(
            &self.env.schema,
            &format!(
                "INSERT INTO tokens (kind, name, type, access_key) VALUES {} RETURNING id, access_key",
                values.join(", ")
            ),
        )
        .await;
        keys.into_iter()
            .map(|k| {
                let h = hasher.hash_hex(&k);
                let row = rows.iter().find(|r| r.get::<_, String>(1) == h).unwrap();
                (row.get::<_, i64>(0), k)
            })
            .collect()
    }

    async fn status(g: &Gateway, key: &str) -> u16 {
        get(&g.url("/api/articles"), Some(key)).await.status
    }

    async fn delete(&self, id: i64) {
        exec(
            &self.env.schema,
            &format!("DELETE FROM tokens WHERE id = {id}"),
        )
        .await;
    }

    /// A token with a limit of its own, 5 an hour: 12 requests alternating
    /// between A and B get 5 answers and 7 refusals.
    async fn rate_limits_are_shared(&self) {
        let (id, key) = self.tokens("limited", 1).await.remove(0);
        exec(
            &self.env.schema,
            &format!("UPDATE tokens SET rate_limit = 5 WHERE id = {id}"),
        )
        .await;
        let fail_open = value(&self.a, FAIL_OPEN).await + value(&self.b, FAIL_OPEN).await;
        let mut statuses = Vec::new();
        for i in 0..12 {
            let g = if i % 2 == 0 { &self.a } else { &self.b };
            statuses.push(Self::status(g, &key).await);
        }
        let count = |s: u16| statuses.iter().filter(|x| **x == s).count();
        assert_eq!((count(200), count(429)), (5, 7), "{statuses:?}");
        assert_eq!(
            value(&self.a, FAIL_OPEN).await + value(&self.b, FAIL_OPEN).await,
            fail_open,
            "no check failed open"
        );
    }

    /// A token deleted in SQL: A hears the NOTIFY and relays it; B, whose
    /// listener is cut, refuses the key through Redis alone.
    async fn relay_reaches_b(&self) {
        // Healthy sessions outlive their probes (one a second).
        tokio::time::sleep(Duration::from_millis(2500)).await;
        for g in [&self.a, &self.b] {
            assert_eq!(value(g, SUBSCRIBE_ERRORS).await, 0.0, "a session ended");
        }
        let (id, key) = self.tokens("relayed", 1).await.remove(0);
        for g in [&self.a, &self.b] {
            assert_eq!(Self::status(g, &key).await, 200);
        }
        let heard = value(&self.b, FROM_REDIS).await;
        let t = Instant::now();
        self.delete(id).await;
        self.refused_by_b(&key, Duration::from_secs(2)).await;
        assert!(value(&self.b, FROM_REDIS).await > heard);
        assert!(!self.b.listener.is_listening(), "B's listener stayed cut");
        eprintln!("relay: B refused {:?} after the delete", t.elapsed());
    }

    async fn refused_by_b(&self, key: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let s = Self::status(&self.b, key).await;
            if s == 401 {
                return;
            }
            assert_eq!(s, 200, "B neither accepted nor refused the key");
            assert!(Instant::now() < deadline, "B still accepts a deleted key");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// What a failover cost, measured from the kill.
#[derive(Debug, Default)]
struct Failover {
    promoted: Option<Duration>,
    ops_followed: Option<Duration>,
    subscription_followed: Option<Duration>,
    revocation_via_postgres: Option<Duration>,
    revocation_via_redis_after: Option<Duration>,
    failed_cached: u32,
    failed_uncached: u32,
    requests: u32,
    fail_open: f64,
}

/// How a test watches Redis during a failover (blocking calls, from a
/// thread of their own).
struct Watch<P, S> {
    /// Whether Redis names the new master.
    promoted: P,
    /// How many clients are subscribed to the channel on the new master.
    subscribers: S,
}

/// When a watched condition first held, from a stamp of milliseconds
/// since the kill plus one (0: not yet).
fn first_time(at: &AtomicU64) -> Option<Duration> {
    match at.load(Ordering::SeqCst) {
        0 => None,
        ms => Some(Duration::from_millis(ms - 1)),
    }
}

/// Wait until B hears nothing more from Redis (A relays every insert).
async fn quiet(pair: &Pair) {
    let mut last = value(&pair.b, FROM_REDIS).await;
    let mut still = 0;
    while still < 3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = value(&pair.b, FROM_REDIS).await;
        still = if now == last { still + 1 } else { 0 };
        last = now;
    }
}

/// Kill the master (`kill`), keep A and B under load with a cached token
/// and uncached ones until both follow the new master.
async fn ride_out<P, S>(
    pair: &Pair,
    cached: &str,
    kill: impl FnOnce(),
    watch: Watch<P, S>,
) -> Failover
where
    P: Fn() -> bool + Send + 'static,
    S: Fn() -> usize + Send + 'static,
{
    let mut fresh = pair.tokens("uncached", 500).await.into_iter();
    let (during_id, during) = pair.tokens("during", 1).await.remove(0);
    let (after_id, after) = pair.tokens("after", 1).await.remove(0);
    for g in [&pair.a, &pair.b] {
        for key in [cached, &during, &after] {
            assert_eq!(Pair::status(g, key).await, 200);
        }
    }
    quiet(pair).await;
    let fail_open_before = value(&pair.a, FAIL_OPEN).await + value(&pair.b, FAIL_OPEN).await;
    let mut report = Failover::default();
    let start = Instant::now();
    kill();
    let (promoted_at, subscribed_at) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let watcher = {
        let (p, s) = (promoted_at.clone(), subscribed_at.clone());
        std::thread::spawn(move || {
            let stamp =
                |at: &AtomicU64| at.store(start.elapsed().as_millis() as u64 + 1, Ordering::SeqCst);
            while start.elapsed() < Duration::from_secs(30) {
                if p.load(Ordering::SeqCst) == 0 && (watch.promoted)() {
                    stamp(&p);
                }
                // A and B, on the node that is (or is becoming) master.
                if s.load(Ordering::SeqCst) == 0 && (watch.subscribers)() >= 2 {
                    stamp(&s);
                }
                if p.load(Ordering::SeqCst) > 0 && s.load(Ordering::SeqCst) > 0 {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    // While Redis has no master, revocations still come through LISTEN.
    pair.delete(during_id).await;
    eventually(
        Duration::from_secs(1),
        "a revocation through LISTEN",
        || async { Pair::status(&pair.a, &during).await == 401 },
    )
    .await;
    report.revocation_via_postgres = Some(start.elapsed());
    let mut last_fail_open = value(&pair.a, FAIL_OPEN).await + value(&pair.b, FAIL_OPEN).await;
    while start.elapsed() < Duration::from_secs(20) {
        for g in [&pair.a, &pair.b] {
            report.requests += 2;
            if Pair::status(g, cached).await != 200 {
                report.failed_cached += 1;
            }
            if let Some((_, key)) = fresh.next() {
                if Pair::status(g, &key).await != 200 {
                    report.failed_uncached += 1;
                }
            }
        }
        let fail_open = value(&pair.a, FAIL_OPEN).await + value(&pair.b, FAIL_OPEN).await;
        if report.ops_followed.is_none()
            && last_fail_open > fail_open_before
            && fail_open == last_fail_open
        {
            report.ops_followed = Some(start.elapsed());
        }
        last_fail_open = fail_open;
        if report.ops_followed.is_some() && first_time(&subscribed_at).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    watcher.join().unwrap();
    report.promoted = first_time(&promoted_at);
    report.subscription_followed = first_time(&subscribed_at);
    report.fail_open = last_fail_open - fail_open_before;
    assert!(
        report.ops_followed.is_some(),
        "rate limits never left fail-open: {report:?}"
    );
    assert!(
        report.subscription_followed.is_some(),
        "no resubscription: {report:?}"
    );
    // After the failover a revocation reaches B through Redis again. (Let B
    // apply the `all` that follows its resubscription first.)
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(Pair::status(&pair.b, &after).await, 200);
    let heard = value(&pair.b, FROM_REDIS).await;
    let t = Instant::now();
    pair.delete(after_id).await;
    pair.refused_by_b(&after, Duration::from_secs(2)).await;
    report.revocation_via_redis_after = Some(t.elapsed());
    assert!(value(&pair.b, FROM_REDIS).await > heard);
    report
}

/// Check what the failover cost against the stated bounds, and record it.
fn judge(mode: &str, f: &Failover) {
    let promoted = f.promoted.expect("Redis promoted the replica");
    let line = format!(
        "{mode}: promoted {promoted:?} after the kill; rate limits followed {:?}, subscription {:?} (from promotion: {:?}, {:?}); revocation via LISTEN during it {:?}, via Redis after it {:?}; {} requests, failed: {} cached, {} uncached; {} checks failed open\n",
        f.ops_followed.unwrap(),
        f.subscription_followed.unwrap(),
        f.ops_followed.unwrap().saturating_sub(promoted),
        f.subscription_followed.unwrap().saturating_sub(promoted),
        f.revocation_via_postgres.unwrap(),
        f.revocation_via_redis_after.unwrap(),
        f.requests,
        f.failed_cached,
        f.failed_uncached,
        f.fail_open,
    );
    eprint!("{line}");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/redis-failover.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let kept: String = text
        .lines()
        .filter(|l| !l.starts_with(&format!("{mode}:")))
        .map(|l| format!("{l}\n"))
        .collect();
    let _ = std::fs::write(&path, kept + &line);
    assert_eq!((f.failed_cached, f.failed_uncached), (0, 0), "{line}");
    assert!(f.fail_open >= 1.0, "the outage was counted: {line}");
    // The bound: REST (1 s) plus one connect (at most the connect bound,
    // 2.5 s here, a few ms on loopback) after Redis names the master; the
    // subscription: a pause of at most 1 s plus one connect.
    let bound = promoted + Duration::from_secs(3);
    assert!(f.ops_followed.unwrap() <= bound, "{line}");
    assert!(f.subscription_followed.unwrap() <= bound, "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_over_tls() {
    let redis = TlsRedis::start();
    let section = format!(
        "url = \"{}\"\nca_file = \"{}\"\n",
        redis.url(),
        redis.pki.ca.display()
    );
    let pair = Pair::start(&section).await;
    pair.rate_limits_are_shared().await;
    pair.relay_reaches_b().await;

    // The wrong CA, and the system roots for a private CA: never a
    // connection, whatever the timeout; the checks fail open and count it.
    let cfg = pair.env.config();
    let right = cfg.redis.clone().unwrap();
    let channel = authgate::redis_link::channel(&pair.env.schema);
    let connects = |ca: Option<std::path::PathBuf>| {
        let mut r = right.clone();
        r.ca_file = ca;
        let link = authgate::redis_link::RedisLink::new(
            &r,
            channel.clone(),
            authgate::metrics::Metrics::new(),
        )
        .unwrap();
        async move { link.connect_now().await }
    };
    assert!(connects(Some(redis.pki.ca.clone())).await, "the right CA");
    assert!(
        !connects(Some(redis.pki.other_ca.clone())).await,
        "another CA"
    );
    assert!(!connects(None).await, "the system roots");
    let empty = pair.env.dir.join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let mut r = right.clone();
    r.ca_file = Some(empty);
    let e = authgate::redis_link::RedisLink::new(
        &r,
        channel.clone(),
        authgate::metrics::Metrics::new(),
    )
    .err()
    .expect("an empty CA file is refused at start");
    assert!(e.to_string().contains("no PEM certificate"), "{e}");
    let mut wrong = cfg.clone();
    wrong.redis.as_mut().unwrap().ca_file = Some(redis.pki.other_ca.clone());
    let c = Gateway::start(wrong).await;
    let (_, key) = pair.tokens("wrong-ca", 1).await.remove(0);
    for _ in 0..3 {
        assert_eq!(Pair::status(&c, &key).await, 200, "rate limits fail open");
    }
    assert!(value(&c, FAIL_OPEN).await >= 1.0);
    assert!(value(&c, "authgate_redis_errors_total{op=\"ratelimit\"}").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_over_tls() {
    let cluster = Cluster::start();
    let seeds: Vec<String> = cluster.seeds().iter().map(|s| format!("\"{s}\"")).collect();
    let section = format!(
        "cluster = [{}]\nca_file = \"{}\"\n",
        seeds.join(", "),
        cluster.pki.ca.display()
    );
    let pair = Pair::start(&section).await;
    pair.rate_limits_are_shared().await;
    pair.relay_reaches_b().await;

    // The CLI publishes (SPUBLISH) by itself: with the triggers off, only
    // Redis carries the deletion, to both replicas.
    let (id, key) = pair.tokens("by-cli", 1).await.remove(0);
    for g in [&pair.a, &pair.b] {
        assert_eq!(Pair::status(g, &key).await, 200);
    }
    exec(
        &pair.env.schema,
        "ALTER TABLE tokens DISABLE TRIGGER tokens_notify",
    )
    .await;
    pair.env.ok(&["token", "delete", &id.to_string()]);
    for g in [&pair.a, &pair.b] {
        eventually(Duration::from_secs(2), "the CLI's message", || async {
            Pair::status(g, &key).await == 401
        })
        .await;
    }
    exec(
        &pair.env.schema,
        "ALTER TABLE tokens ENABLE TRIGGER tokens_notify",
    )
    .await;

    // Kill the master of the shard that holds the invalidation channel, with
    // a cached token whose counter lives there too.
    let channel = authgate::redis_link::channel(&pair.env.schema);
    let victim = cluster.master_of(&channel);
    let window = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        / 3_600_000;
    let (_, cached) = pair
        .tokens("cached", 40)
        .await
        .into_iter()
        .find(|(id, _)| {
            cluster.master_of(&format!("authgate:rl:{}:t:{id}:{window}", pair.env.schema)) == victim
        })
        .expect("a token counted on the victim's shard");
    let slot = cluster.slot(&channel);
    let heir = cluster.replica_of(victim);
    let cluster = Arc::new(std::sync::Mutex::new(cluster));
    let (c1, c2) = (cluster.clone(), cluster.clone());
    let report = ride_out(
        &pair,
        &cached,
        || cluster.lock().unwrap().kill(victim),
        Watch {
            promoted: move || {
                let c = c1.lock().unwrap();
                c.master_of_slot(slot) == Some(heir) && c.is_master(heir)
            },
            subscribers: move || c2.lock().unwrap().subscribers(heir, &channel),
        },
    )
    .await;
    judge("cluster", &report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_over_tls_with_passwords() {
    let set = SentinelSet::start();
    let sentinels: Vec<String> = set
        .sentinel_addrs()
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect();
    let section = format!(
        "sentinels = [{}]\nsentinel_master = \"rediss://:{DATA_PASSWORD}@{SENTINEL_MASTER}\"\nsentinel_password = \"{SENTINEL_PASSWORD}\"\nsentinel_tls = true\nca_file = \"{}\"\n",
        sentinels.join(", "),
        set.pki.ca.display()
    );
    let pair = Pair::start(&section).await;
    pair.rate_limits_are_shared().await;
    pair.relay_reaches_b().await;

    let (_, cached) = pair.tokens("cached", 1).await.remove(0);
    let replica = set.replica.port;
    let channel = authgate::redis_link::channel(&pair.env.schema);
    let set = Arc::new(std::sync::Mutex::new(set));
    let (s1, s2) = (set.clone(), set.clone());
    let report = ride_out(
        &pair,
        &cached,
        || set.lock().unwrap().master.kill(),
        Watch {
            promoted: move || s1.lock().unwrap().named_master() == Some(replica),
            subscribers: move || {
                let s = s2.lock().unwrap();
                s.replica.subscribers(Some(&s.pki.ca), &channel, false)
            },
        },
    )
    .await;
    judge("sentinel", &report);
}
