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

#[test]
fn response_framing_follows_rfc_9112() {
    use BodyFraming::*;
    let cases: &[(&Method, &str, Result<BodyFraming, WireError>, bool)] = &[
        (
            &Method::GET,
            "200 OK\r\nContent-Length: 3",
            Ok(Length(3)),
            true,
        ),
        (&Method::GET, "200 OK\r\nContent-Length: 0", Ok(Empty), true),
        (
            &Method::HEAD,
            "200 OK\r\nContent-Length: 3",
            Ok(Empty),
            true,
        ),
        (
            &Method::GET,
            "204 No Content\r\nContent-Length: 3",
            Ok(Empty),
            true,
        ),
        (&Method::GET, "304 Not Modified", Ok(Empty), true),
        (
            &Method::GET,
            "101 Switching Protocols\r\nUpgrade: websocket",
            Ok(Empty),
            true,
        ),
        (
            &Method::GET,
            "200 OK\r\nTransfer-Encoding: chunked",
            Ok(Chunked),
            true,
        ),
        (
            &Method::GET,
            "200 OK\r\nTransfer-Encoding: gzip, Chunked",
            Ok(Chunked),
            true,
        ),
        // Chunked wins over a length; a length then means nothing.
        (
            &Method::GET,
            "200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked",
            Ok(Chunked),
            true,
        ),
        (
            &Method::GET,
            "200 OK\r\nTransfer-Encoding: chunked, gzip",
            Ok(UntilClose),
            false,
        ),
        (&Method::GET, "200 OK", Ok(UntilClose), false),
        (
            &Method::GET,
            "200 OK\r\nContent-Length: 3\r\nContent-Length: 3",
            Ok(Length(3)),
            true,
        ),
        (
            &Method::GET,
            "200 OK\r\nContent-Length: 3, 3",
            Ok(Length(3)),
            true,
        ),
        (
            &Method::GET,
            "200 OK\r\nContent-Length: 3\r\nContent-Length: 4",
            Err(WireError::Length),
            true,
        ),
        (
            &Method::GET,
            "200 OK\r\nContent-Length: -1",
            Err(WireError::Length),
            true,
        ),
        (
            &Method::GET,
            "200 OK\r\nContent-Length: +3",
            Err(WireError::Length),
            true,
        ),
        (
            &Method::GET,
            "200 OK\r\nContent-Length: 99999999999999999999",
            Err(WireError::Length),
            true,
        ),
        (
            &Method::GET,
            "200 OK\r\nContent-Length: 3\r\nConnection: close",
            Ok(Length(3)),
            false,
        ),
        (
            &Method::GET,
            "200 OK\r\nContent-Length: 3\r\nConnection: Keep-Alive, CLOSE",
            Ok(Length(3)),
            false,
        ),
    ];
    for (method, head, want, keep) in cases {
        let raw = format!("HTTP/1.1 {head}\r\n\r\n");
        let (r, _) = parse(&raw, method);
        match (r.map(|h| h.unwrap()), want) {
            (Ok(h), Ok(w)) => {
                assert_eq!(h.framing, *w, "{head}");
                assert_eq!(h.keep_alive, *keep, "{head}");
            }
            (Err(e), Err(w)) => assert_eq!(e, *w, "{head}"),
            (got, _) => panic!("{head}: {:?}", got.map(|h| h.framing)),
        }
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
