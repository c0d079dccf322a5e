//! Limits and slow clients, over raw sockets (issue 7).

// Test code: a failure here is the test failing, so it may unwrap.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Read until EOF or `limit`; returns what arrived and whether EOF came.
async fn read_all(s: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut buf = Vec::new();
    let r = tokio::time::timeout(limit, s.read_to_end(&mut buf)).await;
    (String::from_utf8_lossy(&buf).into_owned(), r.is_ok())
}

async fn raw(g: &Gateway, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(g.addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    read_all(&mut s, Duration::from_secs(5)).await.0
}

async fn env_with(server: &str) -> (Env, Gateway) {
    let env = Env::new().await;
    let text = std::fs::read_to_string(&env.config_path).unwrap().replace(
        "request_header_timeout = \"5s\"\n",
        &format!("request_header_timeout = \"1s\"\n{server}\n"),
    );
    std::fs::write(&env.config_path, text).unwrap();
    let g = env.gateway().await;
    (env, g)
}

#[tokio::test]
async fn slowloris_is_cut_at_the_header_timeout() {
    let (_env, g) = env_with("").await;
    let mut s = TcpStream::connect(g.addr).await.unwrap();
    let t = Instant::now();
    s.write_all(b"GET /api/articles HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Trickle a header byte every 200 ms: never completes the head.
    let mut closed = false;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if s.write_all(b"X").await.is_err() {
            closed = true;
            break;
        }
        let mut b = [0u8; 256];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1), s.read(&mut b)).await {
            if n == 0 || String::from_utf8_lossy(&b[..n]).contains("408") {
                closed = true;
                break;
            }
        }
    }
    assert!(
        closed,
        "a slow client was still connected after {:?}",
        t.elapsed()
    );
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "cut after {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn oversized_heads_get_431_and_long_targets_414() {
    let (_env, g) =
        env_with("max_header_bytes = 8192\nmax_headers = 20\nmax_uri_bytes = 2048").await;
    let big = format!(
        "GET /api/articles HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(10_000)
    );
    assert!(
        raw(&g, big.as_bytes()).await.starts_with("HTTP/1.1 431"),
        "total header size"
    );
    let mut many = String::from("GET /api/articles HTTP/1.1\r\nHost: x\r\n");
    for i in 0..30 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("Connection: close\r\n\r\n");
    assert!(
        raw(&g, many.as_bytes()).await.starts_with("HTTP/1.1 431"),
        "header count"
    );
    let long = format!(
        "GET /api/{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "a".repeat(3000)
    );
    let r = raw(&g, long.as_bytes()).await;
    assert!(r.starts_with("HTTP/1.1 414"), "{r}");
    assert!(r.contains("URITooLongError"));
    let ok = format!(
        "GET /api/{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "a".repeat(1000)
    );
    assert!(raw(&g, ok.as_bytes()).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let (_env, g) = env_with("idle_timeout = \"500ms\"").await;
    let mut s = TcpStream::connect(g.addr).await.unwrap();
    s.write_all(b"GET /uploads/a HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut b = vec![0u8; 4096];
    let n = s.read(&mut b).await.unwrap();
    assert!(String::from_utf8_lossy(&b[..n]).starts_with("HTTP/1.1 200"));
    let t = Instant::now();
    let (_, eof) = read_all(&mut s, Duration::from_secs(3)).await;
    assert!(eof, "idle connection still open after {:?}", t.elapsed());
    assert!(
        t.elapsed() >= Duration::from_millis(400) && t.elapsed() < Duration::from_millis(2000),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_and_are_counted() {
    let (_env, g) = env_with("max_connections = 2\nidle_timeout = \"60s\"").await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(g.addr).await.unwrap();
        s.write_all(b"GET /uploads/a HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut b = vec![0u8; 4096];
        let n = s.read(&mut b).await.unwrap();
        assert!(String::from_utf8_lossy(&b[..n]).starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    let mut third = TcpStream::connect(g.addr).await.unwrap();
    third
        .write_all(b"GET /uploads/b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut b = vec![0u8; 4096];
    let waited = tokio::time::timeout(Duration::from_millis(500), third.read(&mut b)).await;
    assert!(
        waited.is_err(),
        "the third connection was served past the cap"
    );
    let text = String::from_utf8_lossy(
        &get(&format!("http://{}/metrics", g.metrics), None)
            .await
            .body,
    )
    .into_owned();
    assert!(
        text.contains("authgate_connection_limit_reached_total 1"),
        "{text}"
    );
    assert!(text.contains("authgate_connections_active 2"));
    drop(held.pop());
    let (resp, _) = read_all(&mut third, Duration::from_secs(3)).await;
    assert!(
        resp.starts_with("HTTP/1.1 200"),
        "served once a slot freed: {resp}"
    );
}
