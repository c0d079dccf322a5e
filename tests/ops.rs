//! Operations: metrics, probes, graceful drain, TLS, logs, reloads (issue 5).

// Test code: a failure here is the test failing, so it may unwrap.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn metrics_text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

#[tokio::test]
async fn metrics_pass_promtool_and_carry_every_family() {
    let env = Env::new().await;
    env.super_admin("o@example.com");
    let (_, key) = env.content_token("t", "read-only", &[]);
    let (_, admin) = env.admin_token("a", "o@example.com", &[]);
    let g = env.gateway().await;
    for (path, token) in [
        ("/api/articles", Some(key.as_str())),
        ("/api/articles", Some("x")),
        ("/api/articles", None),
        ("/admin/users", Some(admin.as_str())),
        ("/uploads/x", None),
        ("/a%2f", None),
    ] {
        get(&g.url(path), token).await;
    }
    let r = get(&format!("http://{}/metrics", g.metrics), None).await;
    assert_eq!(r.status, 200);
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = metrics_text(&r.body);
    for family in [
        "authgate_requests_total",
        "authgate_denied_total",
        "authgate_request_duration_seconds_bucket",
        "authgate_upstream_duration_seconds_bucket",
        "authgate_cache_hits_total",
        "authgate_cache_misses_total",
        "authgate_cache_evictions_total",
        "authgate_cache_entries",
        "authgate_store_query_duration_seconds_bucket",
        "authgate_store_errors_total",
        "authgate_invalidations_total",
        "authgate_invalidation_lag_seconds",
        "authgate_listener_reconnects_total",
        "authgate_rate_limited_total",
        "authgate_build_info",
        "authgate_connections_active",
    ] {
        assert!(text.contains(family), "missing {family}");
    }
    assert!(text.contains(r#"authgate_requests_total{decision="allow",door="proxy",route_class="content-api",status_class="2xx"} 1"#), "{text}");
    assert!(text.contains(
        r#"authgate_denied_total{door="proxy",reason="invalid_credentials",route_class="content-api"} 1"#
    ));
    assert!(!text.contains(&key), "no key in metrics");
    assert!(!text.contains("/api/articles"), "no paths in metric labels");

    // promtool is the reference checker (Debian package `prometheus`).
    let promtool = which("promtool")
        .expect("promtool must be installed (scripts/test.sh installs the prometheus package)");
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&r.body).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics complained:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    assert_eq!(
        get(&format!("http://{}/healthz", g.metrics), None)
            .await
            .status,
        200
    );
    assert_eq!(
        get(&format!("http://{}/readyz", g.metrics), None)
            .await
            .status,
        200
    );
}

fn which(cmd: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(cmd))
        .find(|p| p.is_file())
}

/// The expiry gauges (issue 16): counted from the store at start and
/// every `tokens.stats_interval` (1s here), never per request.
#[tokio::test]
async fn token_gauges_count_active_expired_and_expiring_tokens() {
    let env = Env::new().await;
    env.super_admin("o@example.com");
    let create = |name: &str, duration: &str| {
        env.json(&[
            "token",
            "create",
            "--kind",
            "content-api",
            "--name",
            name,
            "--type",
            "read-only",
            "--duration",
            duration,
        ])["id"]
            .as_i64()
            .unwrap()
    };
    create("week", "7d");
    create("month", "30d");
    create("forever", "unlimited");
    let gone = create("gone", "7d");
    exec(
        &env.schema,
        &format!("UPDATE tokens SET expires_at = now() - interval '1 hour' WHERE id = {gone}"),
    )
    .await;
    env.admin_token("a", "o@example.com", &[]);
    let g = env.gateway().await;
    let scrape = || async {
        metrics_text(
            &get(&format!("http://{}/metrics", g.metrics), None)
                .await
                .body,
        )
    };
    let has = |text: &str, line: &str| text.lines().any(|l| l == line);
    let want = [
        r#"authgate_tokens{kind="content-api",state="active"} 3"#,
        r#"authgate_tokens{kind="content-api",state="expired"} 1"#,
        r#"authgate_tokens_expiring{kind="content-api",within="1d"} 0"#,
        r#"authgate_tokens_expiring{kind="content-api",within="7d"} 1"#,
        r#"authgate_tokens_expiring{kind="content-api",within="30d"} 2"#,
        r#"authgate_tokens{kind="admin",state="active"} 1"#,
        r#"authgate_tokens_expiring{kind="admin",within="30d"} 0"#,
    ];
    eventually(Duration::from_secs(5), "the gauges at start", || async {
        let text = scrape().await;
        want.iter().all(|l| has(&text, l))
    })
    .await;
    // A token created later shows up at the next count.
    create("soon", "7d");
    eventually(Duration::from_secs(5), "the next count", || async {
        has(
            &scrape().await,
            r#"authgate_tokens_expiring{kind="content-api",within="7d"} 2"#,
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits_zero() {
    let env = Env::with_config("").await;
    let text = std::fs::read_to_string(&env.config_path).unwrap().replace(
        "shutdown_grace = \"5s\"",
        "shutdown_grace = \"5s\"\nshutdown_delay = \"600ms\"",
    );
    std::fs::write(&env.config_path, text).unwrap();
    let (_, key) = env.content_token("t", "full-access", &[]);
    let mut replica = Replica::start(&env.config_path, &[]);
    let metrics_addr = {
        let log = replica.log.lock().unwrap().join("\n");
        let m = log
            .split("metrics=Some(")
            .nth(1)
            .and_then(|r| r.split(')').next())
            .expect("metrics address in log")
            .to_owned();
        m
    };
    let mut inflight = Vec::new();
    for _ in 0..6 {
        let url = replica.url("/api/__slow?ms=1500");
        let key = key.clone();
        inflight.push(tokio::spawn(
            async move { get(&url, Some(&key)).await.status },
        ));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = replica.pid();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        get(&format!("http://{metrics_addr}/readyz"), None)
            .await
            .status,
        503,
        "readiness turns 503 at once"
    );
    // During shutdown_delay the proxy still accepts new requests.
    assert_eq!(
        get(&replica.url("/api/articles"), Some(&key)).await.status,
        200
    );
    for t in inflight {
        assert_eq!(
            t.await.unwrap(),
            200,
            "an in-flight request completed normally"
        );
    }
    let code = tokio::task::spawn_blocking(move || replica.terminate())
        .await
        .unwrap();
    assert_eq!(code, Some(0));
}

/// A certificate and key for `localhost`, written as PEM files.
fn write_cert(
    dir: &std::path::Path,
    name: &str,
) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key, ck.cert.der().to_vec())
}

type TlsStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// Open a TLS connection trusting `ca`; returns it and the served certificate.
async fn tls_connect(addr: std::net::SocketAddr, ca: &[u8]) -> (TlsStream, Vec<u8>) {
    try_tls_connect(addr, ca).await.expect("TLS handshake")
}

async fn try_tls_connect(
    addr: std::net::SocketAddr,
    ca: &[u8],
) -> std::io::Result<(TlsStream, Vec<u8>)> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(ca.to_vec()))
        .unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await?;
    let served = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    Ok((tls, served))
}

/// Send one request on `tls` (then close); returns the status line.
async fn tls_send(mut tls: TlsStream, path: &str, token: &str) -> String {
    tls.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tls.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    text.lines().next().unwrap_or("").to_owned()
}

/// One HTTPS request over a fresh connection: status line and served cert.
async fn tls_get(
    addr: std::net::SocketAddr,
    ca: &[u8],
    path: &str,
    token: &str,
) -> (String, Vec<u8>) {
    let (tls, served) = tls_connect(addr, ca).await;
    (tls_send(tls, path, token).await, served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_tls_reloads_on_sighup_and_on_file_change() {
    let env = Env::new().await;
    let (_, key) = env.content_token("t", "read-only", &[]);
    let (cert, tls_key, der_a) = write_cert(&env.dir, "a");
    let text = std::fs::read_to_string(&env.config_path).unwrap().replace(
        "[server]\n",
        &format!(
            "[server]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            cert.display(),
            tls_key.display()
        ),
    );
    std::fs::write(&env.config_path, text).unwrap();
    let replica = Replica::start(&env.config_path, &[]);
    let (status, served) = tls_get(replica.addr, &der_a, "/api/articles", &key).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(served, der_a);
    // A connection opened before the reload keeps working after it.
    let (early, _) = tls_connect(replica.addr, &der_a).await;

    // Replace the files and send SIGHUP.
    let (b_cert, b_key, der_b) = write_cert(&env.dir, "b");
    std::fs::copy(&b_cert, &cert).unwrap();
    std::fs::copy(&b_key, &tls_key).unwrap();
    std::process::Command::new("kill")
        .args(["-HUP", &replica.pid().to_string()])
        .status()
        .unwrap();
    eventually(
        Duration::from_secs(3),
        "new certificate after SIGHUP",
        || {
            let der_b = der_b.clone();
            let key = key.clone();
            let addr = replica.addr;
            async move {
                match try_tls_connect(addr, &der_b).await {
                    Ok((tls, served)) => {
                        served == der_b
                            && tls_send(tls, "/api/articles", &key).await.contains("200")
                    }
                    Err(_) => false, // still the old certificate
                }
            }
        },
    )
    .await;
    assert_eq!(
        tls_send(early, "/api/articles", &key).await,
        "HTTP/1.1 200 OK"
    );
    // Change the files again without a signal: the poll notices.
    let (c_cert, c_key, der_c) = write_cert(&env.dir, "c");
    std::fs::copy(&c_key, &tls_key).unwrap();
    std::fs::copy(&c_cert, &cert).unwrap();
    eventually(
        Duration::from_secs(6),
        "new certificate after a file change",
        || {
            let der_c = der_c.clone();
            let key = key.clone();
            let addr = replica.addr;
            async move {
                match try_tls_connect(addr, &der_c).await {
                    Ok((tls, served)) => {
                        served == der_c
                            && tls_send(tls, "/api/articles", &key).await.contains("200")
                    }
                    Err(_) => false,
                }
            }
        },
    )
    .await;
    // Plain HTTP on the TLS port is refused, not served.
    let r = tokio::time::timeout(Duration::from_secs(2), async {
        let mut s = tokio::net::TcpStream::connect(replica.addr).await.unwrap();
        s.write_all(b"GET /api/articles HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf).await;
        buf
    })
    .await
    .unwrap();
    assert!(!String::from_utf8_lossy(&r).contains("200 OK"));
}

#[tokio::test]
async fn https_upstream_with_a_configured_ca() {
    let env = Env::new().await;
    let (_, key) = env.content_token("t", "read-only", &[]);
    let (cert, tls_key, _) = write_cert(&env.dir, "upstream");
    // An HTTPS echo upstream: TLS in front of the echo on a plain port.
    let acceptor = {
        let files = authgate::config::TlsFiles {
            cert: cert.clone(),
            key: tls_key.clone(),
        };
        tokio_rustls::TlsAcceptor::from(authgate::tls::server_config(&files).unwrap())
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let echo = env.upstream;
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    if let Ok(mut plain) = tokio::net::TcpStream::connect(echo).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                    }
                }
            });
        }
    });
    let mut cfg = env.config();
    cfg.upstream.url = format!("https://localhost:{port}").parse().unwrap();
    cfg.upstream.ca_file = Some(cert.clone());
    let g = Gateway::start(cfg.clone()).await;
    let r = get(&g.url("/api/articles"), Some(&key)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.upstream_header("x-auth-token-kind").as_deref(),
        Some("content-api")
    );
    // Without the CA the upstream's certificate is not trusted: 502.
    let mut untrusted = cfg;
    untrusted.upstream.ca_file = None;
    let g2 = Gateway::start(untrusted).await;
    assert_eq!(get(&g2.url("/api/articles"), Some(&key)).await.status, 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_carry_one_line_per_request_and_never_the_key_or_hash() {
    for format in ["json", "text"] {
        let env =
            Env::with_config(&format!("[log]\nformat = \"{format}\"\nlevel = \"info\"\n")).await;
        let (_, key) = env.content_token("t", "read-only", &[]);
        let hash = authgate::token::Hasher::new(SALT).hash_hex(&key);
        let replica = Replica::start(&env.config_path, &[]);
        let before = replica.log.lock().unwrap().len();
        assert_eq!(
            get(&replica.url("/api/articles?x=1"), Some(&key))
                .await
                .status,
            200
        );
        assert_eq!(
            request(
                "POST",
                &replica.url("/api/articles"),
                Some(&key),
                &[],
                b"{}"
            )
            .await
            .status,
            403
        );
        assert_eq!(
            get(&replica.url("/api/articles"), Some(&"e".repeat(256)))
                .await
                .status,
            401
        );
        eventually(Duration::from_secs(2), "three access lines", || async {
            replica.log.lock().unwrap()[before..]
                .iter()
                .filter(|l| l.contains("authgate::access"))
                .count()
                >= 3
        })
        .await;
        let lines: Vec<String> = replica.log.lock().unwrap().clone();
        let access: Vec<&String> = lines[before..]
            .iter()
            .filter(|l| l.contains("authgate::access"))
            .collect();
        assert_eq!(access.len(), 3, "{format}: {access:?}");
        for l in &lines {
            assert!(
                !l.contains(&key) && !l.contains(&hash),
                "{format}: secret in log line {l}"
            );
        }
        if format == "json" {
            let v: serde_json::Value = serde_json::from_str(access[1]).expect("json line");
            assert_eq!(v["method"], "POST");
            assert_eq!(v["path"], "/api/articles");
            assert_eq!(v["route_class"], "content-api");
            assert_eq!(v["decision"], "deny");
            assert_eq!(v["status"], 403);
            assert!(v["token_id"].as_i64().unwrap() > 0);
            assert!(v["latency_us"].is_number());
            assert!(v["request_id"].is_string());
        } else {
            assert!(
                access[0].contains("status=200") && access[0].contains("decision=\"allow\""),
                "{}",
                access[0]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_reloads_on_change_and_keeps_the_old_one_when_bad() {
    let env = Env::new().await;
    let (_, key) = env.content_token("t", "custom", &["api::article.article.find"]);
    let replica = Replica::start(&env.config_path, &[]);
    let url = replica.url("/api/posts");
    assert_eq!(
        get(&url, Some(&key)).await.status,
        403,
        "posts is not a known type yet"
    );
    // Map /api/posts to the article type's actions: a content type change.
    let good = std::fs::read_to_string(&env.config_path)
        .unwrap()
        .replace("plural = \"articles\"", "plural = \"posts\"");
    std::fs::write(&env.config_path, &good).unwrap();
    eventually(Duration::from_secs(6), "reload on file change", || async {
        get(&url, Some(&key)).await.status == 200
    })
    .await;
    // A broken config is logged and the running one kept.
    std::fs::write(&env.config_path, format!("{good}\n[bogus]\n")).unwrap();
    eventually(Duration::from_secs(6), "reload error logged", || async {
        replica
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("config reload failed") && l.contains("bogus"))
    })
    .await;
    assert_eq!(get(&url, Some(&key)).await.status, 200);
    // SIGHUP reloads too.
    std::fs::write(
        &env.config_path,
        good.replace("plural = \"posts\"", "plural = \"articles\""),
    )
    .unwrap();
    std::process::Command::new("kill")
        .args(["-HUP", &replica.pid().to_string()])
        .status()
        .unwrap();
    eventually(Duration::from_secs(2), "reload on SIGHUP", || async {
        get(&url, Some(&key)).await.status == 403
    })
    .await;
}

#[tokio::test]
async fn check_config_rejects_an_unreadable_certificate() {
    let env = Env::new().await;
    let text = std::fs::read_to_string(&env.config_path).unwrap().replace(
        "[server]\n",
        "[server]\ntls_cert = \"/nonexistent/tls.crt\"\ntls_key = \"/nonexistent/tls.key\"\n",
    );
    std::fs::write(&env.config_path, text).unwrap();
    let out = env.cli(&["check-config"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("server.tls_cert") && err.contains("/nonexistent/tls.crt"),
        "{err}"
    );
    let started = Instant::now();
    let out = env.cli(&["serve"]);
    assert_eq!(out.status.code(), Some(1), "serve refuses the same config");
    assert!(started.elapsed() < Duration::from_secs(5));
}
