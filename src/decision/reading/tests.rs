//! Every way a front proxy can name the request, and every way of naming
//! none or two.

use super::*;
use http::header::HeaderName;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

/// What is judged: (method, absolute URI).
type Judged = Result<(String, String), ReadingError>;

fn read(pairs: &[(&str, &str)]) -> Judged {
    forward_auth(&headers(pairs), Some(b"authgate:9092"))
        .map(|r| (r.method.to_string(), r.uri.to_string()))
}

fn ok(method: &str, uri: &str) -> Judged {
    Ok((method.to_owned(), uri.to_owned()))
}

#[test]
fn each_proxys_shape() {
    // (headers, what is judged)
    let rows: &[(&[(&str, &str)], Judged)] = &[
        // Traefik / Caddy.
        (
            &[
                ("x-forwarded-method", "POST"),
                ("x-forwarded-uri", "/api/articles?x=1"),
                ("x-forwarded-host", "cms.example"),
                ("x-forwarded-proto", "https"),
            ],
            ok("POST", "https://cms.example/api/articles?x=1"),
        ),
        // nginx auth_request.
        (
            &[
                ("x-original-method", "GET"),
                ("x-original-uri", "/admin//users"),
                ("x-forwarded-host", "cms.example:8443"),
            ],
            ok("GET", "http://cms.example:8443/admin//users"),
        ),
        // ingress-nginx: an absolute X-Original-URL names the host.
        (
            &[
                ("x-original-method", "GET"),
                ("x-original-url", "https://cms.example/api/a?b"),
            ],
            ok("GET", "http://cms.example/api/a?b"),
        ),
        (
            &[
                ("x-original-method", "GET"),
                ("x-original-url", "HTTP://cms.example"),
            ],
            ok("GET", "http://cms.example/"),
        ),
        (
            &[("x-original-method", "GET"), ("x-original-url", "/api/a")],
            ok("GET", "http://authgate:9092/api/a"),
        ),
        // Both sets, naming the same request.
        (
            &[
                ("x-forwarded-method", "GET"),
                ("x-forwarded-uri", "/api/%2e%2e/admin"),
                ("x-original-method", "GET"),
                ("x-original-uri", "/api/%2e%2e/admin"),
                ("x-original-url", "http://cms.example/api/%2e%2e/admin"),
                ("x-forwarded-host", "CMS.example"),
            ],
            ok("GET", "http://CMS.example/api/%2e%2e/admin"),
        ),
        // The target is kept as reported (judged by the gate, every reading).
        (
            &[
                ("x-forwarded-method", "GET"),
                ("x-forwarded-uri", "/api/..;/admin/users"),
            ],
            ok("GET", "http://authgate:9092/api/..;/admin/users"),
        ),
    ];
    for (h, want) in rows {
        assert_eq!(&read(h), want, "{h:?}");
    }
}

#[test]
fn none_or_two_readings_are_refused() {
    use ReadingError::*;
    #[rustfmt::skip]
    let rows: &[(&[(&str, &str)], ReadingError)] = &[
        (&[], None),
        (&[("x-forwarded-host", "cms.example")], None),
        (&[("x-forwarded-uri", "/api/a")], Incomplete("X-Forwarded-Method/-Uri")),
        (&[("x-forwarded-method", "GET")], Incomplete("X-Forwarded-Method/-Uri")),
        (&[("x-original-uri", "/api/a")], Incomplete("X-Original-Method/-URI/-URL")),
        (&[("x-original-method", "GET")], Incomplete("X-Original-Method/-URI/-URL")),
        (&[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/api/a"), ("x-forwarded-uri", "/admin/a")], Repeated("x-forwarded-uri")),
        (&[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/api/a"), ("x-original-method", "GET"), ("x-original-uri", "/admin/a")], Disagree),
        (&[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/api/a"), ("x-original-method", "DELETE"), ("x-original-uri", "/api/a")], Disagree),
        // One byte apart is two requests.
        (&[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/api/a"), ("x-original-method", "GET"), ("x-original-uri", "/api/a/")], Disagree),
        (&[("x-original-method", "GET"), ("x-original-uri", "/api/a"), ("x-original-url", "http://cms.example/admin/a")], Disagree),
        (&[("x-original-method", "GET"), ("x-original-url", "http://cms.example/api/a"), ("x-forwarded-host", "evil.example")], Disagree),
        (&[("x-forwarded-method", "GET"), ("x-forwarded-uri", "api/a")], Target),
        (&[("x-forwarded-method", "GET"), ("x-forwarded-uri", "http://cms.example/admin")], Target),
        (&[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/api/a#/../../admin")], Target),
        (&[("x-original-method", "GET"), ("x-original-url", "ftp://cms.example/a")], Target),
        (&[("x-forwarded-method", "G ET"), ("x-forwarded-uri", "/api/a")], Method),
        (&[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/api/a"), ("x-forwarded-host", "evil.example/admin?x=")], Host),
        (&[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/api/a"), ("x-forwarded-host", "a@evil.example")], Host),
        (&[("x-original-method", "GET"), ("x-original-url", "http://u@cms.example/api/a")], Host),
    ];
    for (h, want) in rows {
        assert_eq!(read(h), Err(*want), "{h:?}");
    }
    // No forwarded host and no own authority: nothing to validate.
    let h = headers(&[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/api/a")]);
    assert_eq!(forward_auth(&h, Option::<&[u8]>::None), Err(Host));
}

#[test]
fn refusals() {
    assert_eq!(ReadingError::Target.refusal(), Refusal::InvalidPath);
    assert_eq!(ReadingError::Host.refusal(), Refusal::InvalidHost);
    assert_eq!(ReadingError::Disagree.refusal(), Refusal::NoSingleReading);
    assert_eq!(ReadingError::None.refusal(), Refusal::NoSingleReading);
}

#[test]
fn envoys_http_shape() {
    let get = Method::GET;
    let r = |pq: &str, host: Option<&str>| {
        ext_authz(&get, &pq.parse::<Uri>().unwrap(), host.map(str::as_bytes))
            .map(|r| r.uri.to_string())
    };
    assert_eq!(
        r("/ext-authz/api/articles?x=1", Some("cms.example")).as_deref(),
        Ok("http://cms.example/api/articles?x=1")
    );
    assert_eq!(
        r("/ext-authz//admin/users", Some("cms.example")).as_deref(),
        Ok("http://cms.example//admin/users")
    );
    assert_eq!(
        r("/ext-authz", Some("cms.example")),
        Err(ReadingError::Target)
    );
    assert_eq!(
        r("/ext-authzz/api", Some("cms.example")),
        Err(ReadingError::Target)
    );
    assert_eq!(
        r("/ext-authz?x", Some("cms.example")),
        Err(ReadingError::Target)
    );
    assert_eq!(r("/ext-authz/api", None), Err(ReadingError::Host));
    assert_eq!(r("/ext-authz/api", Some("a b")), Err(ReadingError::Host));
    assert_eq!(
        Reading {
            method: get.clone(),
            uri: "http://h/api/a?b".parse().unwrap()
        }
        .path_and_query(),
        "/api/a?b"
    );
}

#[test]
fn a_grpc_check_names_method_target_and_host() {
    let r =
        |m: &str, p: &[u8], h: &str| grpc(m.as_bytes(), p, h.as_bytes()).map(|r| r.uri.to_string());
    assert_eq!(
        r("GET", b"/api/articles?x=1", "cms.example").as_deref(),
        Ok("http://cms.example/api/articles?x=1")
    );
    assert_eq!(
        grpc(b"PATCH", b"//a", b"cms.example:8443").map(|r| r.method),
        Ok(Method::PATCH)
    );
    assert_eq!(r("GET", b"api", "cms.example"), Err(ReadingError::Target));
    assert_eq!(r("GET", b"/a#f", "cms.example"), Err(ReadingError::Target));
    assert_eq!(
        r("GET", b"http://x/a", "cms.example"),
        Err(ReadingError::Target)
    );
    assert_eq!(r("GET", b"/a", ""), Err(ReadingError::Host));
    assert_eq!(r("GET", b"/a", "a/b"), Err(ReadingError::Host));
    assert_eq!(r("", b"/a", "h"), Err(ReadingError::Method));
}
