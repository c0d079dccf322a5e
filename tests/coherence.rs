//! Cache coherence across replicas, outages, Redis and rate limits (issue 4).

mod support;

use std::time::{Duration, Instant};

use support::*;

/// Poll every replica until `key` is refused on `path` with `refusal` (401
/// for a dead key, 403 for a lost permission); returns when each first
/// refused it. Any other answer than 200 or `refusal` (a 502 from a broken
/// upstream, a 503 from a broken store) fails the test: it is not a
/// revocation.
async fn first_refusals(
    replicas: &[&Replica],
    path: &str,
    key: &str,
    refusal: u16,
    limit: Duration,
) -> Vec<Instant> {
    let mut out = Vec::new();
    for r in replicas {
        let deadline = Instant::now() + limit;
        loop {
            let status = get(&r.url(path), Some(key)).await.status;
            if status == refusal {
                out.push(Instant::now());
                break;
            }
            assert_eq!(
                status, 200,
                "replica {}: neither accepted nor refused with {refusal}",
                r.addr
            );
            assert!(
                Instant::now() < deadline,
                "replica {} still accepts the key after {limit:?}",
                r.addr
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    out
}

/// One revocation: what it is, the CLI command that makes it, a path the
/// key works on before it, the key, and the refusal after it.
struct Revocation {
    what: &'static str,
    args: Vec<String>,
    path: &'static str,
    key: String,
    refusal: u16,
}

/// Tokens to revoke in every way the CLI can (deleted, regenerated, owner
/// deactivated, a role's permission revoked), each with the command.
fn revocations(env: &Env) -> Vec<Revocation> {
    const READ: &str = "plugin::content-manager.explorer.read@api::article.article";
    env.ok(&["role", "create", "editor"]);
    env.ok(&["role", "grant", "editor", READ]);
    for email in ["ed@example.com", "al@example.com"] {
        env.ok(&["user", "create", "--email", email, "--role", "editor"]);
    }
    let (del_id, del_key) = env.content_token("to-delete", "read-only", &[]);
    let (regen_id, regen_key) = env.content_token("to-regenerate", "read-only", &[]);
    let (_, owner_key) = env.admin_token("owner-off", "ed@example.com", &[]);
    let (_, role_key) = env.admin_token("role-loses", "al@example.com", &[READ]);
    let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect();
    vec![
        Revocation {
            what: "token deleted",
            args: args(&["token", "delete", &del_id.to_string()]),
            path: "/api/articles",
            key: del_key,
            refusal: 401,
        },
        Revocation {
            what: "token regenerated",
            args: args(&["token", "regenerate", &regen_id.to_string()]),
            path: "/api/articles",
            key: regen_key,
            refusal: 401,
        },
        Revocation {
            what: "owner deactivated",
            args: args(&["user", "deactivate", "ed@example.com"]),
            path: "/admin/users/me",
            key: owner_key,
            refusal: 401,
        },
        Revocation {
            what: "role permission revoked",
            args: args(&["role", "revoke", "editor", READ]),
            path: "/content-manager/collection-types/api::article.article",
            key: role_key,
            refusal: 403,
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_through_the_cli_reach_both_replicas() {
    let env = Env::new().await;
    let scenarios = revocations(&env);
    let r1 = Replica::start(&env.config_path, &[]);
    let r2 = Replica::start(&env.config_path, &[]);
    for Revocation {
        what,
        args,
        path,
        key,
        refusal,
    } in &scenarios
    {
        for r in [&r1, &r2] {
            assert_eq!(
                get(&r.url(path), Some(key)).await.status,
                200,
                "{what}: warm on {}",
                r.addr
            );
        }
        let args: Vec<String> = args.clone();
        let started = Instant::now();
        let cfg = env.config_path.clone();
        let cli = tokio::task::spawn_blocking(move || {
            let out = authgate_command()
                .arg("--config")
                .arg(cfg)
                .args(&args)
                .output()
                .expect("cli");
            (out, Instant::now())
        });
        let refused =
            first_refusals(&[&r1, &r2], path, key, *refusal, Duration::from_secs(3)).await;
        let (out, exited) = cli.await.unwrap();
        assert!(out.status.success(), "{what}: {}", stderr(&out));
        for t in &refused {
            let since_start = t.duration_since(started);
            assert!(
                since_start < Duration::from_secs(1),
                "{what}: took {since_start:?} from the CLI's start"
            );
            eprintln!(
                "{what}: refused {:?} after the CLI exited",
                t.saturating_duration_since(exited)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_latency_over_100_tokens() {
    let env = Env::new().await;
    let r1 = Replica::start(&env.config_path, &[]);
    let r2 = Replica::start(&env.config_path, &[]);
    let hasher = authgate::token::Hasher::new(SALT);
    let mut keys = Vec::new();
    for i in 0..100 {
        let key = authgate::token::generate_key().unwrap();
        exec(
            &env.schema,
            &format!(
                "INSERT INTO tokens (kind, name, type, access_key) VALUES ('content-api', 'bulk-{i}', 'read-only', '{}')",
                hasher.hash_hex(&key)
            ),
        )
        .await;
        keys.push(key);
    }
    let (client, conn) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!("SET search_path = {}", env.schema))
        .await
        .unwrap();
    let mut lat: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for key in &keys {
        for r in [&r1, &r2] {
            assert_eq!(get(&r.url("/api/articles"), Some(key)).await.status, 200);
        }
        let hash = hasher.hash_hex(key);
        client
            .execute("DELETE FROM tokens WHERE access_key = $1", &[&hash])
            .await
            .unwrap();
        let committed = Instant::now();
        // Poll both replicas in parallel.
        let (one, two) = ([&r1], [&r2]);
        let (a, b) = tokio::join!(
            first_refusals(&one, "/api/articles", key, 401, Duration::from_secs(1)),
            first_refusals(&two, "/api/articles", key, 401, Duration::from_secs(1)),
        );
        lat[0].push(a[0].saturating_duration_since(committed));
        lat[1].push(b[0].saturating_duration_since(committed));
    }
    let mut report = String::new();
    for (i, l) in lat.iter_mut().enumerate() {
        l.sort();
        let p50 = l[49];
        let p99 = l[98];
        report.push_str(&format!(
            "replica {}: p50 {:?} p99 {:?} max {:?}\n",
            i + 1,
            p50,
            p99,
            l[99]
        ));
        assert!(l[99] < Duration::from_secs(1));
    }
    eprint!("revocation latency over 100 deletions (commit -> first 401):\n{report}");
    let _ = std::fs::write(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/revocation-latency.txt"),
        &report,
    );
}

#[tokio::test]
async fn postgres_outage_serves_cached_tokens_and_recovers() {
    let env = Env::new().await;
    let (_, cached) = env.content_token("cached", "read-only", &[]);
    let (_, uncached_1) = env.content_token("uncached-1", "read-only", &[]);
    let (_, uncached_2) = env.content_token("uncached-2", "read-only", &[]);
    let pg: std::net::SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let proxy = CutProxy::start(pg).await;
    let mut cfg = env.config();
    let url = database_url().replace("127.0.0.1:5432", &proxy.addr.to_string());
    cfg.postgres.url = authgate::config::SecretUrl(url);
    cfg.postgres.connect_timeout = Duration::from_millis(500);
    cfg.postgres.query_timeout = Duration::from_millis(500);
    cfg.cache.ttl = Duration::from_millis(300);
    cfg.cache.stale_if_error = Duration::from_secs(30);
    let g = Gateway::start(cfg).await;
    assert_eq!(
        get(&g.url("/api/articles"), Some(&cached)).await.status,
        200
    );
    assert_eq!(
        get(&format!("http://{}/readyz", g.metrics), None)
            .await
            .status,
        200
    );

    for (mode, uncached) in [
        (ProxyMode::Blackhole, &uncached_1),
        (ProxyMode::Refuse, &uncached_2),
    ] {
        proxy.set(mode);
        tokio::time::sleep(Duration::from_millis(400)).await; // past the TTL
        let r = get(&g.url("/api/articles"), Some(&cached)).await;
        assert_eq!(
            r.status, 200,
            "{mode:?}: a cached token keeps working past its TTL"
        );
        let t = Instant::now();
        let r = get(&g.url("/api/articles"), Some(uncached)).await;
        assert_eq!(r.status, 503, "{mode:?}");
        assert_eq!(
            r.json(),
            envelope(
                503,
                "ServiceUnavailableError",
                "Authentication temporarily unavailable"
            )
        );
        assert!(
            t.elapsed() < Duration::from_millis(1500),
            "{mode:?}: 503 took {:?}",
            t.elapsed()
        );
        // While the database is known down, misses fail fast.
        let t = Instant::now();
        assert_eq!(
            get(&g.url("/api/articles"), Some(uncached)).await.status,
            503
        );
        assert!(
            t.elapsed() < Duration::from_millis(200),
            "{mode:?}: second miss took {:?}",
            t.elapsed()
        );
        assert_eq!(
            get(&format!("http://{}/readyz", g.metrics), None)
                .await
                .status,
            503
        );
        proxy.set(ProxyMode::Pass);
        eventually(
            Duration::from_secs(5),
            "recovery without restart",
            || async { get(&g.url("/api/articles"), Some(uncached)).await.status == 200 },
        )
        .await;
    }
    let metrics = get(&format!("http://{}/metrics", g.metrics), None).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(text.contains("authgate_cache_stale_served_total"), "{text}");
    assert!(!text.contains("authgate_cache_stale_served_total 0\n"));
}

#[tokio::test]
async fn redis_down_keeps_serving_and_rate_limits_fail_open() {
    let mut redis = TestRedis::start();
    let env = Env::with_config(&format!(
        "[redis]\nurl = \"{}\"\ntimeout = \"100ms\"\n[rate_limit]\nper_token = 1000\nwindow = \"1h\"\nfailed_auth_per_ip = 1000\n",
        redis.url()
    ))
    .await;
    let (_, key) = env.content_token("t", "read-only", &[]);
    let g = env.gateway().await;
    assert_eq!(get(&g.url("/api/articles"), Some(&key)).await.status, 200);
    redis.stop();
    for _ in 0..5 {
        let t = Instant::now();
        assert_eq!(get(&g.url("/api/articles"), Some(&key)).await.status, 200);
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "request took {:?} with redis down",
            t.elapsed()
        );
    }
    let text = String::from_utf8_lossy(
        &get(&format!("http://{}/metrics", g.metrics), None)
            .await
            .body,
    )
    .into_owned();
    let fail_open = text
        .lines()
        .find(|l| l.starts_with("authgate_rate_limit_fail_open_total "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(fail_open >= 1.0, "fail-open counted: {text}");
    assert!(text.contains("authgate_redis_errors_total{op=\"ratelimit\"}"));
}

#[tokio::test]
async fn rate_limit_is_shared_by_replicas() {
    let redis = TestRedis::start();
    let env = Env::with_config(&format!(
        "[redis]\nurl = \"{}\"\n[rate_limit]\nper_token = 5\nwindow = \"1h\"\n",
        redis.url()
    ))
    .await;
    let (id, key) = env.content_token("t", "read-only", &[]);
    let (_, other) = env.content_token("other", "read-only", &[]);
    let a = env.gateway().await;
    let b = env.gateway().await;
    let mut statuses = Vec::new();
    for i in 0..12 {
        let g = if i % 2 == 0 { &a } else { &b };
        let r = get(&g.url("/api/articles"), Some(&key)).await;
        if r.status == 429 {
            assert_eq!(
                r.json(),
                envelope(429, "RateLimitError", "Too many requests")
            );
            let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=3600).contains(&retry));
        }
        statuses.push(r.status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        7,
        "{statuses:?}"
    );
    assert_eq!(
        get(&a.url("/api/articles"), Some(&other)).await.status,
        200,
        "limits are per token"
    );
    // A per-token override column raises the limit for that token only.
    exec(
        &env.schema,
        &format!("UPDATE tokens SET rate_limit = 100 WHERE id = {id}"),
    )
    .await;
    eventually(Duration::from_secs(2), "override applies", || async {
        get(&a.url("/api/articles"), Some(&key)).await.status == 200
    })
    .await;
}

#[tokio::test]
async fn failed_authentications_per_ip_are_limited() {
    let env = Env::with_config("[rate_limit]\nfailed_auth_per_ip = 3\nwindow = \"1h\"\n").await;
    let (_, key) = env.content_token("t", "read-only", &[]);
    let g = env.gateway().await;
    for _ in 0..3 {
        assert_eq!(
            get(&g.url("/api/articles"), Some(&"f".repeat(256)))
                .await
                .status,
            401
        );
    }
    let r = get(&g.url("/api/articles"), Some(&key)).await;
    assert_eq!(r.status, 429, "this IP is now refused before any lookup");
    assert!(r.headers.contains_key("retry-after"));
    assert_eq!(
        get(&g.url("/api/articles"), None).await.status,
        200,
        "anonymous requests are not limited"
    );
}

#[tokio::test]
async fn redis_carries_invalidations_when_postgres_notify_is_missed() {
    let redis = TestRedis::start();
    let env = Env::with_config(&format!("[redis]\nurl = \"{}\"\n", redis.url())).await;
    let (id, key) = env.content_token("t", "read-only", &[]);
    let g = env.gateway().await;
    eventually(Duration::from_secs(5), "redis subscription", || async {
        let text = String::from_utf8_lossy(
            &get(&format!("http://{}/metrics", g.metrics), None)
                .await
                .body,
        )
        .into_owned();
        !text.contains("authgate_redis_errors_total{op=\"subscribe\"}")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(&g.url("/api/articles"), Some(&key)).await.status, 200);
    // As if this replica's Postgres connection could not LISTEN: no NOTIFY.
    exec(
        &env.schema,
        "ALTER TABLE tokens DISABLE TRIGGER tokens_notify",
    )
    .await;
    env.ok(&["token", "delete", &id.to_string()]);
    eventually(Duration::from_secs(2), "revocation via redis", || async {
        get(&g.url("/api/articles"), Some(&key)).await.status == 401
    })
    .await;
    let text = String::from_utf8_lossy(
        &get(&format!("http://{}/metrics", g.metrics), None)
            .await
            .body,
    )
    .into_owned();
    assert!(
        text.contains("authgate_invalidations_total{source=\"redis\"}")
            && !text.contains("authgate_invalidations_total{source=\"redis\"} 0\n"),
        "{text}"
    );
}

#[tokio::test]
async fn a_flood_of_made_up_keys_never_reaches_the_database() {
    let env = Env::new().await;
    let (_, key) = env.content_token("real", "read-only", &[]);
    let g = env.gateway().await;
    let metrics_url = format!("http://{}/metrics", g.metrics);
    let before = store_queries(&String::from_utf8_lossy(
        &get(&metrics_url, None).await.body,
    ));
    // The budget is per second, so the bound depends on how long the flood
    // took: it fits every window the flood touched. Without the known-hash
    // set every one of the keys would be a lookup, far above that bound on
    // any machine that sends them in under 15 s.
    const FLOOD: usize = 2000;
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let url = g.url("/api/articles");
        senders.spawn(async move {
            for _ in 0..FLOOD / 32 {
                let fake = authgate::token::generate_key().unwrap();
                assert_eq!(get(&url, Some(&fake)).await.status, 401);
            }
        });
    }
    while let Some(r) = senders.join_next().await {
        r.expect("flood task");
    }
    let windows = started.elapsed().as_secs() + 2;
    let after = store_queries(&String::from_utf8_lossy(
        &get(&metrics_url, None).await.body,
    ));
    let lookups = after - before;
    assert!(
        lookups <= f64::from(authgate::known::MISS_BUDGET) * windows as f64,
        "{lookups} lookups for {FLOOD} made-up keys in {:?}",
        started.elapsed()
    );
    // Real keys, old and brand new, still work at once.
    assert_eq!(get(&g.url("/api/articles"), Some(&key)).await.status, 200);
    let (_, fresh) = env.content_token("fresh", "read-only", &[]);
    assert_eq!(get(&g.url("/api/articles"), Some(&fresh)).await.status, 200);
}

/// One request on a kept-alive connection; its status.
async fn status_on(c: &mut tokio::net::TcpStream, path: &str, key: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let req = format!("GET {path} HTTP/1.1\r\nHost: cms\r\nAuthorization: Bearer {key}\r\n\r\n");
    c.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = c.read(&mut chunk).await.expect("read");
        assert!(n > 0, "the gateway closed the connection");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        let Some(end) = text.find("\r\n\r\n") else {
            continue;
        };
        let head = text[..end].to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("a content-length");
        if buf.len() >= end + 4 + len {
            return head[9..12].parse().expect("a status");
        }
    }
}

/// A client on keep-alive sends the same key on one connection again and
/// again (the gateway remembers it per connection): every kind of
/// revocation still ends it on that connection, without a reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_reach_a_kept_alive_connection() {
    let env = Env::new().await;
    let scenarios = revocations(&env);
    let g = env.gateway().await;
    for Revocation {
        what,
        args,
        path,
        key,
        refusal,
    } in scenarios
    {
        let mut c = tokio::net::TcpStream::connect(g.addr)
            .await
            .expect("connect");
        for _ in 0..3 {
            assert_eq!(status_on(&mut c, path, &key).await, 200, "{what}: before");
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        env.ok(&args);
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let status = status_on(&mut c, path, &key).await;
            if status == refusal {
                break;
            }
            assert_eq!(
                status, 200,
                "{what}: neither accepted nor refused with {refusal}"
            );
            assert!(
                Instant::now() < deadline,
                "{what}: the kept-alive connection still accepts the key"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A key is found in the cache by its keyed fingerprint, without its HMAC
/// (issue 25). A revocation still reaches every cached form on every
/// replica: the fingerprint entries of a deleted token (two of them: its
/// new key and its old key still in its overlap), of a regenerated token's
/// old key, and a connection's remembered key; once a replica refuses a key
/// it refuses it on every later request, on a fresh or a kept-alive
/// connection, and a token nobody touched is still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_reach_every_fingerprint_entry_on_both_replicas() {
    const PATH: &str = "/api/articles";
    let env = Env::new().await;
    let (deleted_id, deleted_old) = env.content_token("deleted", "read-only", &[]);
    let v = env.json(&[
        "token",
        "regenerate",
        &deleted_id.to_string(),
        "--keep-old-for",
        "1h",
    ]);
    let deleted_new = v["key"].as_str().expect("a new key").to_owned();
    let (regen_id, regen_key) = env.content_token("regenerated", "read-only", &[]);
    let (_, kept) = env.content_token("kept", "read-only", &[]);
    let r1 = Replica::start(&env.config_path, &[]);
    let r2 = Replica::start(&env.config_path, &[]);
    let keys = [&deleted_old, &deleted_new, &regen_key, &kept];
    // Each key cached on both replicas, then served again from the cache
    // (fresh connections: by fingerprint, not a connection's last key).
    let mut kept_alive = Vec::new();
    for r in [&r1, &r2] {
        for key in keys {
            for _ in 0..2 {
                assert_eq!(get(&r.url(PATH), Some(key)).await.status, 200);
            }
        }
        let mut c = tokio::net::TcpStream::connect(r.addr)
            .await
            .expect("connect");
        assert_eq!(status_on(&mut c, PATH, &deleted_new).await, 200);
        kept_alive.push(c);
    }
    env.ok(&["token", "delete", &deleted_id.to_string()]);
    env.ok(&["token", "regenerate", &regen_id.to_string()]);
    for key in [&deleted_old, &deleted_new, &regen_key] {
        first_refusals(&[&r1, &r2], PATH, key, 401, Duration::from_secs(3)).await;
    }
    for (r, c) in [&r1, &r2].into_iter().zip(&mut kept_alive) {
        for _ in 0..3 {
            for key in [&deleted_old, &deleted_new, &regen_key] {
                assert_eq!(
                    get(&r.url(PATH), Some(key)).await.status,
                    401,
                    "{}: refused once, refused again",
                    r.addr
                );
            }
            assert_eq!(
                status_on(c, PATH, &deleted_new).await,
                401,
                "{}: a kept-alive connection's remembered key",
                r.addr
            );
            assert_eq!(get(&r.url(PATH), Some(&kept)).await.status, 200);
        }
    }
}
