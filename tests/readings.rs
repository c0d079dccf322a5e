//! Issue 12 end to end, on the real server: what reaches the upstream is
//! what authgate judged. Overriding headers from an untrusted client never
//! arrive; a WebSocket tunnel opens only on the handshake the client asked
//! for; a path read differently behind us is refused before the upstream.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Send raw bytes, read until the peer closes or `wait` passes.
async fn exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overriding_headers_from_untrusted_clients_never_arrive() {
    let env = Env::new().await;
    let (_, ro) = env.content_token("ro", "read-only", &[]);
    let g = env.gateway().await;
    let overriding = [
        ("X-Original-URL", "/admin/users"),
        ("X-Rewrite-URL", "/admin/users"),
        ("X-HTTP-Method-Override", "DELETE"),
        ("X-HTTP-Method", "DELETE"),
        ("X-Method-Override", "DELETE"),
        ("X-Real-IP", "10.0.0.1"),
        ("True-Client-IP", "10.0.0.1"),
        ("X-Client-IP", "10.0.0.1"),
        ("X-Cluster-Client-IP", "10.0.0.1"),
        ("CF-Connecting-IP", "10.0.0.1"),
        ("X-Forwarded-Prefix", "/admin"),
        ("X-Forwarded-Port", "443"),
        ("X-Forwarded-Server", "internal"),
        ("X-Forwarded-Ssl", "on"),
        ("X-Forwarded-Uri", "/admin/users"),
        ("X-Auth-Owner-Email", "root@example.com"),
    ];
    let headers: String = overriding
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let raw = format!(
        "GET /api/articles HTTP/1.1\r\nHost: cms.example\r\nAuthorization: Bearer {ro}\r\n{headers}Connection: close\r\n\r\n"
    );
    let resp = exchange(g.addr, raw.as_bytes(), Duration::from_secs(3)).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let log = get(&format!("http://{}/__log", env.upstream), None).await;
    let seen: serde_json::Value = serde_json::from_slice(&log.body).expect("log");
    let arrived = &seen[0]["headers"];
    for (name, _) in overriding {
        // (A content-API token has no owner: x-auth-owner-email can only
        // be the client's.)
        let name = name.to_ascii_lowercase();
        assert!(arrived.get(&name).is_none(), "{name} arrived: {arrived}");
    }
    assert_eq!(arrived["x-forwarded-for"][0], "127.0.0.1");
}

/// Issue 24 item 2: behind a trusted proxy too, the client's overriding
/// headers never arrive; only those `server.trusted_headers` names pass,
/// and only from the trusted peer. The `X-Forwarded-For` chain is still
/// extended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_passes_only_the_allow_listed_headers() {
    let env = Env::new().await;
    let text = std::fs::read_to_string(&env.config_path)
        .expect("config")
        .replace(
            "[server]\n",
            "[server]\ntrusted_proxies = [\"127.0.0.1\"]\ntrusted_headers = [\"X-Real-IP\"]\n",
        );
    std::fs::write(&env.config_path, text).expect("config");
    let g = env.gateway().await;
    let raw = "GET /uploads/a.png HTTP/1.1\r\nHost: cms.example\r\n\
               X-Forwarded-For: 198.51.100.7\r\nX-Real-IP: 198.51.100.7\r\n\
               X-Original-URL: /admin/users\r\nX-HTTP-Method-Override: DELETE\r\n\
               True-Client-IP: 10.0.0.1\r\nX-Forwarded-Prefix: /admin\r\n\
               Connection: close\r\n\r\n";
    let resp = exchange(g.addr, raw.as_bytes(), Duration::from_secs(3)).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let log = get(&format!("http://{}/__log", env.upstream), None).await;
    let seen: serde_json::Value = serde_json::from_slice(&log.body).expect("log");
    let arrived = &seen[0]["headers"];
    for name in [
        "x-original-url",
        "x-http-method-override",
        "true-client-ip",
        "x-forwarded-prefix",
    ] {
        assert!(arrived.get(name).is_none(), "{name} arrived: {arrived}");
    }
    assert_eq!(arrived["x-real-ip"][0], "198.51.100.7", "{arrived}");
    assert_eq!(arrived["x-forwarded-for"][0], "198.51.100.7, 127.0.0.1");
}

/// Issue 24 item 10 (RFC 9112 §3.2): a missing, repeated or malformed
/// `Host` is refused before anything is judged; the absolute form's
/// authority wins over the header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_is_validated() {
    let env = Env::new().await;
    let g = env.gateway().await;
    for head in [
        "GET /uploads/a HTTP/1.1\r\n",
        "GET /uploads/a HTTP/1.1\r\nHost: cms.example\r\nHost: cms.example\r\n",
        "GET /uploads/a HTTP/1.1\r\nHost: evil.example/admin?x=\r\n",
        "GET /uploads/a HTTP/1.1\r\nHost: a@evil.example\r\n",
        "GET /uploads/a HTTP/1.1\r\nHost: cms.example:80:80\r\n",
    ] {
        let raw = format!("{head}Connection: close\r\n\r\n");
        let resp = exchange(g.addr, raw.as_bytes(), Duration::from_secs(3)).await;
        assert!(resp.starts_with("HTTP/1.1 400"), "{head:?}: {resp}");
        assert!(resp.contains("Invalid Host header"), "{head:?}: {resp}");
    }
    // HTTP/1.0 may name none.
    let resp = exchange(
        g.addr,
        b"GET /uploads/a HTTP/1.0\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(
        resp.starts_with("HTTP/1.0 200") || resp.starts_with("HTTP/1.1 200"),
        "{resp}"
    );
    // The absolute form's authority is the one the CMS is told.
    let resp = exchange(
        g.addr,
        b"GET http://cms.internal:8080/uploads/a HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let log = get(&format!("http://{}/__log", env.upstream), None).await;
    let seen: serde_json::Value = serde_json::from_slice(&log.body).expect("log");
    let last = seen.as_array().and_then(|a| a.last()).expect("a request");
    assert_eq!(last["headers"]["host"][0], "cms.internal:8080", "{last}");
    assert_eq!(last["headers"]["x-forwarded-host"][0], "cms.internal:8080");
}

/// An upstream that answers any request with 101 and the given
/// `Sec-WebSocket-Accept`, then echoes what it reads; it reports whether
/// an `Upgrade` header reached it.
async fn switching_upstream(
    accept: &'static str,
) -> (SocketAddr, tokio::sync::mpsc::Receiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read_exact(&mut byte).await.is_err() {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let _ = tx.send(head.clone()).await;
                if !head.contains("upgrade: websocket") {
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                    return;
                }
                let answer = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\nfrom-upstream"
                );
                if s.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 64];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, rx)
}

async fn gateway_in_front_of(upstream: SocketAddr) -> (Env, Gateway) {
    let mut env = Env::new().await;
    env.upstream = upstream;
    env.write_config("");
    let g = env.gateway().await;
    (env, g)
}

const HANDSHAKE: &str = "GET /chat HTTP/1.1\r\nHost: cms.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_tunnel_opens_on_the_matching_handshake() {
    // RFC 6455's example key and its accept value.
    let (up, mut heads) = switching_upstream("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=").await;
    let (_env, g) = gateway_in_front_of(up).await;
    let mut s = TcpStream::connect(g.addr).await.expect("connect");
    s.write_all(HANDSHAKE.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .expect("answer in time")
        .expect("read");
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    assert!(heads
        .recv()
        .await
        .expect("head")
        .contains("sec-websocket-key"));
    s.write_all(b"ping").await.expect("write");
    let mut echoed = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while !echoed.contains("ping") && tokio::time::Instant::now() < deadline {
        let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
            .await
            .expect("echo in time")
            .expect("read");
        echoed.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(echoed.contains("ping"), "tunnel carries bytes: {echoed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_101_without_the_matching_accept_opens_no_tunnel() {
    let (up, _heads) = switching_upstream("bm90IHRoZSByaWdodCBhY2NlcHQ=").await;
    let (_env, g) = gateway_in_front_of(up).await;
    let resp = exchange(g.addr, HANDSHAKE.as_bytes(), Duration::from_secs(3)).await;
    assert!(resp.starts_with("HTTP/1.1 502"), "{resp}");
    assert!(
        !resp.contains("from-upstream"),
        "upstream bytes reached the client: {resp}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_without_a_key_is_forwarded_as_a_plain_request() {
    let (up, mut heads) = switching_upstream("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=").await;
    let (_env, g) = gateway_in_front_of(up).await;
    let no_key = HANDSHAKE.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
    let resp = exchange(g.addr, no_key.as_bytes(), Duration::from_secs(2)).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let head = heads.recv().await.expect("head");
    assert!(
        !head.contains("upgrade:"),
        "upgrade forwarded without a key: {head}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_read_differently_behind_us_never_reach_the_upstream() {
    let env = Env::new().await;
    let (_, full) = env.content_token("full", "full-access", &[]);
    let g = env.gateway().await;
    for target in [
        "/%2561dmin/users",
        "/admin%252fusers",
        "/%2575pload/files",
        "/%2561pi/articles",
        "/%25252561dmin/users",
        "/%25u0061dmin/users",
        "/api/..;/admin/users",
        "/api/x/..%255c..%255cadmin/users",
        "/.../admin/users",
    ] {
        let raw = format!(
            "GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {full}\r\nConnection: close\r\n\r\n"
        );
        let resp = exchange(g.addr, raw.as_bytes(), Duration::from_secs(3)).await;
        assert!(resp.starts_with("HTTP/1.1 400"), "{target}: {resp}");
        assert!(
            resp.contains(r#""message":"Invalid request path""#),
            "{target}: {resp}"
        );
    }
    let raw = format!(
        "GET /api/articles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer\u{a0}{full}\r\nConnection: close\r\n\r\n"
    );
    // Latin-1 0xA0, as a client sends it on the wire.
    let bytes: Vec<u8> = raw.chars().map(|c| c as u32 as u8).collect();
    let resp = exchange(g.addr, &bytes, Duration::from_secs(3)).await;
    assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
    let log = get(&format!("http://{}/__log", env.upstream), None).await;
    assert_eq!(log.body, "[]".as_bytes(), "something reached the upstream");
}
