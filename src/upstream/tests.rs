//! The upstream client against a raw upstream on real loopback sockets:
//! the hand-over of a connection the upstream closed while it was parked,
//! and the resend of a request no connection took. Also the raw upstream
//! that `conn`'s tests use.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Either, Full};

use super::*;

/// One connection of the raw upstream, as its script sees it.
pub(super) struct Peer {
    s: std::net::TcpStream,
    buf: Vec<u8>,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Peer {
    /// Read one request head (its request line is recorded); `None` when
    /// the connection ends first.
    pub(super) fn head(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..i + 4).collect();
                let head = String::from_utf8_lossy(&head).into_owned();
                let line = head.lines().next().unwrap_or("").to_owned();
                self.heads.lock().unwrap().push(line);
                return Some(head);
            }
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    pub(super) fn write(&mut self, bytes: &[u8]) {
        let _ = self.s.write_all(bytes);
    }

    /// Keep the connection open, reading nothing, for a while.
    pub(super) fn hold(&mut self) {
        std::thread::sleep(Duration::from_secs(3));
    }

    /// Close with a reset (`SO_LINGER` 0), not a FIN.
    pub(super) fn reset(self) {
        let _ = socket2::SockRef::from(&self.s).set_linger(Some(Duration::ZERO));
    }
}

/// A raw upstream on threads of its own (so it acts while the test's
/// runtime is blocked), running `script` on each connection it accepts.
pub(super) struct Raw {
    pub addr: SocketAddr,
    /// The request lines it read, in order.
    pub heads: Arc<Mutex<Vec<String>>>,
    pub accepted: Arc<AtomicUsize>,
}

impl Raw {
    pub(super) fn start(script: impl Fn(Peer) + Send + Sync + 'static) -> Raw {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (h, a, script) = (heads.clone(), accepted.clone(), Arc::new(script));
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { return };
                a.fetch_add(1, Ordering::SeqCst);
                let (heads, script) = (h.clone(), script.clone());
                std::thread::spawn(move || {
                    script(Peer {
                        s,
                        buf: Vec::new(),
                        heads,
                    })
                });
            }
        });
        Raw {
            addr,
            heads,
            accepted,
        }
    }

    pub(super) fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    pub(super) fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

pub(super) const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// A bodiless GET, ready to write.
pub(super) async fn get(path: &str) -> conn::Request {
    let head = format!("GET {path} HTTP/1.1\r\nhost: cms\r\n\r\n").into_bytes();
    let body = Either::Right(Full::new(Bytes::new()));
    conn::Request::new(Method::GET, head, body, RequestFraming::None).await
}

/// The body idle limit of the tests, with its own counter.
pub(super) fn idle(after: Duration) -> BodyIdle {
    BodyIdle {
        after,
        expired: prometheus::IntCounter::new("t", "t").unwrap(),
    }
}

pub(super) async fn text(body: UpstreamBody) -> Result<String, BodyError> {
    let b = body.collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&b).into_owned())
}

fn upstream_at(addr: SocketAddr) -> Upstream {
    let cfg = UpstreamConfig {
        url: format!("http://{addr}").parse().unwrap(),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        body_idle_timeout: Duration::from_secs(5),
        pool_max_idle: 4,
        pool_idle_timeout: Duration::from_secs(60),
        ca_file: None,
    };
    Upstream::new(&cfg, &Metrics::new()).unwrap()
}

async fn answer(pinned: &Pinned, path: &str) -> String {
    match pinned.exchange(get(path).await).await {
        Ok(Answer::Response(resp)) => text(resp.into_body()).await.unwrap(),
        Ok(Answer::Switched { .. }) => panic!("{path}: switched protocols"),
        Err(e) => panic!("{path}: {e}"),
    }
}

/// Answers each request with `ok`; after `/last`, closes the connection
/// while it is parked, by a FIN or by a reset.
fn closing_upstream(reset: bool) -> Raw {
    Raw::start(move |mut p| {
        while let Some(head) = p.head() {
            p.write(OK);
            if head.starts_with("GET /last ") {
                std::thread::sleep(Duration::from_millis(50));
                if reset {
                    p.reset();
                }
                return;
            }
        }
    })
}

#[tokio::test]
async fn a_parked_connection_the_upstream_closed_is_not_handed_on() {
    for reset in [false, true] {
        let up = closing_upstream(reset);
        let upstream = upstream_at(up.addr);
        let first = upstream.pin();
        assert_eq!(answer(&first, "/one").await, "ok");
        assert_eq!(answer(&first, "/last").await, "ok");
        drop(first); // parks its connection
        tokio::time::sleep(Duration::from_millis(200)).await;
        let next = upstream.pin();
        assert_eq!(answer(&next, "/two").await, "ok", "reset: {reset}");
        assert_eq!(
            up.accepted(),
            2,
            "a new connection took it (reset: {reset})"
        );
        assert_eq!(
            up.heads(),
            [
                "GET /one HTTP/1.1",
                "GET /last HTTP/1.1",
                "GET /two HTTP/1.1"
            ],
            "each request went out once (reset: {reset})"
        );
    }
}

#[tokio::test]
async fn a_request_no_connection_took_is_sent_again_on_a_new_one_once() {
    // The keep-alive race, forced: the parked connection passes the check
    // at hand-over and still takes nothing (its writing side is gone), as
    // when the upstream's reset lands between the check and the write.
    let up = Raw::start(|mut p| {
        while p.head().is_some() {
            p.write(OK);
        }
        p.hold();
    });
    let upstream = upstream_at(up.addr);
    let first = upstream.pin();
    assert_eq!(answer(&first, "/one").await, "ok");
    drop(first);
    let mut parked = upstream.unpark().expect("parked");
    socket2::SockRef::from(parked.tcp())
        .shutdown(std::net::Shutdown::Write)
        .unwrap();
    assert!(parked.is_fit().await, "the check cannot see it");
    upstream.park(parked);
    let next = upstream.pin();
    assert_eq!(answer(&next, "/two").await, "ok");
    assert_eq!(up.accepted(), 2);
    assert_eq!(up.heads(), ["GET /one HTTP/1.1", "GET /two HTTP/1.1"]);
}

#[test]
fn the_log_line_names_every_cause_once() {
    use crate::telemetry::Chain;
    let e = UpstreamError::Protocol(ExchangeFailure::Wire(wire::WireError::Coding));
    assert_eq!(
        Chain(&e).to_string(),
        "upstream protocol error: reading the response: \
         transfer coding other than a single `chunked` in the response"
    );
    let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
    let e = UpstreamError::Protocol(ExchangeFailure::Io("reading the response", reset));
    assert_eq!(
        Chain(&e).to_string(),
        "upstream protocol error: reading the response: connection reset"
    );
    let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    let e = UpstreamError::Connect(ConnectError::Tcp {
        host: "cms".into(),
        port: 1337,
        source: refused,
    });
    assert_eq!(
        Chain(&e).to_string(),
        "upstream unreachable: connecting to cms:1337: connection refused"
    );
}
