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
