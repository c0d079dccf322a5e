//! The upstream side of the request path: each client connection keeps
//! one upstream connection while it is open, hands it on when it closes,
//! and replaces one the upstream has closed.

// Test code: a failure here is the test failing, so it may unwrap.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How the raw upstream treats a connection after each response.
#[derive(Clone, Copy)]
enum After {
    /// Keep it open for the next request.
    KeepAlive,
    /// Say `Connection: close` and close it.
    Close,
    /// Keep it open, but close it silently when idle for this long (an
    /// upstream's keep-alive timeout).
    IdleClose(Duration),
}

/// A raw HTTP/1.1 upstream that counts the connections it accepts.
async fn upstream(after: After) -> (SocketAddr, Arc<AtomicUsize>) {
    raw_upstream(move |s| serve(s, after)).await
}

async fn serve(mut s: TcpStream, after: After) {
    let mut buf = Vec::new();
    loop {
        // One request head (the tests send no bodies).
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 4096];
            let read = match after {
                After::IdleClose(idle) if buf.is_empty() => {
                    match tokio::time::timeout(idle, s.read(&mut chunk)).await {
                        Ok(r) => r,
                        Err(_) => return,
                    }
                }
                _ => s.read(&mut chunk).await,
            };
            match read {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head: Vec<u8> = buf.drain(..end).collect();
        if head.starts_with(b"GET /uploads/slow") {
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        let close = matches!(after, After::Close);
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n{}\r\nok",
            if close { "connection: close\r\n" } else { "" }
        );
        if s.write_all(resp.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

/// A gateway in front of `upstream`.
async fn gateway(env: &Env, upstream: SocketAddr) -> Gateway {
    let mut cfg = env.config();
    cfg.upstream.url = format!("http://{upstream}").parse().unwrap();
    Gateway::start(cfg).await
}

/// Send one request on a kept-alive client connection; the status line.
async fn one(c: &mut TcpStream) -> String {
    get_on(c, "/uploads/a.png").await
}

async fn get_on(c: &mut TcpStream, path: &str) -> String {
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: cms\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = c.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the gateway closed the client connection");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = content_length(&text[..end]);
            if buf.len() >= end + 4 + len {
                return text.lines().next().unwrap().to_owned();
            }
        }
    }
}

#[tokio::test]
async fn a_client_connection_keeps_one_upstream_connection_and_hands_it_on() {
    let env = Env::new().await;
    let (up, accepted) = upstream(After::KeepAlive).await;
    let g = gateway(&env, up).await;
    let mut a = TcpStream::connect(g.addr).await.unwrap();
    for _ in 0..20 {
        assert_eq!(one(&mut a).await, "HTTP/1.1 200 OK");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "20 requests, one connection"
    );
    // A second client connection beside the first gets one of its own.
    let mut b = TcpStream::connect(g.addr).await.unwrap();
    assert_eq!(one(&mut b).await, "HTTP/1.1 200 OK");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    // When a client connection closes, the next new one takes its upstream
    // connection instead of opening another.
    drop(a);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = TcpStream::connect(g.addr).await.unwrap();
    for _ in 0..5 {
        assert_eq!(one(&mut c).await, "HTTP/1.1 200 OK");
    }
    assert_eq!(one(&mut b).await, "HTTP/1.1 200 OK");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "the parked connection was reused"
    );
}

#[tokio::test]
async fn an_upstream_that_closes_after_each_response_gets_a_new_connection_each_time() {
    let env = Env::new().await;
    let (up, accepted) = upstream(After::Close).await;
    let g = gateway(&env, up).await;
    let mut c = TcpStream::connect(g.addr).await.unwrap();
    for _ in 0..5 {
        assert_eq!(one(&mut c).await, "HTTP/1.1 200 OK");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn an_upstream_connection_closed_while_idle_is_replaced() {
    let env = Env::new().await;
    let (up, accepted) = upstream(After::IdleClose(Duration::from_millis(50))).await;
    let g = gateway(&env, up).await;
    let mut c = TcpStream::connect(g.addr).await.unwrap();
    assert_eq!(one(&mut c).await, "HTTP/1.1 200 OK");
    // The upstream closes its side while the client connection is idle.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(one(&mut c).await, "HTTP/1.1 200 OK");
    assert_eq!(one(&mut c).await, "HTTP/1.1 200 OK");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_timed_out_request_leaves_the_connection_fit_for_the_next() {
    let env = Env::new().await;
    let (up, accepted) = upstream(After::KeepAlive).await;
    let mut cfg = env.config();
    cfg.upstream.url = format!("http://{up}").parse().unwrap();
    cfg.upstream.request_timeout = Duration::from_millis(200);
    let g = Gateway::start(cfg).await;
    let mut c = TcpStream::connect(g.addr).await.unwrap();
    assert_eq!(one(&mut c).await, "HTTP/1.1 200 OK");
    assert_eq!(
        get_on(&mut c, "/uploads/slow.png").await,
        "HTTP/1.1 504 Gateway Timeout"
    );
    // The timer is reset for each request: the next ones are not cut short
    // and are timed afresh.
    for _ in 0..3 {
        assert_eq!(one(&mut c).await, "HTTP/1.1 200 OK");
    }
    assert_eq!(
        get_on(&mut c, "/uploads/slow.png").await,
        "HTTP/1.1 504 Gateway Timeout"
    );
    assert_eq!(one(&mut c).await, "HTTP/1.1 200 OK");
    // The upstream connection a timed-out request was written to is not
    // used again (its response may still come): one new connection each.
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}
