use super::*;

fn hdrs(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

/// Behind a load balancer in 10.0.0.0/8, which is the peer.
fn behind_a_proxy() -> (TrustedProxies, SocketAddr) {
    let f = TrustedProxies {
        proxies: vec![Cidr::parse("10.0.0.0/8").unwrap()],
        headers: vec![],
    };
    (f, "10.0.0.5:4000".parse().unwrap())
}

#[test]
fn an_untrusted_peer_is_the_client() {
    let f = TrustedProxies::default();
    let peer: SocketAddr = "203.0.113.9:4000".parse().unwrap();
    let h = hdrs(&[("x-forwarded-for", "1.1.1.1"), ("x-real-ip", "2.2.2.2")]);
    assert_eq!(f.client_ip(&h, peer), peer.ip());
}

#[test]
fn a_hop_that_is_no_address_ends_the_chain() {
    let (f, peer) = behind_a_proxy();
    let client = |xff: &[&str]| {
        let pairs: Vec<(&str, &str)> = xff.iter().map(|v| ("x-forwarded-for", *v)).collect();
        f.client_ip(&hdrs(&pairs), peer)
    };
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    // (the chain as sent, the client)
    let rows: &[(&[&str], IpAddr)] = &[
        (&["198.51.100.7"], ip("198.51.100.7")),
        (&["203.0.113.66, 198.51.100.7"], ip("198.51.100.7")),
        (
            &["203.0.113.66", "198.51.100.7, 10.0.0.9"],
            ip("198.51.100.7"),
        ),
        (&["198.51.100.7:4711"], ip("198.51.100.7")),
        (&["[2001:db8::7]:4711"], ip("2001:db8::7")),
        // What is left of an entry that is no address is nobody's word.
        (&["203.0.113.66, unknown"], peer.ip()),
        (&["203.0.113.66, unknown, 10.0.0.9"], peer.ip()),
        (&["203.0.113.66", ""], peer.ip()),
        (&["10.0.0.9"], peer.ip()),
        (&[], peer.ip()),
    ];
    for (xff, want) in rows {
        assert_eq!(client(xff), *want, "{xff:?}");
    }
    let mut h = HeaderMap::new();
    h.append("x-forwarded-for", HeaderValue::from_static("203.0.113.66"));
    h.append(
        "x-forwarded-for",
        HeaderValue::from_bytes(b"198.51.100.\xff").unwrap(),
    );
    assert_eq!(
        f.client_ip(&h, peer),
        peer.ip(),
        "a header that is not text"
    );
}

#[test]
fn lines_for_an_untrusted_and_a_trusted_peer() {
    let (f, proxy) = behind_a_proxy();
    let h = hdrs(&[
        ("x-forwarded-for", "198.51.100.7"),
        ("x-forwarded-for", "10.0.0.9"),
        ("x-forwarded-proto", "https"),
        ("forwarded", "for=198.51.100.7"),
    ]);
    let host = HeaderValue::from_static("cms.example");
    let client = Peer::new("203.0.113.9:4000".parse().unwrap(), false);
    let mut out = AddedHeaders::new();
    f.write(&h, &client, f.trusts(&client), Some(&host), &mut out);
    assert_eq!(
        out.wire(),
        &b"x-forwarded-for: 203.0.113.9\r\nforwarded: for=203.0.113.9;proto=http\r\n\
           x-forwarded-proto: http\r\nx-forwarded-host: cms.example\r\n"[..]
    );
    let lb = Peer::new(proxy, false);
    let mut out = AddedHeaders::new();
    f.write(&h, &lb, f.trusts(&lb), Some(&host), &mut out);
    assert_eq!(
        out.wire(),
        &b"x-forwarded-for: 198.51.100.7, 10.0.0.9, 10.0.0.5\r\n\
           forwarded: for=198.51.100.7, for=10.0.0.5;proto=http\r\n\
           x-forwarded-proto: https\r\nx-forwarded-host: cms.example\r\n"[..]
    );
}

#[test]
fn overriding_names() {
    for n in OVERRIDING_HEADERS {
        assert!(is_overriding(n), "{n}");
    }
    for n in ["x-forwarded-prefix", "x-forwarded-port", "x-forwarded"] {
        assert!(is_overriding(n), "{n}");
    }
    for n in [
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "cookie",
    ] {
        assert!(!is_overriding(n), "{n}");
    }
}
