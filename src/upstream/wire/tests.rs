use super::*;

fn head_of(
    method: &Method,
    target: &str,
    headers: &[(&str, &str)],
    framing: RequestFraming,
) -> String {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let mut out = Vec::new();
    let host = HeaderValue::from_static("cms:1337");
    write_request_head(
        &mut out,
        method,
        target,
        &host,
        &map,
        b"x-added: 1\r\n",
        framing,
    );
    String::from_utf8(out).unwrap()
}

#[test]
fn a_request_head_is_written_with_its_own_framing() {
    let h = head_of(
        &Method::POST,
        "/api/articles?x=1",
        &[
            ("authorization", "Bearer k"),
            ("content-length", "99"),
            ("transfer-encoding", "chunked"),
            ("x-a", "1"),
            ("x-a", "2"),
        ],
        RequestFraming::Length(12),
    );
    assert_eq!(
        h,
        "POST /api/articles?x=1 HTTP/1.1\r\nhost: cms:1337\r\nauthorization: Bearer k\r\nx-a: 1\r\nx-a: 2\r\nx-added: 1\r\ncontent-length: 12\r\n\r\n"
    );
    let h = head_of(&Method::PUT, "/", &[], RequestFraming::Chunked);
    assert!(h.ends_with("\r\ntransfer-encoding: chunked\r\n\r\n"), "{h}");
    let h = head_of(&Method::GET, "/", &[], RequestFraming::None);
    assert_eq!(h, "GET / HTTP/1.1\r\nhost: cms:1337\r\nx-added: 1\r\n\r\n");
}

#[test]
fn request_framing_follows_the_body() {
    use RequestFraming::{Chunked, Length};
    let cases = [
        // method, client said a length, body at its end, exact length
        (Method::GET, false, true, Some(0), RequestFraming::None),
        (Method::GET, true, true, Some(0), Length(0)),
        (Method::POST, false, true, Some(0), Length(0)),
        (Method::PATCH, false, true, None, Length(0)),
        (Method::DELETE, false, true, None, RequestFraming::None),
        (Method::POST, true, false, Some(5), Length(5)),
        (Method::POST, false, false, Option::None, Chunked),
        (Method::GET, false, false, Option::None, Chunked),
    ];
    for (m, said, end, exact, want) in cases {
        assert_eq!(
            RequestFraming::for_body(&m, said, end, exact),
            want,
            "{m} {said} {end} {exact:?}"
        );
    }
}

#[test]
fn decimals_are_written_exactly() {
    for n in [0u64, 7, 10, 99, 1000, 65_536, u64::MAX] {
        let mut v = Vec::new();
        write_decimal(&mut v, n);
        assert_eq!(String::from_utf8(v).unwrap(), n.to_string());
    }
    assert_eq!(chunk_header(255), b"ff\r\n");
}

fn parse(raw: &str, method: &Method) -> (Result<Option<ResponseHead>, WireError>, BytesMut) {
    let mut buf = BytesMut::from(raw.as_bytes());
    let r = parse_response_head(&mut buf, method);
    (r, buf)
}

#[test]
fn a_response_head_is_read_and_taken_out_of_the_buffer() {
    let raw = "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 5\r\nX-Two: a\r\nx-two: b\r\n\r\nhello";
    let (r, rest) = parse(raw, &Method::GET);
    let head = r.unwrap().unwrap();
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.version, Version::HTTP_11);
    assert_eq!(head.framing, BodyFraming::Length(5));
    assert!(head.keep_alive);
    assert_eq!(head.headers["server"], "nginx");
    let two: Vec<_> = head.headers.get_all("x-two").iter().collect();
    assert_eq!(two, ["a", "b"]);
    assert_eq!(&rest[..], b"hello");
}

#[test]
fn a_partial_head_asks_for_more_and_leaves_the_buffer_alone() {
    let (r, rest) = parse("HTTP/1.1 200 OK\r\nContent-Le", &Method::GET);
    assert_eq!(r.unwrap().map(|h| h.status), None);
    assert_eq!(rest.len(), 27);
}

/// What goes out for a raw response: the header lines passed on, the body
/// a client receives (read by the framing the head gave, with the decoder
/// `conn` uses), what is left in the buffer after it, and whether the
/// connection may carry another request.
#[derive(Debug, PartialEq)]
struct Out {
    headers: Vec<(String, String)>,
    body: String,
    left: String,
    keep: bool,
}

fn deliver(raw: &str, method: &Method) -> Result<Out, WireError> {
    let mut buf = BytesMut::from(raw.as_bytes());
    let head = parse_response_head(&mut buf, method)?.expect("a whole head");
    let body = match head.framing {
        BodyFraming::Empty => Bytes::new().to_vec(),
        BodyFraming::Length(mut n) => {
            let b = take_up_to(&mut buf, &mut n).to_vec();
            assert_eq!(n, 0, "the rows carry whole bodies: {raw}");
            b
        }
        BodyFraming::Chunked => {
            let mut state = Chunked::Size;
            let mut out = Vec::new();
            while let Some(d) = state.step(&mut buf)? {
                out.extend_from_slice(&d);
            }
            assert_eq!(state, Chunked::Done, "{raw}");
            out
        }
        BodyFraming::UntilClose => buf.split().to_vec(),
    };
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
    Ok(Out {
        headers: head
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), text(v.as_bytes())))
            .collect(),
        body: text(&body),
        left: text(&buf),
        keep: head.keep_alive,
    })
}

/// One row: the request method, the raw response, and what goes out
/// (header lines, body, left in the buffer, kept alive), or the refusal.
type Row = (
    &'static Method,
    &'static str,
    Result<
        (
            &'static [(&'static str, &'static str)],
            &'static str,
            &'static str,
            bool,
        ),
        WireError,
    >,
);

const CL3: &[(&str, &str)] = &[("content-length", "3")];

/// Every RFC 9112 framing rule the client applies (section 6.1 for
/// Transfer-Encoding, 6.3 for the body length, 9.3 for persistence), each
/// with what it passes on.
#[rustfmt::skip]
const FRAMING: &[Row] = &[
    // 6.3 (5): a length.
    (&Method::GET, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcNEXT", Ok((CL3, "abc", "NEXT", true))),
    (&Method::GET, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", Ok((&[("content-length", "0")], "", "", true))),
    // Repeats that agree are one length; any other is refused (6.3 (5)).
    (&Method::GET, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", Ok((&[("content-length", "3"), ("content-length", "3")], "abc", "", true))),
    (&Method::GET, "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc", Ok((&[("content-length", "3, 3")], "abc", "", true))),
    (&Method::GET, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", Err(WireError::Length)),
    (&Method::GET, "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", Err(WireError::Length)),
    (&Method::GET, "HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc", Err(WireError::Length)),
    (&Method::GET, "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", Err(WireError::Length)),
    // 6.3 (1): no body for HEAD, 1xx, 204, 304, whatever the head says;
    // bytes after such a head are not a body (and stay unread).
    (&Method::HEAD, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", Ok((CL3, "", "", true))),
    (&Method::GET, "HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\nabc", Ok((CL3, "", "abc", true))),
    (&Method::GET, "HTTP/1.1 304 Not Modified\r\n\r\n", Ok((&[], "", "", true))),
    (&Method::GET, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n", Ok((&[("link", "</a.css>")], "", "", true))),
    (&Method::HEAD, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", Ok((&[], "", "", true))),
    (&Method::GET, "HTTP/1.1 204 No Content\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\n", Ok((&[], "", "", false))),
    // A 101 keeps the headers that describe the tunnel.
    (&Method::GET, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", Ok((&[("upgrade", "websocket"), ("connection", "Upgrade")], "", "", true))),
    // 6.3 (4): chunked when it is the one coding; its framing stops here
    // (no Transfer-Encoding, no trailer fields passed on).
    (&Method::GET, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nNEXT", Ok((&[], "abc", "NEXT", true))),
    (&Method::GET, "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\nX-A: 1\r\n\r\n2;name=val;x=\"q\"\r\nab\r\n1 ; e\r\nc\r\n0\r\nX-Trailer: t\r\nX-Other: o\r\n\r\n", Ok((&[("x-a", "1")], "abc", "", true))),
    // Empty list elements are ignored (RFC 9110 section 5.6.1).
    (&Method::GET, "HTTP/1.1 200 OK\r\nTransfer-Encoding: , chunked,\r\n\r\n0\r\n\r\n", Ok((&[], "", "", true))),
    // 6.3 (3): a Transfer-Encoding overrides a Content-Length, which an
    // intermediary must remove; the connection is not used again.
    (&Method::GET, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n0\r\n\r\n", Ok((&[], "0123456789", "", false))),
    (&Method::GET, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 50\r\nX-A: 1\r\n\r\n1\r\nx\r\n0\r\n\r\n", Ok((&[("x-a", "1")], "x", "", false))),
    // 6.3 (4): any other coding, or chunked more than once or not last:
    // refused, never passed on coded.
    (&Method::GET, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", Err(WireError::Coding)),
    (&Method::GET, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", Err(WireError::Coding)),
    (&Method::GET, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\ncoded", Err(WireError::Coding)),
    (&Method::GET, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", Err(WireError::Coding)),
    (&Method::GET, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", Err(WireError::Coding)),
    (&Method::GET, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", Err(WireError::Coding)),
    (&Method::GET, "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nContent-Length: 3\r\n\r\nabc", Err(WireError::Coding)),
    (&Method::GET, "HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\nContent-Length: 3\r\n\r\nabc", Err(WireError::Coding)),
    // 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing, length or not.
    (&Method::GET, "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", Err(WireError::Http10Coding)),
    (&Method::GET, "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc", Err(WireError::Http10Coding)),
    (&Method::HEAD, "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", Err(WireError::Http10Coding)),
    // 6.3 (8): neither: the body runs to the close, which ends the
    // connection.
    (&Method::GET, "HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nuntil the end", Ok((&[("x-a", "1")], "until the end", "", false))),
    (&Method::GET, "HTTP/1.0 200 OK\r\n\r\nuntil the end", Ok((&[], "until the end", "", false))),
    // 9.3: HTTP/1.0 and `Connection: close` end the connection after the
    // response (the `Connection` line stops here).
    (&Method::GET, "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc", Ok((CL3, "abc", "", false))),
    (&Method::GET, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc", Ok((CL3, "abc", "", false))),
    (&Method::GET, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: Keep-Alive, CLOSE\r\n\r\nabc", Ok((CL3, "abc", "", false))),
];

#[test]
fn response_framing_follows_rfc_9112_and_passes_on_the_right_bytes() {
    for (method, raw, want) in FRAMING {
        let got = deliver(raw, method);
        let want = match want {
            Ok((headers, body, left, keep)) => Ok(Out {
                headers: headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
                body: body.to_string(),
                left: left.to_string(),
                keep: *keep,
            }),
            Err(e) => Err(e.clone()),
        };
        assert_eq!(got, want, "{method} {raw:?}");
    }
}

#[test]
fn http_1_0_responses_end_the_connection() {
    let (r, _) = parse("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", &Method::GET);
    let head = r.unwrap().unwrap();
    assert_eq!(head.version, Version::HTTP_10);
    assert!(!head.keep_alive);
}

#[test]
fn oversized_or_malformed_heads_are_refused() {
    let many: String = (0..MAX_HEADERS + 1)
        .map(|i| format!("x-{i}: v\r\n"))
        .collect();
    let (r, _) = parse(&format!("HTTP/1.1 200 OK\r\n{many}\r\n"), &Method::GET);
    assert_eq!(r.unwrap_err(), WireError::HeadTooLarge);
    let huge = format!("HTTP/1.1 200 OK\r\nx-big: {}", "a".repeat(MAX_HEAD + 1));
    let (r, _) = parse(&huge, &Method::GET);
    assert_eq!(r.unwrap_err(), WireError::HeadTooLarge);
    let (r, _) = parse("HTTP/1.1 2000 OK\r\n\r\n", &Method::GET);
    assert!(matches!(r, Err(WireError::Head(_))));
    let (r, _) = parse("HTTP/1.1 200 OK\r\nbad header\r\n\r\n", &Method::GET);
    assert!(matches!(r, Err(WireError::Head(_))));
    let (r, _) = parse("SSH-2.0-OpenSSH\r\n\r\n", &Method::GET);
    assert!(matches!(r, Err(WireError::Head(_))));
}

/// Run a chunked decoder over `wire`, fed `step` bytes at a time.
fn dechunk(wire: &[u8], step: usize) -> Result<(Vec<u8>, Chunked, usize), WireError> {
    let mut state = Chunked::Size;
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in wire.chunks(step) {
        buf.extend_from_slice(piece);
        while let Some(d) = state.step(&mut buf)? {
            out.extend_from_slice(&d);
        }
    }
    Ok((out, state, buf.len()))
}

#[test]
fn chunked_bodies_decode_whatever_the_reads_split() {
    let wire = b"5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nx-trailer: t\r\n\r\nNEXT";
    for step in 1..=wire.len() {
        let (out, state, left) = dechunk(wire, step).unwrap();
        assert_eq!(out, b"hello 0123456789", "step {step}");
        assert_eq!(state, Chunked::Done, "step {step}");
        assert_eq!(left, 4, "what follows the body stays: step {step}");
    }
}

#[test]
fn broken_chunked_bodies_are_refused() {
    for wire in [
        &b"zz\r\nhello\r\n"[..],
        b"5\r\nhelloXX0\r\n\r\n",
        b"ffffffffffffffffff\r\n",
    ] {
        assert!(
            dechunk(wire, wire.len()).is_err(),
            "{}",
            String::from_utf8_lossy(wire)
        );
    }
    let long = [b"1;".as_slice(), &[b'a'; MAX_LINE]].concat();
    assert!(dechunk(&long, long.len()).is_err());
}

#[test]
fn hop_by_hop_headers_and_those_connection_names_stop_here_but_a_101_keeps_them() {
    let raw = "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: timeout=5\r\n\
               X-Secret: s\r\nTrailer: x\r\nUpgrade: h2c\r\nProxy-Authenticate: Basic\r\n\
               Content-Length: 0\r\nX-Kept: k\r\n\r\n";
    let (r, _) = parse(raw, &Method::GET);
    let head = r.unwrap().unwrap();
    let names: Vec<&str> = head.headers.keys().map(|k| k.as_str()).collect();
    assert_eq!(names, ["content-length", "x-kept"]);
    assert!(head.keep_alive);
    let raw =
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    let (r, _) = parse(raw, &Method::GET);
    let head = r.unwrap().unwrap();
    assert_eq!(head.headers["upgrade"], "websocket");
    assert_eq!(head.headers["connection"], "Upgrade");
}

#[test]
fn hop_by_hop_names_match_in_any_case() {
    for n in [
        "connection",
        "Keep-Alive",
        "TE",
        "transfer-encoding",
        "UPGRADE",
        "proxy-connection",
    ] {
        assert!(hop::is_hop_by_hop(n), "{n}");
    }
    for n in ["content-length", "te2", "x-upgrade", "trailers"] {
        assert!(!hop::is_hop_by_hop(n), "{n}");
    }
}
