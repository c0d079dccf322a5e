//! The messages against Envoy's own encoder (the golden bytes of
//! `tests/fixtures/grpc`, written by `tests/grpc/check.py` with the
//! `xds-protos` package), and what a `CheckRequest` names.

use super::*;
use crate::authz::Denial;
use crate::decision::answer;
use crate::forward::{Allowed, Forwarder, Forwarding, IdentityNames};
use crate::model::{ContentApiType, TokenRecord};

fn golden(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/grpc/{name}.hex",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    hex::decode(text.trim()).unwrap()
}

fn http(r: &pb::CheckRequest) -> &pb::HttpRequest {
    r.attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref())
        .unwrap()
}

fn source(r: &pb::CheckRequest) -> &str {
    let a = r.attributes.as_ref().unwrap();
    let s = a.source.as_ref().unwrap().address.as_ref().unwrap();
    &s.socket_address.as_ref().unwrap().address
}

#[test]
fn envoys_check_requests_decode() {
    let bytes = golden("check_request_minimal");
    let r = pb::CheckRequest::decode(&bytes[..]).unwrap();
    let h = http(&r);
    assert_eq!(h.method, "POST");
    assert_eq!(h.path, b"/api/articles?filters[title]=a");
    assert_eq!(h.host, "cms.example");
    assert_eq!(h.headers["authorization"], b"Bearer k");
    assert_eq!(h.headers["x-request-id"], b"rid-1");
    assert_eq!(&h.body[..], br#"{"query":"{ a }"}"#);
    assert_eq!(source(&r), "192.0.2.7");
    // Only fields prost knows: its encoding is the same bytes.
    assert_eq!(r.encode_to_vec(), bytes);

    // Everything Envoy fills, most of it unread: skipped, not refused.
    let r = pb::CheckRequest::decode(&golden("check_request_envoy")[..]).unwrap();
    let h = http(&r);
    assert_eq!(h.method, "GET");
    assert_eq!(h.path, b"/graphql?query=%7Ba%7D");
    assert_eq!(h.host, "cms.example:8443");
    assert_eq!(h.headers[":authority"], b"cms.example:8443");
    assert_eq!(&h.raw_body[..], b"\x00\xffbinary");
    assert_eq!(source(&r), "2001:db8::1");

    let r = pb::CheckRequest::decode(&golden("check_request_header_map")[..]).unwrap();
    let h = http(&r);
    assert!(h.headers.is_empty());
    let map = &h.header_map.as_ref().unwrap().headers;
    let pairs: Vec<(&str, &[u8])> = map.iter().map(|v| (&v.key[..], &v.raw_value[..])).collect();
    assert_eq!(
        pairs,
        [
            ("authorization", &b"Bearer k"[..]),
            ("x-tag", b"a"),
            ("x-tag", b"b")
        ]
    );
}

#[test]
fn what_a_check_request_names() {
    let r = pb::CheckRequest::decode(&golden("check_request_envoy")[..]).unwrap();
    let named = Named::from(r);
    let reading = named.reading.unwrap();
    assert_eq!(reading.method, Method::GET);
    assert_eq!(
        reading.uri.to_string(),
        "http://cms.example:8443/graphql?query=%7Ba%7D"
    );
    let h = named.headers.unwrap();
    assert_eq!(h["authorization"], "Bearer k");
    assert!(h.keys().all(|k| !k.as_str().starts_with(':')));
    assert_eq!(named.source, Some("2001:db8::1".parse().unwrap()));
    assert!(matches!(named.body, Body::Buffered(b) if &b[..] == b"\x00\xffbinary"));

    let r = pb::CheckRequest::decode(&golden("check_request_header_map")[..]).unwrap();
    let named = Named::from(r);
    let h = named.headers.unwrap();
    let tags: Vec<_> = h.get_all("x-tag").iter().collect();
    assert_eq!(tags, ["a", "b"]);
    assert!(matches!(named.body, Body::Absent));
}

fn asking(edit: impl FnOnce(&mut pb::HttpRequest)) -> Named {
    let mut http = pb::HttpRequest {
        method: "POST".into(),
        path: b"/graphql".to_vec(),
        host: "cms.example".into(),
        body: Bytes::from_static(b"{}"),
        ..Default::default()
    };
    edit(&mut http);
    Named::from(pb::CheckRequest {
        attributes: Some(pb::AttributeContext {
            source: None,
            request: Some(pb::Request { http: Some(http) }),
        }),
    })
}

#[test]
fn requests_that_name_none_are_refused_and_partial_bodies_are_none() {
    let refusal = |n: Named| n.reading.err().map(|(call, r)| (call.method, r));
    assert_eq!(refusal(asking(|_| {})), None);
    let empty = Named::from(pb::CheckRequest::default());
    assert_eq!(
        refusal(empty),
        Some((Method::POST, Refusal::NoSingleReading)),
        "no attributes.request.http"
    );
    assert_eq!(
        refusal(asking(|h| h.host.clear())).map(|r| r.1),
        Some(Refusal::InvalidHost)
    );
    assert_eq!(
        refusal(asking(|h| h.path = b"api/x".to_vec())).map(|r| r.1),
        Some(Refusal::InvalidPath)
    );
    assert_eq!(
        refusal(asking(|h| h.method = "G T".into())).map(|r| r.1),
        Some(Refusal::NoSingleReading)
    );
    let bad_value = asking(|h| {
        h.headers.insert("authorization".into(), b"a\nb".to_vec());
    });
    assert_eq!(
        refusal(bad_value).map(|r| r.1),
        Some(Refusal::NoSingleReading)
    );
    let both = asking(|h| {
        h.headers.insert("a".into(), b"1".to_vec());
        h.header_map = Some(pb::HeaderMap {
            headers: vec![pb::HeaderValue {
                key: "b".into(),
                value: b"2".to_vec(),
                raw_value: Vec::new(),
            }],
        });
    });
    assert_eq!(refusal(both).map(|r| r.1), Some(Refusal::NoSingleReading));

    let partial = asking(|h| {
        h.headers
            .insert("x-envoy-auth-partial-body".into(), b"TRUE".to_vec());
    });
    assert!(matches!(partial.body, Body::Absent));
    let raw_wins = asking(|h| h.raw_body = Bytes::from_static(b"raw"));
    assert!(matches!(raw_wins.body, Body::Buffered(b) if &b[..] == b"raw"));
}

fn forwarder() -> Forwarder {
    Forwarder::new(
        IdentityNames::new("x-auth-").unwrap(),
        None,
        true,
        &Forwarding::default(),
        None,
    )
}

#[test]
fn the_answers_are_envoys_bytes() {
    let f = forwarder();
    let r = TokenRecord::content_api(7, "ci", ContentApiType::ReadOnly);
    let allowed = Allowed {
        record: &r,
        action: Some("api::a.a.find"),
    };
    let rid = HeaderValue::from_static("rid-1");
    let allow = answer::allow(&f, &Method::GET, "/api/a", Some(allowed), &rid);
    let client = [
        "x-auth-token-id",
        "x_auth_token_id",
        "x-auth-anything",
        "x-http-method-override",
    ];
    let ours = check_response(allow, &client);
    assert_eq!(
        ours,
        pb::CheckResponse::decode(&golden("check_response_allow")[..]).unwrap()
    );
    assert_eq!(ours.encode_to_vec(), golden("check_response_allow"));

    let deny = |refusal, retry, rid| {
        let resp = answer::deny(refusal, retry, &HeaderValue::from_static(rid));
        check_response(resp, &["x-auth-token-id"]).encode_to_vec()
    };
    assert_eq!(
        deny(Denial::InvalidCredentials.into(), None, "rid-2"),
        golden("check_response_deny_401")
    );
    assert_eq!(
        deny(Denial::RateLimited.into(), Some(2), "rid-3"),
        golden("check_response_deny_429")
    );
}

#[test]
fn every_refusal_status_has_its_code() {
    for (status, code) in [
        (400, Code::InvalidArgument),
        (401, Code::Unauthenticated),
        (403, Code::PermissionDenied),
        (413, Code::InvalidArgument),
        (414, Code::InvalidArgument),
        (429, Code::ResourceExhausted),
        (500, Code::Internal),
        (502, Code::Unavailable),
        (503, Code::Unavailable),
        (504, Code::Unavailable),
    ] {
        assert_eq!(code_of(status), code, "{status}");
    }
    for refusal in [
        Refusal::Denied(Denial::StoreUnavailable),
        Refusal::Denied(Denial::Forbidden),
        Refusal::PayloadTooLarge,
        Refusal::UriTooLong,
        Refusal::ForgedIdentity,
    ] {
        let resp = answer::deny(refusal, Some(1), &HeaderValue::from_static("r"));
        let msg = check_response(resp, &[]);
        let denied = msg.denied_response.unwrap();
        assert_eq!(denied.status.unwrap().code, i32::from(refusal.status()));
        assert_eq!(msg.status.unwrap().code, code_of(refusal.status()) as i32);
        assert_eq!(denied.body.as_bytes(), &refusal.body()[..]);
        let names: Vec<_> = denied
            .headers
            .iter()
            .map(|h| h.header.as_ref().unwrap().key.as_str())
            .collect();
        assert_eq!(names, ["content-type", "retry-after", "x-request-id"]);
    }
}

fn code_of(status: u16) -> Code {
    code(StatusCode::from_u16(status).unwrap())
}
