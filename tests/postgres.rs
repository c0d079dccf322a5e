//! Postgres as production runs it (issue 27): a primary with a streaming
//! standby and a failover between them; PgBouncer in transaction mode in
//! front of the database, with `postgres.listen_url` direct.
//!
//! The standby pair is made once, in the one test that needs it, which
//! takes it through its phases in order (a standby is never used, then the
//! failover): a failover consumes the pair.

// Set-up and checks: a failure is the test failing.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use support::pg::StandbyPair;
use support::*;

/// Every status a loop of requests got, with when.
type Seen = Arc<Mutex<Vec<(Instant, u16)>>>;

/// `n` content-API tokens inserted in one statement; their keys.
async fn insert_tokens(db: &str, schema: &str, n: usize) -> Vec<String> {
    let hasher = authgate::token::Hasher::new(SALT);
    let keys: Vec<String> = (0..n)
        .map(|_| authgate::token::generate_key().unwrap())
        .collect();
    let rows: Vec<String> = keys
        .iter()
        .map(|k| {
            format!(
                "('content-api', 'bulk-{}', 'read-only', '{}')",
                &hasher.hash_hex(k)[..16],
                hasher.hash_hex(k)
            )
        })
        .collect();
    exec_on(
        db,
        schema,
        &format!(
            "INSERT INTO tokens (kind, name, type, access_key) VALUES {}",
            rows.join(",")
        ),
    )
    .await;
    keys
}

/// Send `keys` in turn to `url` until `stop`, noting each status.
fn hammer(url: String, keys: Vec<String>, every: Duration, stop: Arc<AtomicBool>) -> Seen {
    let seen: Seen = Arc::default();
    let out = seen.clone();
    tokio::spawn(async move {
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            let status = get(&url, Some(&keys[i % keys.len()])).await.status;
            out.lock().unwrap().push((Instant::now(), status));
            i += 1;
            tokio::time::sleep(every).await;
        }
    });
    seen
}

/// When a listener, up now, is next trusted again after going down.
async fn reattached(status: authgate::invalidation::ListenerStatus) -> Instant {
    while status.is_listening() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    while !status.is_listening() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Instant::now()
}

/// `last_used_at` of token `id` on the database at `db`, as Unix ms.
async fn last_used_ms(db: &str, schema: &str, id: i64) -> Option<i64> {
    let (c, conn) = tokio_postgres::connect(db, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    c.query_one(
        &format!(
            "SELECT (extract(epoch FROM last_used_at) * 1000)::bigint FROM {schema}.tokens WHERE id = $1"
        ),
        &[&id],
    )
    .await
    .unwrap()
    .get(0)
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Phase 1: with the standby listed first in a URL that does not ask for
/// a writable server, and `listen_url` naming the standby alone, the pool
/// still reads and writes on the primary, and the listener never listens
/// on the standby.
async fn a_standby_is_never_used(pair: &StandbyPair, env: &Env) {
    let (id, key) = env.content_token("phase-1", "read-only", &[]);
    let mut cfg = env.config();
    cfg.postgres.url = authgate::config::SecretUrl(format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres",
        pair.standby.port, pair.primary.port
    ));
    cfg.postgres.listen_url = Some(authgate::config::SecretUrl(pair.standby.url()));
    let g = Gateway::start_unready(cfg).await;
    let before = unix_ms(SystemTime::now());
    assert_eq!(get(&g.url("/api/articles"), Some(&key)).await.status, 200);
    eventually(
        Duration::from_secs(5),
        "last_used_at written on the primary",
        || async {
            last_used_ms(&pair.primary.url(), &env.schema, id)
                .await
                .is_some_and(|t| t >= before - 1000)
        },
    )
    .await;
    assert!(
        !g.listener.is_listening(),
        "the listener listens on a standby"
    );
    let text = g.metrics_text().await;
    assert_eq!(metric(&text, "authgate_invalidation_listener_up"), 0.0);
    g.stop().await;
}

/// What one failover did to a replica's traffic.
struct Switch {
    cached_failed: usize,
    cached_sent: usize,
    uncached_503: usize,
    /// From the promotion to the first 200 for a never-cached token.
    uncached_follow: Duration,
}

/// Check a replica's statuses over the failover: cached keys always 200;
/// the uncached key 503 until it first works, 200 after.
fn judge(cached: &Seen, uncached: &Seen, promoted: Instant, who: &str) -> Switch {
    let cached = cached.lock().unwrap();
    let failed: Vec<_> = cached.iter().filter(|(_, s)| *s != 200).collect();
    let uncached = uncached.lock().unwrap();
    let first_ok = uncached
        .iter()
        .position(|(_, s)| *s == 200)
        .unwrap_or_else(|| panic!("{who}: the uncached token never worked: {uncached:?}"));
    for (i, (_, s)) in uncached.iter().enumerate() {
        let want: &[u16] = if i < first_ok { &[503] } else { &[200] };
        assert!(
            want.contains(s),
            "{who}: uncached request {i} got {s} (first 200 at {first_ok})"
        );
    }
    Switch {
        cached_failed: failed.len(),
        cached_sent: cached.len(),
        uncached_503: first_ok,
        uncached_follow: uncached[first_ok].0.saturating_duration_since(promoted),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_is_never_used_and_a_failover_is_followed() {
    let pair = StandbyPair::start().await;
    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
        pair.primary.port, pair.standby.port
    );
    let env = Env::on(&url, "", "").await;
    a_standby_is_never_used(&pair, &env).await;

    // Phase 2: the failover, under load on two replicas.
    let cached: Vec<(i64, String)> = (0..4)
        .map(|i| env.content_token(&format!("cached-{i}"), "read-only", &[]))
        .collect();
    // Never sent before the crash: each request of the probe takes the next.
    let uncached = [
        insert_tokens(&url, &env.schema, 300).await,
        insert_tokens(&url, &env.schema, 300).await,
    ];
    let (revoked_id, revoked) = env.content_token("revoked", "read-only", &[]);
    let replicas = [env.gateway().await, env.gateway().await];
    let keys: Vec<String> = cached.iter().map(|(_, k)| k.clone()).collect();
    for g in &replicas {
        for k in keys.iter().chain([&revoked]) {
            assert_eq!(get(&g.url("/api/articles"), Some(k)).await.status, 200);
        }
    }
    pair.wait_replayed().await;
    let stop = Arc::new(AtomicBool::new(false));
    let cached_seen: Vec<Seen> = replicas
        .iter()
        .map(|g| {
            let every = Duration::from_millis(5);
            hammer(g.url("/api/articles"), keys.clone(), every, stop.clone())
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let crashed_at = SystemTime::now();
    let crashed = Instant::now();

    let reattached: Vec<_> = replicas
        .iter()
        .map(|g| tokio::spawn(reattached(g.listener.clone())))
        .collect();
    tokio::task::block_in_place(|| pair.primary.kill());
    let uncached_seen: Vec<Seen> = replicas
        .iter()
        .zip(uncached)
        .map(|(g, u)| {
            hammer(
                g.url("/api/articles"),
                u,
                Duration::from_millis(10),
                stop.clone(),
            )
        })
        .collect();
    // As a failover manager would: notice, then promote.
    tokio::time::sleep(Duration::from_millis(500)).await;
    pair.standby.promote().await;
    let promoted = Instant::now();

    // A revocation made on the new primary reaches both replicas.
    tokio::task::block_in_place(|| env.ok(&["token", "delete", &revoked_id.to_string()]));
    let deleted = Instant::now();
    let mut refused = Vec::new();
    for g in &replicas {
        loop {
            let status = get(&g.url("/api/articles"), Some(&revoked)).await.status;
            if status == 401 {
                refused.push(deleted.elapsed());
                break;
            }
            assert_eq!(status, 200, "the revoked key: neither served nor refused");
            assert!(
                deleted.elapsed() < Duration::from_secs(1),
                "a revocation after the promotion took over 1 s to reach {}",
                g.addr
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let mut listening_again = Vec::new();
    for r in reattached {
        listening_again.push(r.await.unwrap().saturating_duration_since(promoted));
    }
    // A token made on the new primary works on both.
    let (_, fresh) =
        tokio::task::block_in_place(|| env.content_token("after-promotion", "read-only", &[]));
    for g in &replicas {
        assert_eq!(get(&g.url("/api/articles"), Some(&fresh)).await.status, 200);
    }
    // The uses noted during the outage are written to the new primary.
    eventually(
        Duration::from_secs(5),
        "last_used_at of a use during the outage, on the new primary",
        || async {
            last_used_ms(&pair.standby.url(), &env.schema, cached[0].0)
                .await
                .is_some_and(|t| t >= unix_ms(crashed_at))
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(50)).await;

    let mut report = format!(
        "primary killed, standby promoted {:?} later (pg_ctl promote took {:?})\n",
        promoted - crashed,
        promoted - crashed - Duration::from_millis(500)
    );
    for (i, (cached_seen, uncached_seen)) in cached_seen.iter().zip(&uncached_seen).enumerate() {
        let s = judge(
            cached_seen,
            uncached_seen,
            promoted,
            &format!("replica {}", i + 1),
        );
        report.push_str(&format!(
            "replica {}: cached tokens {} failed of {} sent; uncached token 503 x{}, first 200 {:?} after the promotion; revocation after the promotion refused {:?} after the CLI returned\n",
            i + 1,
            s.cached_failed,
            s.cached_sent,
            s.uncached_503,
            s.uncached_follow,
            refused[i],
        ));
        assert_eq!(s.cached_failed, 0, "{report}");
        assert!(s.uncached_follow < Duration::from_secs(3), "{report}");
    }
    report.push_str(&format!(
        "listeners re-attached {listening_again:?} after the promotion\n"
    ));
    eprint!("{report}");
    let _ = std::fs::write(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/failover.txt"),
        &report,
    );
}

/// A gateway's `/readyz`: status and body.
async fn readyz(g: &Gateway) -> (u16, String) {
    let r = get(&format!("http://{}/readyz", g.metrics), None).await;
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

/// Everything through PgBouncer 1.18 in transaction mode (`url`), LISTEN
/// on a direct connection (`listen_url`): tokens made and revoked by the
/// CLI through the pooler, lookups, `last_used_at` and a burst of misses on
/// the pooler's few server connections, a revocation reaching two
/// replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authgate_works_through_pgbouncer_with_listen_url_direct() {
    let bouncer = support::pg::Bouncer::start();
    let env = Env::on(&bouncer.url(), "pooler = \"transaction\"", "").await;
    let (id, key) = env.content_token("pooled", "read-only", &[]);
    let config = || {
        let mut cfg = env.config();
        cfg.postgres.listen_url = Some(authgate::config::SecretUrl(database_url()));
        cfg
    };
    let replicas = [
        Gateway::start(config()).await,
        Gateway::start(config()).await,
    ];
    for g in &replicas {
        g.accepts_as("/api/articles", &key, id).await;
        assert_eq!(readyz(g).await, (200, "ready\n".to_owned()));
    }
    let used_from = unix_ms(SystemTime::now()) - 1000;
    eventually(
        Duration::from_secs(5),
        "last_used_at written through the pooler",
        || async {
            last_used_ms(&database_url(), &env.schema, id)
                .await
                .is_some_and(|t| t >= used_from)
        },
    )
    .await;
    // Misses in parallel, more than the pooler has server connections.
    let keys = insert_tokens(&database_url(), &env.schema, 200).await;
    let mut burst = tokio::task::JoinSet::new();
    for chunk in keys.chunks(10) {
        let (url, chunk) = (replicas[0].url("/api/articles"), chunk.to_vec());
        burst.spawn(async move {
            for k in chunk {
                assert_eq!(get(&url, Some(&k)).await.status, 200);
            }
        });
    }
    while let Some(r) = burst.join_next().await {
        r.expect("a miss through the pooler");
    }
    // A revocation through the pooler reaches both replicas.
    tokio::task::block_in_place(|| env.ok(&["token", "delete", &id.to_string()]));
    let deleted = Instant::now();
    for g in &replicas {
        eventually(Duration::from_secs(1), "revocation reached", || async {
            get(&g.url("/api/articles"), Some(&key)).await.status == 401
        })
        .await;
    }
    eprintln!(
        "through pgbouncer: revocation refused by both replicas {:?} after the CLI returned",
        deleted.elapsed()
    );
    let log = bouncer.log();
    assert!(!log.contains("unsupported startup parameter"), "{log}");
}

/// LISTEN through the pooler succeeds and never delivers: the self-test
/// catches it, `/readyz` says why with 503, the failures are counted, and
/// the binary says once what to set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_self_test_fails_when_the_listener_goes_through_pgbouncer() {
    let bouncer = support::pg::Bouncer::start();
    let env = Env::new().await;
    let (_, key) = env.content_token("t", "read-only", &[]);
    let mut cfg = env.config();
    cfg.postgres.url = authgate::config::SecretUrl(bouncer.url());
    cfg.postgres.pooled = true;
    cfg.postgres.connect_timeout = Duration::from_millis(500);
    let g = Gateway::start_unready(cfg).await;
    eventually(Duration::from_secs(5), "readyz 503", || async {
        readyz(&g).await.0 == 503
    })
    .await;
    let (_, body) = readyz(&g).await;
    assert!(
        body.starts_with("invalidations undelivered: a NOTIFY sent through postgres.url"),
        "{body}"
    );
    assert!(!g.listener.is_listening());
    // Lookups work meanwhile: only the invalidations are in doubt.
    assert_eq!(get(&g.url("/api/articles"), Some(&key)).await.status, 200);
    eventually(
        Duration::from_secs(5),
        "a second failed self-test",
        || async {
            metric(
                &g.metrics_text().await,
                "authgate_listener_selftest_failures_total",
            ) >= 2.0
        },
    )
    .await;
    g.stop().await;

    // The binary: one line says what to set, however often it fails.
    let url = bouncer.url();
    let mut child = authgate_command()
        .arg("--config")
        .arg(&env.config_path)
        .arg("serve")
        .env("AUTHGATE_POSTGRES_URL", &url)
        .env("AUTHGATE_POSTGRES_POOLER", "transaction")
        .env("AUTHGATE_POSTGRES_CONNECT_TIMEOUT", "300ms")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            sink.lock().unwrap().push(l);
        }
    });
    let advice = |lines: &[String]| {
        lines
            .iter()
            .filter(|l| l.contains("set postgres.listen_url to a direct connection"))
            .count()
    };
    eventually(Duration::from_secs(10), "the advice", || async {
        advice(&lines.lock().unwrap()) > 0
    })
    .await;
    // Two more self-tests' time: still one line.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let _ = child.kill();
    let _ = child.wait();
    let lines = lines.lock().unwrap();
    assert_eq!(advice(&lines), 1, "{lines:#?}");
}
