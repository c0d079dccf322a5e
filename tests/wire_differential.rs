//! The gateway's HTTP/1.1 client against hyper's: every framing row of the
//! table the upstream client follows, played by a raw upstream to both the
//! gateway (with a client in front of it) and hyper's own client, and the
//! status, end-to-end headers, body and trailers each delivers compared.
//! Where they must differ by design (the gateway answers 502 where hyper
//! passes on bytes it cannot vouch for), the row says how and why.

// Test code: a failure here is the test failing, so it may unwrap.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a client was given for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// A response: status, end-to-end headers (sorted), the body or `None`
    /// when it broke off, and trailer fields.
    Answer {
        status: u16,
        headers: Vec<(String, String)>,
        body: Option<String>,
        trailers: Vec<(String, String)>,
    },
    /// No response: hyper's client refused the head; the gateway answered
    /// its own 502 (`BadGatewayError`).
    Refused,
    /// The gateway closed the client connection without a response.
    Closed,
}

/// One row: a name (the path the raw upstream answers on), the method,
/// the bytes the upstream writes, whether it closes after them, what the
/// gateway's client gives, and what hyper's gives when that differs (with
/// the reason).
struct Row {
    name: &'static str,
    method: &'static str,
    raw: Vec<u8>,
    close: bool,
    authgate: Seen,
    hyper: Option<(Seen, &'static str)>,
}

fn answer(status: u16, headers: &[(&str, &str)], body: Option<&str>) -> Seen {
    answer_with_trailers(status, headers, body, &[])
}

fn answer_with_trailers(
    status: u16,
    headers: &[(&str, &str)],
    body: Option<&str>,
    trailers: &[(&str, &str)],
) -> Seen {
    let pairs = |l: &[(&str, &str)]| {
        let mut v: Vec<_> = l
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        v.sort();
        v
    };
    Seen::Answer {
        status,
        headers: pairs(headers),
        body: body.map(str::to_owned),
        trailers: pairs(trailers),
    }
}

fn rows() -> &'static [Row] {
    static ROWS: std::sync::OnceLock<Vec<Row>> = std::sync::OnceLock::new();
    ROWS.get_or_init(table)
}

fn table() -> Vec<Row> {
    let mut rows = framed();
    rows.extend(coded());
    rows.extend(broken());
    rows
}

fn row(name: &'static str, method: &'static str, raw: &[u8], close: bool, authgate: Seen) -> Row {
    Row {
        name,
        method,
        raw: raw.to_vec(),
        close,
        authgate,
        hyper: None,
    }
}

fn refused_by_authgate(
    name: &'static str,
    raw: &[u8],
    close: bool,
    hyper: Seen,
    why: &'static str,
) -> Row {
    Row {
        hyper: Some((hyper, why)),
        ..row(name, "GET", raw, close, Seen::Refused)
    }
}

/// Bodies framed as HTTP/1.1 allows: by length, chunked, to the close,
/// or none (HEAD, 1xx, 204, 304).
#[rustfmt::skip]
fn framed() -> Vec<Row> {
    vec![
        row("length", "GET", b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: 1\r\n\r\nhello", false,
            answer(200, &[("content-length", "5"), ("x-a", "1")], Some("hello"))),
        row("length-zero", "GET", b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", false,
            answer(200, &[("content-length", "0")], Some(""))),
        Row {
            hyper: Some((
                answer(200, &[("content-length", "2"), ("content-length", "2")], Some("ok")),
                "the gateway passes both lines on; its client side (hyper's server) \
                 writes the agreeing length once",
            )),
            ..row("length-repeated", "GET", b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nok", false,
                answer(200, &[("content-length", "2")], Some("ok")))
        },
        row("no-reason-phrase", "GET", b"HTTP/1.1 200 \r\ncontent-length: 2\r\n\r\nok", false,
            answer(200, &[("content-length", "2")], Some("ok"))),
        row("chunked", "GET", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", false,
            answer(200, &[], Some("hello world"))),
        Row {
            hyper: Some((
                answer_with_trailers(200, &[], Some("hello world"), &[("x-t", "t")]),
                "hyper hands on the trailer fields; the gateway does not forward trailers \
                 (config.toml: `trailers are not forwarded`)",
            )),
            ..row("chunked-ext-trailers", "GET", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-t\r\n\r\n5;a=1;b=\"q\"\r\nhello\r\n6 ; c\r\n world\r\n0\r\nx-t: t\r\n\r\n", false,
                answer(200, &[], Some("hello world")))
        },
        Row {
            hyper: Some((
                answer(200, &[("content-length", "5"), ("x-a", "1")], Some("0123456789")),
                "hyper keeps the overridden Content-Length in the map it returns; the \
                 gateway removes it, as RFC 9112 section 6.3 requires of an intermediary",
            )),
            ..row("cl-te", "GET", b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\nx-a: 1\r\n\r\na\r\n0123456789\r\n0\r\n\r\n", false,
                answer(200, &[("x-a", "1")], Some("0123456789")))
        },
        row("close-delimited", "GET", b"HTTP/1.1 200 OK\r\nx-a: 1\r\n\r\nuntil the end", true,
            answer(200, &[("x-a", "1")], Some("until the end"))),
        row("interim", "GET", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", false,
            answer(200, &[("content-length", "2")], Some("ok"))),
        row("204-with-body", "GET", b"HTTP/1.1 204 No Content\r\nx-a: 1\r\n\r\nabc", false,
            answer(204, &[("x-a", "1")], Some(""))),
        Row {
            hyper: Some((
                answer(304, &[("content-length", "3"), ("etag", "\"e\"")], Some("")),
                "the gateway passes the 304's Content-Length on; its client side \
                 (hyper's server) does not write one on a 304",
            )),
            ..row("304-with-length", "GET", b"HTTP/1.1 304 Not Modified\r\ncontent-length: 3\r\netag: \"e\"\r\n\r\nabc", false,
                answer(304, &[("etag", "\"e\"")], Some("")))
        },
        row("head", "HEAD", b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", false,
            answer(200, &[("content-length", "5")], Some(""))),
        row("head-chunked", "HEAD", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", false,
            answer(200, &[], Some(""))),
        row("connection-names", "GET", b"HTTP/1.1 200 OK\r\nconnection: x-secret\r\nx-secret: s\r\nkeep-alive: timeout=5\r\ncontent-length: 2\r\n\r\nok", false,
            answer(200, &[("content-length", "2")], Some("ok"))),
        row("connection-close", "GET", b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok", true,
            answer(200, &[("content-length", "2")], Some("ok"))),
    ]
}

/// Transfer codings, and Transfer-Encoding in HTTP/1.0.
#[rustfmt::skip]
fn coded() -> Vec<Row> {
    vec![
        refused_by_authgate("gzip-chunked", b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n3\r\nGZ!\r\n0\r\n\r\n", false,
            answer(200, &[], Some("GZ!")),
            "hyper passes on the still gzip-coded bytes (its Transfer-Encoding says so to \
             its caller, but a proxy drops that header as hop-by-hop): the gateway refuses"),
        refused_by_authgate("gzip", b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nGZ!", true,
            answer(200, &[], Some("GZ!")),
            "hyper reads a non-chunked coding to the close, as RFC 9112 section 6.3 \
             allows a client; the coded bytes would reach the gateway's client unmarked"),
        refused_by_authgate("chunked-chunked", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, chunked\r\n\r\nc\r\n2\r\nab\r\n0\r\n\r\n\r\n0\r\n\r\n", false,
            answer(200, &[], Some("2\r\nab\r\n0\r\n\r\n")),
            "hyper checks only that chunked is last and decodes once, passing on bytes \
             still chunked once more; chunked twice is not allowed (RFC 9112 section 6.1)"),
        refused_by_authgate("identity", b"HTTP/1.1 200 OK\r\ntransfer-encoding: identity\r\ncontent-length: 2\r\n\r\nok", true,
            answer(200, &[("content-length", "2")], Some("ok")),
            "`identity` is no transfer coding since RFC 7230; hyper reads to the close"),
        refused_by_authgate("chunked-gzip", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\nGZ!", true,
            answer(200, &[], Some("GZ!")),
            "chunked not last: hyper reads to the close and passes the coded bytes on"),
        refused_by_authgate("te-two-lines", b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n3\r\nGZ!\r\n0\r\n\r\n", false,
            answer(200, &[], Some("GZ!")),
            "the same list over two lines (RFC 9110 section 5.3): hyper decodes the chunked \
             and passes on the gzip-coded bytes"),
        refused_by_authgate("te-empty", b"HTTP/1.1 200 OK\r\ntransfer-encoding: \r\ncontent-length: 2\r\n\r\nok", true,
            answer(200, &[("content-length", "2")], Some("ok")),
            "a Transfer-Encoding naming no coding: hyper reads to the close, ignoring the \
             length; the gateway takes it as faulty framing"),
        row("te-empty-elements", "GET", b"HTTP/1.1 200 OK\r\ntransfer-encoding: , chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", false,
            answer(200, &[], Some("ok"))),
        Row {
            hyper: Some((
                answer(200, &[("x-a", "1")], Some("2\r\nok\r\n0\r\n\r\n")),
                "an empty element after `chunked` (RFC 9110 section 5.6.1: ignored): hyper \
                 takes the last element, empty, as the coding, reads to the close and \
                 passes on the chunked framing as the body",
            )),
            close: true,
            ..row("te-trailing-comma", "GET", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked,\r\nx-a: 1\r\n\r\n2\r\nok\r\n0\r\n\r\n", false,
                answer(200, &[("x-a", "1")], Some("ok")))
        },
        Row {
            hyper: Some((
                answer(204, &[("content-length", "3"), ("x-a", "1")], Some("")),
                "no body either way (a 204); the gateway removes the Content-Length a \
                 Transfer-Encoding overrides, hyper keeps it",
            )),
            ..row("204-te-and-length", "GET", b"HTTP/1.1 204 No Content\r\ntransfer-encoding: gzip\r\ncontent-length: 3\r\nx-a: 1\r\n\r\n", false,
                answer(204, &[("x-a", "1")], Some("")))
        },
        Row {
            method: "HEAD",
            hyper: Some((
                answer(200, &[], Some("")),
                "hyper reads no body for HEAD before it looks at Transfer-Encoding; the \
                 gateway takes Transfer-Encoding in HTTP/1.0 as faulty framing whatever \
                 the method (RFC 9112 section 6.1)",
            )),
            ..row("http10-te-head", "HEAD", b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", false,
                Seen::Refused)
        },
        row("http10-te", "GET", b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", false,
            Seen::Refused),
        row("http10-length", "GET", b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok", false,
            answer(200, &[("content-length", "2")], Some("ok"))),
        row("http10-close-delimited", "GET", b"HTTP/1.0 200 OK\r\n\r\nuntil the end", true,
            answer(200, &[], Some("until the end"))),
    ]
}

/// Heads and bodies that break the rules.
#[rustfmt::skip]
fn broken() -> Vec<Row> {
    let many_headers = {
        let lines: String = (0..110).map(|i| format!("x-h{i}: v\r\n")).collect();
        format!("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n{lines}\r\nok").into_bytes()
    };
    let many_answer = {
        let mut h: Vec<(String, String)> = (0..110).map(|i| (format!("x-h{i}"), "v".into())).collect();
        h.push(("content-length".into(), "2".into()));
        h.sort();
        Seen::Answer {
            status: 200,
            headers: h,
            body: Some("ok".into()),
            trailers: Vec::new(),
        }
    };
    vec![
        row("length-huge", "GET", b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\nok", false,
            Seen::Refused),
        row("length-conflict", "GET", b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok!", false,
            Seen::Refused),
        row("length-signed", "GET", b"HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\nok", false,
            Seen::Refused),
        row("cut-short", "GET", b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten..", true,
            answer(200, &[("content-length", "100")], None)),
        Row {
            hyper: Some((
                answer(200, &[], None),
                "both refuse the body; the gateway's fails at its first poll, and its client \
                 side (hyper's server) then closes the connection without writing the head",
            )),
            ..row("chunk-size-bad", "GET", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", false,
                Seen::Closed)
        },
        row("chunk-cut", "GET", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel", true,
            answer(200, &[], None)),
        row("obs-fold", "GET", b"HTTP/1.1 200 OK\r\nx-a: 1\r\n folded\r\ncontent-length: 2\r\n\r\nok", false,
            Seen::Refused),
        row("space-before-colon", "GET", b"HTTP/1.1 200 OK\r\ncontent-length : 2\r\n\r\nok", false,
            Seen::Refused),
        row("not-http", "GET", b"SSH-2.0-OpenSSH_9.2\r\n\r\n", true, Seen::Refused),
        Row {
            hyper: Some((
                Seen::Refused,
                "hyper's client takes at most 100 header lines by default; the gateway 128 \
                 (the client in front of the gateway is set to take 200)",
            )),
            ..row("110-headers", "GET", &many_headers, false, many_answer)
        },
    ]
}

/// The raw upstream: each request head's last path segment names the row
/// whose bytes it writes.
async fn serve(mut s: TcpStream) {
    let mut buf = Vec::new();
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let path = head.split(' ').nth(1).unwrap_or("");
        let name = path.rsplit('/').next().unwrap_or("");
        let Some(row) = rows().iter().find(|r| r.name == name) else {
            return;
        };
        if s.write_all(&row.raw).await.is_err() {
            return;
        }
        if row.close {
            // What was written is read before the close.
            tokio::time::sleep(Duration::from_millis(50)).await;
            return;
        }
    }
}

/// Filter a response's headers down to the end-to-end ones: no
/// hop-by-hop header nor one `Connection` names, and not what the gateway
/// adds to every response (`date`, `x-request-id`).
fn end_to_end(headers: &http::HeaderMap) -> Vec<(String, String)> {
    let named: Vec<String> = headers
        .get_all("connection")
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("").split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    let mut v: Vec<(String, String)> = headers
        .iter()
        .filter(|(n, _)| {
            !authgate::forward::hop::is_hop_by_hop(n.as_str())
                && !named.iter().any(|c| c == n.as_str())
                && !matches!(n.as_str(), "date" | "x-request-id")
        })
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

/// One request over a new connection to `addr` with hyper's client, as
/// configured by default or taking up to `max_headers` header lines.
async fn fetch(
    addr: SocketAddr,
    method: &str,
    path: &str,
    max_headers: Option<usize>,
) -> Result<Seen, hyper::Error> {
    let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let mut builder = hyper::client::conn::http1::Builder::new();
    if let Some(n) = max_headers {
        builder.max_headers(n);
    }
    let (mut send, conn) = builder.handshake(io).await?;
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "cms")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await?;
    let status = resp.status().as_u16();
    let headers = end_to_end(resp.headers());
    let (body, trailers) = match resp.into_body().collect().await {
        Ok(c) => {
            let trailers = c.trailers().map(end_to_end).unwrap_or_default();
            (
                Some(String::from_utf8_lossy(&c.to_bytes()).into_owned()),
                trailers,
            )
        }
        Err(_) => (None, Vec::new()),
    };
    Ok(Seen::Answer {
        status,
        headers,
        body,
        trailers,
    })
}

/// Through the gateway: a 502 is its own refusal (no row has the upstream
/// answer 502; `tests/wire.rs` checks the envelope).
async fn via_gateway(g: &Gateway, row: &Row) -> Seen {
    let path = format!("/uploads/{}", row.name);
    let Ok(seen) = fetch(g.addr, row.method, &path, Some(200)).await else {
        return Seen::Closed;
    };
    match seen {
        Seen::Answer { status: 502, .. } => Seen::Refused,
        _ => seen,
    }
}

/// Straight to the upstream: a head hyper refuses is a refusal.
async fn via_hyper(upstream: SocketAddr, row: &Row) -> Seen {
    fetch(
        upstream,
        row.method,
        &format!("/uploads/{}", row.name),
        None,
    )
    .await
    .unwrap_or(Seen::Refused)
}

fn short(s: &Seen) -> String {
    match s {
        Seen::Refused => "refused".into(),
        Seen::Closed => "connection closed, no response".into(),
        Seen::Answer { status, body, .. } => match body {
            Some(b) => format!("{status} {b:?}"),
            None => format!("{status}, body breaks off"),
        },
    }
}

#[tokio::test]
async fn every_framing_row_reaches_the_client_as_hypers_client_reads_it_or_differs_by_design() {
    let env = Env::new().await;
    let (up, _) = raw_upstream(serve).await;
    let mut cfg = env.config();
    cfg.upstream.url = format!("http://{up}").parse().unwrap();
    let g = Gateway::start(cfg).await;
    let mut table = vec!["| row | authgate | hyper | same? |".to_owned()];
    let mut failures = Vec::new();
    for row in rows() {
        let limit = Duration::from_secs(5);
        let ours = tokio::time::timeout(limit, via_gateway(&g, row))
            .await
            .unwrap_or_else(|_| panic!("{}: the gateway hung", row.name));
        let theirs = tokio::time::timeout(limit, via_hyper(up, row))
            .await
            .unwrap_or_else(|_| panic!("{}: hyper hung", row.name));
        let mut wrong = |what: String| failures.push(format!("{}: {what}", row.name));
        if ours != row.authgate {
            wrong(format!("the gateway gave {ours:?}, not {:?}", row.authgate));
        }
        let same = match &row.hyper {
            None => {
                if theirs != ours {
                    wrong(format!(
                        "hyper's client gave {theirs:?}, the gateway {ours:?}"
                    ));
                }
                "same".to_owned()
            }
            Some((want, why)) => {
                if &theirs != want {
                    wrong(format!("hyper gave {theirs:?}, not {want:?}"));
                }
                if theirs == ours {
                    wrong("said to differ, but does not".into());
                }
                format!("differs: {why}")
            }
        };
        table.push(format!(
            "| {} | {} | {} | {same} |",
            row.name,
            short(&ours),
            short(&theirs)
        ));
    }
    // The table, for the record (`--nocapture`).
    println!("{}", table.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
