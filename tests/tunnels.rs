//! WebSocket tunnels are held to what a connection is held to (issue 24,
//! item 6): a tunnel keeps its place under `server.max_connections` and its
//! count in `authgate_connections_active`, ends after
//! `server.tunnel_idle_timeout`, ends on drain, and ends when its token is
//! revoked.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// RFC 6455 §1.3's sample handshake.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// An upstream that switches every request to a WebSocket and echoes.
async fn websocket_upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read_exact(&mut byte).await.is_err() {
                        return;
                    }
                    head.push(byte[0]);
                }
                let answer = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
                );
                if s.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 256];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// An environment whose upstream switches to WebSockets, with `server`
/// settings added.
async fn env_with(server: &str) -> Env {
    let env = Env::new().await;
    let ws = websocket_upstream().await;
    let text = std::fs::read_to_string(&env.config_path)
        .expect("config")
        .replace("[server]\n", &format!("[server]\n{server}\n"))
        .replace(
            &format!("url = \"http://{}\"", env.upstream),
            &format!("url = \"http://{ws}\""),
        );
    std::fs::write(&env.config_path, text).expect("config");
    env
}

/// Open a tunnel through the gateway: the handshake, the 101, one echo.
async fn open(addr: SocketAddr, key: Option<&str>) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    let req = format!(
        "GET /api/articles HTTP/1.1\r\nHost: cms\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n{auth}\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.expect("101 head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(b"ping").await.expect("write");
    let mut echo = [0u8; 4];
    s.read_exact(&mut echo).await.expect("echo");
    assert_eq!(&echo, b"ping");
    s
}

/// Does the peer close `s` within `wait`?
async fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 16];
    matches!(
        tokio::time::timeout(wait, s.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

fn addr(g: &Gateway) -> SocketAddr {
    g.url("/")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_hold_their_place_count_and_end_when_idle() {
    let env = env_with("max_connections = 2\ntunnel_idle_timeout = \"1s\"").await;
    let g = env.gateway().await;
    let a = addr(&g);
    let mut t1 = open(a, None).await;
    let mut t2 = open(a, None).await;
    let text = g.metrics_text().await;
    assert_eq!(metric(&text, "authgate_connections_active"), 2.0, "{text}");
    // The cap holds: a third connection waits while both tunnels live.
    let mut third = TcpStream::connect(a).await.expect("connect");
    third
        .write_all(b"GET /uploads/x HTTP/1.1\r\nHost: cms\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 12];
    assert!(
        tokio::time::timeout(Duration::from_millis(400), third.read(&mut buf))
            .await
            .is_err(),
        "served past the cap"
    );
    // Idle past the timeout: both end, the place is given back.
    let started = Instant::now();
    assert!(closed_within(&mut t1, Duration::from_secs(4)).await);
    assert!(closed_within(&mut t2, Duration::from_secs(4)).await);
    assert!(started.elapsed() < Duration::from_secs(4));
    tokio::time::timeout(Duration::from_secs(3), third.read_exact(&mut buf))
        .await
        .expect("the third connection is served once the tunnels end")
        .expect("read");
    assert!(
        buf.starts_with(b"HTTP/1.1 "),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    drop(third);
    let ended = metric(
        &g.metrics_text().await,
        "authgate_tunnels_ended_total{reason=\"idle\"}",
    );
    assert_eq!(ended, 2.0);
    eventually(Duration::from_secs(2), "gauge back to 0", || async {
        metric(&g.metrics_text().await, "authgate_connections_active") == 0.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_tokens_tunnel_ends() {
    let env = env_with("").await;
    let (id, key) = env.content_token("socket", "full-access", &[]);
    let g = env.gateway().await;
    let mut t = open(addr(&g), Some(&key)).await;
    // Busy, not idle: it stays open while the token is good.
    t.write_all(b"data").await.expect("write");
    assert!(!closed_within(&mut t, Duration::from_millis(1500)).await);
    env.ok(&["token", "delete", &id.to_string()]);
    assert!(
        closed_within(&mut t, Duration::from_secs(4)).await,
        "the tunnel outlived its token"
    );
    let ended = metric(
        &g.metrics_text().await,
        "authgate_tunnels_ended_total{reason=\"revoked\"}",
    );
    assert_eq!(ended, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_ends_tunnels() {
    let env = env_with("").await;
    let g = env.gateway().await;
    let mut t = open(addr(&g), None).await;
    let stopping = tokio::spawn(g.stop());
    assert!(
        closed_within(&mut t, Duration::from_secs(3)).await,
        "the tunnel outlived the drain"
    );
    stopping.await.expect("stopped");
}
