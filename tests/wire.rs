//! The gateway's own HTTP/1.1 toward the upstream, against a raw upstream
//! that answers the way real servers do: chunked and close-delimited
//! bodies, interim `100 Continue`, an answer before the request body is
//! all sent, a body cut short, bytes that are not HTTP; and the way broken
//! ones do: a length beside chunked, codings the gateway cannot pass on,
//! chunked in HTTP/1.0, a body that stalls, a response nobody asked for.

// Test code: a failure here is the test failing, so it may unwrap.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw upstream: for each request head, by its path, a scripted answer.
/// Counts the connections it accepts.
async fn upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    raw_upstream(serve).await
}

async fn serve(mut s: TcpStream) {
    let mut buf = Vec::new();
    loop {
        let Some(end) = read_until(&mut s, &mut buf, b"\r\n\r\n").await else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        buf.drain(..end);
        let path = head.split(' ').nth(1).unwrap_or("").to_owned();
        let length = content_length(&head);
        let name = path.rsplit('/').next().unwrap_or("").to_owned();
        if name == "unasked" {
            // The answer, then one nobody asked for, on a connection kept
            // open for the next request.
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
            tokio::time::sleep(Duration::from_millis(30)).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nevil!")
                .await;
            continue;
        }
        if name == "stall" {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nfirst")
                .await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            return;
        }
        if path.ends_with("/early") {
            // Answer at once, read nothing of the body, close later.
            let _ = s
                .write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 4\r\nconnection: close\r\n\r\nbig!")
                .await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            return;
        }
        // The body, by length, is read before answering.
        while buf.len() < length {
            let mut chunk = [0u8; 65536];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..length);
        let pieces: Vec<&[u8]> = match path.rsplit('/').next().unwrap_or("") {
            "chunked" => vec![
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel",
                b"lo\r\n",
                b"6;ext=1\r\n world\r\n0\r\nx-trailer: t\r\n\r\n",
            ],
            "continue" => vec![
                b"HTTP/1.1 100 Continue\r\n\r\n",
                b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            ],
            "head" => vec![b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"],
            "cut" => vec![b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten.."],
            "garbage" => vec![b"SSH-2.0-OpenSSH_9.2\r\n\r\n"],
            "close" => vec![b"HTTP/1.1 200 OK\r\n\r\nuntil", b" the end"],
            "cl-te" => vec![b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\nx-kept: k\r\n\r\na\r\n0123456789\r\n0\r\n\r\n"],
            "gzip-chunked" => vec![b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n3\r\n\x1f\x8b\x08\r\n0\r\n\r\n"],
            "gzip" => vec![b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n\x1f\x8b\x08"],
            "chunked-chunked" => vec![b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, chunked\r\n\r\n0\r\n\r\n"],
            "identity" => vec![b"HTTP/1.1 200 OK\r\ntransfer-encoding: identity\r\ncontent-length: 2\r\n\r\nok"],
            "h10-te" => vec![b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"],
            _ => vec![b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"],
        };
        for p in &pieces {
            if s.write_all(p).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if matches!(path.rsplit('/').next(), Some("cut" | "garbage" | "close")) {
            return;
        }
    }
}

async fn read_until(s: &mut TcpStream, buf: &mut Vec<u8>, end: &[u8]) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(end.len()).position(|w| w == end) {
            return Some(i + end.len());
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn gateway(env: &Env, upstream: SocketAddr) -> Gateway {
    let mut cfg = env.config();
    cfg.upstream.url = format!("http://{upstream}").parse().unwrap();
    Gateway::start(cfg).await
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One client connection to the gateway, for requests in turn.
async fn client(g: &Gateway) -> Sender {
    let io = TokioIo::new(TcpStream::connect(g.addr).await.unwrap());
    let (send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    send
}

/// A request on `send`: the status and the body, or the body's error.
async fn call(send: &mut Sender, method: &str, path: &str) -> (u16, Result<Bytes, String>) {
    let (status, _, body) = call_with_headers(send, method, path).await;
    (status, body)
}

/// A request on `send`: the status, the headers and the body.
async fn call_with_headers(
    send: &mut Sender,
    method: &str,
    path: &str,
) -> (u16, http::HeaderMap, Result<Bytes, String>) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "cms")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await;
    (
        status,
        headers,
        body.map(|b| b.to_bytes()).map_err(|e| e.to_string()),
    )
}

#[tokio::test]
async fn chunked_close_delimited_and_head_answers_arrive_whole() {
    let env = Env::new().await;
    let (up, accepted) = upstream().await;
    let g = gateway(&env, up).await;
    let mut c = client(&g).await;
    for _ in 0..2 {
        let (status, body) = call(&mut c, "GET", "/uploads/chunked").await;
        assert_eq!((status, body.unwrap()), (200, Bytes::from("hello world")));
    }
    let (status, body) = call(&mut c, "HEAD", "/uploads/head").await;
    assert_eq!((status, body.unwrap()), (200, Bytes::new()));
    let (status, body) = call(&mut c, "GET", "/uploads/a").await;
    assert_eq!((status, body.unwrap()), (200, Bytes::from("ok")));
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "after a chunked body and a HEAD answer the connection is used again"
    );
    // A body delimited by the close: whole, and the next request gets a
    // new connection.
    let (status, body) = call(&mut c, "GET", "/uploads/close").await;
    assert_eq!((status, body.unwrap()), (200, Bytes::from("until the end")));
    let (status, _) = call(&mut c, "GET", "/uploads/a").await;
    assert_eq!(status, 200);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn interim_answers_are_passed_over() {
    let env = Env::new().await;
    let (up, accepted) = upstream().await;
    let g = gateway(&env, up).await;
    let mut c = client(&g).await;
    let (status, body) = call(&mut c, "GET", "/uploads/continue").await;
    assert_eq!((status, body.unwrap()), (200, Bytes::from("ok")));
    let (status, _) = call(&mut c, "GET", "/uploads/a").await;
    assert_eq!(status, 200);
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_body_cut_short_or_a_head_that_is_not_http_fails_the_request() {
    let env = Env::new().await;
    let (up, _) = upstream().await;
    let g = gateway(&env, up).await;
    let mut c = client(&g).await;
    let (status, body) = call(&mut c, "GET", "/uploads/cut").await;
    assert_eq!(status, 200, "the head was sound");
    assert!(
        body.is_err(),
        "the client sees the body break off: {body:?}"
    );
    let mut c = client(&g).await;
    let (status, body) = call(&mut c, "GET", "/uploads/garbage").await;
    assert_eq!(status, 502);
    assert!(
        String::from_utf8_lossy(&body.unwrap()).contains("BadGatewayError"),
        "the error envelope"
    );
}

#[tokio::test]
async fn an_answer_before_the_body_is_sent_reaches_the_client() {
    let env = Env::new().await;
    let (up, accepted) = upstream().await;
    let g = gateway(&env, up).await;
    let io = TokioIo::new(TcpStream::connect(g.addr).await.unwrap());
    let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    // 64 MiB, more than the socket buffers hold, offered as it is read.
    let chunks =
        (0..1024).map(|_| Ok::<_, std::io::Error>(Frame::data(Bytes::from(vec![b'x'; 65536]))));
    let body = StreamBody::new(futures_util::stream::iter(chunks));
    let req = http::Request::builder()
        .method("POST")
        .uri("/uploads/early")
        .header("host", "cms")
        .header("content-length", (1024 * 65536).to_string())
        .body(body)
        .unwrap();
    let started = Instant::now();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(
        resp.status().as_u16(),
        413,
        "the upstream's answer, not a 502"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "it came before the upstream closed"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_length_beside_chunked_is_removed_and_the_body_arrives_whole() {
    let env = Env::new().await;
    let (up, accepted) = upstream().await;
    let g = gateway(&env, up).await;
    let mut c = client(&g).await;
    let (status, headers, body) = call_with_headers(&mut c, "GET", "/uploads/cl-te").await;
    assert_eq!((status, body.unwrap()), (200, Bytes::from("0123456789")));
    assert_eq!(
        headers.get("content-length"),
        None,
        "the upstream's 5 is gone"
    );
    assert_eq!(
        headers["transfer-encoding"], "chunked",
        "the gateway's own framing"
    );
    assert_eq!(headers["x-kept"], "k");
    // Such an answer leaves its connection unfit for another request.
    let (status, _) = call(&mut c, "GET", "/uploads/a").await;
    assert_eq!(status, 200);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn codings_other_than_one_chunked_and_chunked_in_http_1_0_get_502() {
    let env = Env::new().await;
    let (up, accepted) = upstream().await;
    let g = gateway(&env, up).await;
    let mut c = client(&g).await;
    let refused = [
        "gzip-chunked",
        "gzip",
        "chunked-chunked",
        "identity",
        "h10-te",
    ];
    for (i, name) in refused.iter().enumerate() {
        let (status, body) = call(&mut c, "GET", &format!("/uploads/{name}")).await;
        assert_eq!(status, 502, "{name}");
        let body = body.unwrap();
        assert!(
            String::from_utf8_lossy(&body).contains("BadGatewayError"),
            "{name}: the error envelope, not the upstream's bytes"
        );
        // The client connection carries on; the upstream connection that
        // framed its answer so is not used again.
        let (status, body) = call(&mut c, "GET", "/uploads/a").await;
        assert_eq!((status, body.unwrap()), (200, Bytes::from("ok")), "{name}");
        assert_eq!(accepted.load(Ordering::SeqCst), i + 2, "{name}");
    }
    let metrics = g.metrics_text().await;
    assert!(
        metrics.contains(r#"authgate_upstream_errors_total{kind="protocol"} 5"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_body_that_stalls_past_the_idle_timeout_closes_the_client_connection() {
    let env = Env::new().await;
    let (up, _) = upstream().await;
    let mut cfg = env.config();
    cfg.upstream.url = format!("http://{up}").parse().unwrap();
    cfg.upstream.body_idle_timeout = Duration::from_millis(300);
    let g = Gateway::start(cfg).await;
    let mut c = TcpStream::connect(g.addr).await.unwrap();
    c.write_all(b"GET /uploads/stall HTTP/1.1\r\nhost: cms\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let read_all = c.read_to_end(&mut got);
    tokio::time::timeout(Duration::from_secs(3), read_all)
        .await
        .expect("the gateway closed the connection")
        .unwrap();
    let waited = started.elapsed();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("content-length: 100\r\n"), "{text}");
    assert!(
        text.ends_with("\r\n\r\nfirst"),
        "cut after what came: {text}"
    );
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    let metrics = g.metrics_text().await;
    assert!(
        metrics.contains(r#"authgate_upstream_errors_total{kind="body_timeout"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_response_nobody_asked_for_never_answers_a_request() {
    let env = Env::new().await;
    let (up, accepted) = upstream().await;
    let g = gateway(&env, up).await;
    // On the same client connection.
    let mut c = client(&g).await;
    let (status, body) = call(&mut c, "GET", "/uploads/unasked").await;
    assert_eq!((status, body.unwrap()), (200, Bytes::from("ok")));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) = call(&mut c, "GET", "/uploads/a").await;
    assert_eq!((status, body.unwrap()), (200, Bytes::from("ok")));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    // Through the parked list, to another client: `c`'s clean connection
    // is parked, `b` takes it and gets an unasked response on it.
    drop(c);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut b = client(&g).await;
    let (status, body) = call(&mut b, "GET", "/uploads/unasked").await;
    assert_eq!((status, body.unwrap()), (200, Bytes::from("ok")));
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "the parked one");
    drop(b);
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..2 {
        let mut next = client(&g).await;
        let (status, body) = call(&mut next, "GET", "/uploads/a").await;
        assert_eq!((status, body.unwrap()), (200, Bytes::from("ok")));
        drop(next);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        3,
        "the parked connection holding the unasked response was replaced once"
    );
}
