use std::net::SocketAddr;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::Method;
use proptest::prelude::*;

use super::*;
use crate::model::ContentApiType;

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

fn forwarder(forwarding: Forwarding, signer: Option<Signer>, keep_auth: bool) -> Forwarder {
    Forwarder::new(
        IdentityNames::new("x-auth-").unwrap(),
        signer,
        keep_auth,
        &forwarding,
        Some(HeaderValue::from_static("127.0.0.1:1337")),
    )
}

fn behind(trusted_headers: &[&str]) -> Forwarding {
    Forwarding {
        trusted: vec![Cidr::parse("10.0.0.0/8").unwrap()],
        trusted_headers: trusted_headers
            .iter()
            .map(|n| HeaderName::from_bytes(n.as_bytes()).unwrap())
            .collect(),
        host: None,
    }
}

/// Run the pass; the head as the CMS would see it (kept headers, then the
/// added lines), as sorted `name: value` strings, and the `Host`.
fn forward(
    f: &Forwarder,
    peer: &str,
    h: &mut HeaderMap,
    allowed: Option<Allowed<'_>>,
) -> (Vec<String>, String) {
    forward_traced(f, peer, h, allowed, None)
}

/// [`forward`], for a request whose trace context the gateway writes.
fn forward_traced(
    f: &Forwarder,
    peer: &str,
    h: &mut HeaderMap,
    allowed: Option<Allowed<'_>>,
    trace: Option<crate::trace::Propagate<'_>>,
) -> (Vec<String>, String) {
    let peer = Peer::new(peer.parse::<SocketAddr>().unwrap(), false);
    let host = host::requested(http::Version::HTTP_11, &"/x".parse().unwrap(), h)
        .ok()
        .flatten();
    let out = Outgoing {
        peer: &peer,
        requested_host: host.as_ref(),
        request_id: &HeaderValue::from_static("rid"),
        path_and_query: "/api/articles?x=1",
        allowed,
        upgrade: false,
        trace,
    };
    let head = f.prepare(&Method::GET, h, out);
    let mut all: Vec<String> = h
        .iter()
        .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
        .collect();
    all.extend(
        head.added
            .lines()
            .map(|(k, v)| format!("{k}: {}", String::from_utf8_lossy(v))),
    );
    all.sort();
    (all, head.host.to_str().unwrap().to_owned())
}

#[test]
fn trace_context_is_the_clients_unless_the_gateway_records_the_request() {
    let f = forwarder(Forwarding::default(), None, false);
    let client = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let fields = [
        ("traceparent", client),
        ("tracestate", "a=1"),
        ("tracestate", "b=2"),
    ];
    let lines = |all: &[String], name: &str| -> Vec<String> {
        all.iter()
            .filter(|l| l.starts_with(&format!("{name}: ")))
            .cloned()
            .collect()
    };
    // Not recorded: as the client sent them.
    let (all, _) = forward(&f, "10.0.0.9:5555", &mut hdrs(&fields), None);
    assert_eq!(
        lines(&all, "traceparent"),
        [format!("traceparent: {client}")]
    );
    assert_eq!(
        lines(&all, "tracestate"),
        ["tracestate: a=1", "tracestate: b=2"]
    );
    // Recorded: the gateway's, the client's gone.
    let ours = crate::trace::TraceParent::parse(
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01",
    )
    .unwrap()
    .encode();
    for (state, want) in [
        (Some("a=1,b=2"), vec!["tracestate: a=1,b=2"]),
        (None, vec![]),
    ] {
        let trace = crate::trace::Propagate {
            traceparent: &ours,
            tracestate: state,
        };
        let (all, _) = forward_traced(&f, "10.0.0.9:5555", &mut hdrs(&fields), None, Some(trace));
        assert_eq!(
            lines(&all, "traceparent"),
            [format!("traceparent: {}", ours.as_str())]
        );
        assert_eq!(lines(&all, "tracestate"), want);
    }
}

#[test]
fn forwarding_headers_are_replaced() {
    let f = forwarder(Forwarding::default(), None, false);
    let mut h = hdrs(&[
        ("x-forwarded-for", "6.6.6.6"),
        ("forwarded", "for=6.6.6.6"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "admin.internal"),
        ("host", "cms.example"),
        ("x-auth-owner-id", "1"),
        ("authorization", "Bearer x"),
        ("x-request-id", "client-id"),
        ("x-keep", "1"),
    ]);
    let (head, host) = forward(&f, "10.0.0.9:5555", &mut h, None);
    assert_eq!(
        head,
        [
            "forwarded: for=10.0.0.9;proto=http",
            "x-forwarded-for: 10.0.0.9",
            "x-forwarded-host: cms.example",
            "x-forwarded-proto: http",
            "x-keep: 1",
            "x-request-id: rid",
        ]
    );
    assert_eq!(host, "cms.example");
}

#[test]
fn a_trusted_proxy_extends_the_chain_but_overrides_nothing() {
    let f = forwarder(behind(&[]), None, true);
    let mut h = hdrs(&[
        ("x-forwarded-for", "198.51.100.7, 10.0.0.9"),
        ("x-forwarded-proto", "https"),
        ("x-real-ip", "1.2.3.4"),
        ("x-original-url", "/admin/users"),
        ("x-http-method-override", "DELETE"),
        ("x-forwarded-prefix", "/admin"),
        ("host", "cms.example"),
    ]);
    let (head, _) = forward(&f, "10.0.0.5:4000", &mut h, None);
    assert_eq!(
        head,
        [
            "forwarded: for=10.0.0.5;proto=http",
            "x-forwarded-for: 198.51.100.7, 10.0.0.9, 10.0.0.5",
            "x-forwarded-host: cms.example",
            "x-forwarded-proto: https",
            "x-request-id: rid",
        ]
    );
    // An allow-listed header passes from the trusted proxy only.
    let f = forwarder(behind(&["x-real-ip"]), None, true);
    let mut h = hdrs(&[("x-real-ip", "1.2.3.4"), ("host", "a")]);
    let (head, _) = forward(&f, "10.0.0.5:4000", &mut h, None);
    assert!(head.contains(&"x-real-ip: 1.2.3.4".to_owned()), "{head:?}");
    let mut h = hdrs(&[("x-real-ip", "1.2.3.4"), ("host", "a")]);
    let (head, _) = forward(&f, "203.0.113.9:4000", &mut h, None);
    assert!(!head.iter().any(|l| l.starts_with("x-real-ip")), "{head:?}");
}

#[test]
fn hop_by_hop_and_connection_listed_headers_are_removed() {
    let f = forwarder(Forwarding::default(), None, true);
    let mut h = hdrs(&[
        ("connection", "keep-alive, x-auth-token-id, x-secret"),
        ("x-secret", "1"),
        ("te", "trailers"),
        ("upgrade", "h2c"),
        ("proxy-authorization", "Basic x"),
        ("x-keep", "1"),
        ("host", "a"),
    ]);
    let (head, _) = forward(&f, "10.0.0.9:1", &mut h, None);
    let names: Vec<&str> = head.iter().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(
        names,
        [
            "forwarded",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-proto",
            "x-keep",
            "x-request-id"
        ]
    );
}

#[test]
fn own_cookies_stay_home() {
    let f = forwarder(Forwarding::default(), None, true);
    let mut h = hdrs(&[
        ("cookie", "a=1; authgate_session=secret"),
        ("cookie", "__Host-authgate_session=secret"),
        ("cookie", "b=2"),
        ("host", "a"),
    ]);
    let (head, _) = forward(&f, "10.0.0.9:1", &mut h, None);
    let cookies: Vec<&String> = head.iter().filter(|l| l.starts_with("cookie")).collect();
    assert_eq!(cookies, ["cookie: a=1", "cookie: b=2"]);
}

#[test]
fn the_host_is_decided_once() {
    let fixed = Forwarding {
        host: Some(HeaderValue::from_static("cms.internal")),
        ..Forwarding::default()
    };
    let f = forwarder(fixed, None, true);
    let mut h = hdrs(&[("host", "evil.example")]);
    let (head, host) = forward(&f, "[::1]:1", &mut h, None);
    assert_eq!(host, "cms.internal");
    assert!(head.contains(&"x-forwarded-host: evil.example".to_owned()));
    assert!(!head.iter().any(|l| l.starts_with("host:")));
    // No Host asked for (HTTP/1.0): the upstream's.
    let f = forwarder(Forwarding::default(), None, true);
    let (_, host) = forward(&f, "[::1]:1", &mut HeaderMap::new(), None);
    assert_eq!(host, "127.0.0.1:1337");
}

#[test]
fn identity_is_written_and_signed() {
    let f = forwarder(Forwarding::default(), Some(Signer::new("k")), true);
    let r = crate::model::TokenRecord::content_api(7, "ci", ContentApiType::ReadOnly);
    let mut h = hdrs(&[("host", "a"), ("x-auth-token-id", "1")]);
    let allowed = Allowed {
        record: &r,
        action: Some("api::a.a.find"),
    };
    let (head, _) = forward(&f, "10.0.0.9:1", &mut h, Some(allowed));
    let ids: Vec<&String> = head
        .iter()
        .filter(|l| l.starts_with("x-auth-token-id"))
        .collect();
    assert_eq!(ids, ["x-auth-token-id: 7"]);
    assert!(head.iter().any(|l| l.starts_with("x-auth-signature: ")));
    assert!(head.iter().any(|l| l.starts_with("x-auth-timestamp: ")));
}

/// A header name as a client may spell it: any case.
fn spelled(name: &'static str) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<bool>(), name.len()).prop_map(move |upper| {
        name.chars()
            .zip(upper)
            .map(|(c, u)| if u { c.to_ascii_uppercase() } else { c })
            .collect()
    })
}

fn overriding_name() -> impl Strategy<Value = String> {
    let fixed: Vec<&'static str> = peer::OVERRIDING_HEADERS
        .iter()
        .copied()
        .chain([
            "x-forwarded",
            "x-forwarded-prefix",
            "x-forwarded-port",
            "x-forwarded-uri",
            "x-forwarded-server",
            "x-forwarded-ssl",
            "x-forwarded-method",
        ])
        .collect();
    proptest::sample::select(fixed).prop_flat_map(spelled)
}

proptest! {
    /// Every overriding header, in any spelling, from a trusted peer or
    /// not, allow-listed or not: it reaches the CMS exactly when the peer is
    /// trusted and the name is allow-listed.
    #[test]
    fn overriding_headers_pass_only_by_allow_list(
        name in overriding_name(),
        trusted_peer in any::<bool>(),
        listed in any::<bool>(),
    ) {
        let lower = name.to_ascii_lowercase();
        let allow: Vec<&str> = if listed { vec![lower.as_str()] } else { vec![] };
        let f = forwarder(behind(&allow), None, true);
        let mut h = hdrs(&[(name.as_str(), "/admin/users"), ("host", "a")]);
        let peer = if trusted_peer { "10.0.0.5:1" } else { "203.0.113.9:1" };
        let (head, _) = forward(&f, peer, &mut h, None);
        let passed = head.iter().any(|l| l.starts_with(&format!("{lower}:")));
        prop_assert_eq!(passed, trusted_peer && listed, "{:?}", head);
    }
}
