//! One judgement at every door (issue 28): the SPEC decision table through
//! the proxy and through each door of the decision listener — real nginx
//! (`auth_request`) and real Caddy (`forward_auth`) in front of it, and the
//! request shapes of Envoy's ext_authz `http_service` and Traefik's
//! `forwardAuth` — with the same outcome at every door: the status, the
//! identity the CMS receives (or the answer carries) and the refusal's
//! envelope. The table is rows of requests and columns of doors
//! ([`Column`]), Envoy's gRPC `Check` among them (asked with authgate's
//! prost messages; tests/grpc.rs checks those against Envoy's own encoder
//! and a real gRPC client).
//!
//! Beside it: the attack corpus through both real proxies, forged
//! forwarding and identity headers from the client (refused by the HTTP
//! doors, removed through gRPC's `headers_to_remove`), a caller outside
//! `decision.trusted_callers`, gRPC calls that are not a `CheckRequest`,
//! and nginx's `error_page` for 429 and 503.

// Helpers below are test code too: a failure is the test failing.
#![allow(clippy::unwrap_used)]

mod fronts;
mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use fronts::{Front, CLIENT_HOST};
use serde_json::Value;
use support::*;

const READ_ARTICLES: &str = "plugin::content-manager.explorer.read@api::article.article";
const ARTICLES: &str = "/content-manager/collection-types/api::article.article";
const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJpZCI6MX0.c2lnbmF0dXJl";

/// The decision listener on an ephemeral port, and a rule that makes
/// anonymous requests under `/api/private` a 401.
const DOORS_CONFIG: &str = "[decision]\nlisten = \"127.0.0.1:0\"\n\n\
    [[routes.rule]]\nprefix = \"/api/private\"\nauth = \"required\"\n";

/// What a door made of one request: the status, the identity the CMS
/// receives (the `x-auth-*` headers with a value), and the refusal's
/// envelope.
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    identity: BTreeMap<String, String>,
    envelope: Option<Value>,
}

/// Identity headers with a value (a front proxy copies the empty ones
/// authgate answers with; the CMS reads them as absent).
fn identity<'a>(pairs: impl Iterator<Item = (&'a str, String)>) -> BTreeMap<String, String> {
    pairs
        .filter(|(k, v)| {
            k.to_ascii_lowercase()
                .replace('_', "-")
                .starts_with("x-auth-")
                && !v.is_empty()
        })
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}

fn envelope_of(r: &Resp) -> Option<Value> {
    (r.status != 200).then(|| r.json())
}

/// Through a door that forwards: what the echo upstream received.
fn forwarded(door: &str, r: &Resp) -> Seen {
    let identity = if r.status == 200 {
        let headers = r.upstream_headers();
        for (k, vals) in &headers {
            for v in vals {
                assert!(
                    !v.contains("{http."),
                    "{door}: the CMS received a placeholder in {k}: {v}"
                );
            }
            if k.replace('_', "-").starts_with("x-auth-") {
                assert!(
                    IDENTITY_NAMES.contains(&k.as_str()),
                    "{door}: the CMS received {k}, which authgate does not set"
                );
                assert_eq!(vals.len(), 1, "{door}: {k} more than once");
            }
        }
        identity(headers.iter().map(|(k, v)| (k.as_str(), v.join(","))))
    } else {
        BTreeMap::new()
    };
    Seen {
        status: r.status,
        identity,
        envelope: envelope_of(r),
    }
}

/// From a decision door's own answer (the shapes).
fn answered(r: &Resp) -> Seen {
    let identity = if r.status == 200 {
        for name in IDENTITY_NAMES {
            assert!(r.headers.contains_key(name), "the answer lacks {name}");
        }
        identity(r.headers.iter().map(|(k, v)| {
            (
                k.as_str(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        }))
    } else {
        BTreeMap::new()
    };
    Seen {
        status: r.status,
        identity,
        envelope: envelope_of(r),
    }
}

/// From a gRPC `CheckResponse`: allowed, the headers Envoy sets (every
/// identity name is either set or removed, never both); denied, the status
/// and envelope Envoy answers with, and the gRPC code that goes with them.
fn checked(a: &fronts::GrpcAnswer) -> Seen {
    assert_eq!(a.grpc_status, "0", "a Check is answered, not failed");
    let check = a.check.as_ref().unwrap();
    let code = check.status.as_ref().map_or(0, |s| s.code);
    if let Some(ok) = &check.ok_response {
        assert_eq!(code, 0);
        let set: BTreeMap<String, String> = ok
            .headers
            .iter()
            .map(|h| {
                assert_eq!(h.append_action, fronts::pb::OVERWRITE_IF_EXISTS_OR_ADD);
                let h = h.header.as_ref().unwrap();
                (h.key.clone(), String::from_utf8(h.value.clone()).unwrap())
            })
            .collect();
        for name in IDENTITY_NAMES {
            let removed = ok.headers_to_remove.iter().any(|r| r == name);
            assert!(
                set.contains_key(name) != removed,
                "{name}: set {set:?}, removed {:?}",
                ok.headers_to_remove
            );
        }
        assert!(set.contains_key("x-request-id"));
        return Seen {
            status: 200,
            identity: identity(set.iter().map(|(k, v)| (k.as_str(), v.clone()))),
            envelope: None,
        };
    }
    let denied = check.denied_response.as_ref().expect("ok or denied");
    let status = denied.status.as_ref().unwrap().code;
    let expected = match status {
        401 => 16,
        403 => 7,
        429 => 8,
        503 => 14,
        400 | 413 | 414 => 3,
        s => panic!("unexpected status {s}"),
    };
    assert_eq!(code, expected, "the gRPC code of {status}");
    let content_type = denied
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .find(|h| h.key == "content-type")
        .map(|h| h.value.clone());
    assert_eq!(
        content_type.as_deref(),
        Some(&b"application/json; charset=utf-8"[..])
    );
    Seen {
        status: u16::try_from(status).unwrap(),
        identity: BTreeMap::new(),
        envelope: Some(serde_json::from_str(&denied.body).unwrap()),
    }
}

/// Every identity header name authgate can set.
const IDENTITY_NAMES: [&str; 9] = [
    "x-auth-token-id",
    "x-auth-token-kind",
    "x-auth-token-name",
    "x-auth-token-type",
    "x-auth-owner-id",
    "x-auth-owner-email",
    "x-auth-action",
    "x-auth-timestamp",
    "x-auth-signature",
];

/// A door: a column of the table.
enum Column {
    Proxy(SocketAddr),
    Nginx(Front),
    Caddy(Front),
    EnvoyHttp(SocketAddr),
    EnvoyGrpc(SocketAddr),
    Traefik(SocketAddr),
}

impl Column {
    fn name(&self) -> &'static str {
        match self {
            Column::Proxy(_) => "proxy",
            Column::Nginx(_) => "nginx",
            Column::Caddy(_) => "caddy",
            Column::EnvoyHttp(_) => "envoy-http",
            Column::EnvoyGrpc(_) => "envoy-grpc",
            Column::Traefik(_) => "traefik",
        }
    }

    /// Every door in front of one gateway.
    fn all(g: &Gateway, cms: SocketAddr) -> Vec<Column> {
        let decision = g.decision.expect("decision listener");
        vec![
            Column::Proxy(g.addr),
            Column::Nginx(Front::nginx(decision, cms)),
            Column::Caddy(Front::caddy(decision, cms)),
            Column::EnvoyHttp(decision),
            Column::EnvoyGrpc(decision),
            Column::Traefik(decision),
        ]
    }

    /// Ask this door about `method path` with `authorization`.
    async fn ask(&self, method: &str, path: &str, authorization: Option<&str>) -> Seen {
        let auth: Vec<(&str, &str)> = authorization
            .map(|a| ("authorization", a))
            .into_iter()
            .collect();
        let host = [("host", CLIENT_HOST)];
        let via = |base: String| async move {
            let headers: Vec<(&str, &str)> = auth.iter().chain(&host).copied().collect();
            request(method, &format!("{base}{path}"), None, &headers, b"").await
        };
        match self {
            Column::Proxy(a) => forwarded("proxy", &via(format!("http://{a}")).await),
            Column::Nginx(f) | Column::Caddy(f) => forwarded(f.name, &via(f.url("")).await),
            Column::EnvoyHttp(d) => {
                answered(&fronts::envoy_http(*d, method, path, authorization, &[]).await)
            }
            Column::EnvoyGrpc(d) => {
                let req = fronts::check_request(method, path, authorization, &[], None);
                checked(&fronts::envoy_grpc(*d, &req).await)
            }
            Column::Traefik(d) => {
                answered(&fronts::traefik(*d, method, path, authorization, &[]).await)
            }
        }
    }
}

/// The tokens of the table, made through the real CLI.
struct Tokens {
    keys: BTreeMap<&'static str, String>,
}

impl Tokens {
    fn bearer(&self, name: &str) -> Option<String> {
        match name {
            "-" => None,
            "jwt" => Some(format!("Bearer {JWT}")),
            "unknown" => Some(format!("Bearer {}", "0".repeat(256))),
            n => Some(format!(
                "Bearer {}",
                self.keys.get(n).unwrap_or_else(|| panic!("no token {n}"))
            )),
        }
    }
}

async fn make_tokens(env: &Env) -> Tokens {
    let mut keys = BTreeMap::new();
    env.super_admin("root@example.com");
    keys.insert("ro", env.content_token("ro", "read-only", &[]).1);
    keys.insert("full", env.content_token("full", "full-access", &[]).1);
    keys.insert(
        "custom",
        env.content_token(
            "custom",
            "custom",
            &[
                "api::article.article.find",
                "plugin::upload.content-api.find",
            ],
        )
        .1,
    );
    keys.insert(
        "admin",
        env.admin_token("admin", "root@example.com", &["admin::users.read"])
            .1,
    );
    // Admin permission ∩ owner role: the token keeps admin::users.read, its
    // owner no longer holds it.
    env.ok(&["role", "create", "editor"]);
    env.ok(&["role", "grant", "editor", READ_ARTICLES]);
    env.ok(&["role", "grant", "editor", "admin::users.read"]);
    env.ok(&["role", "create", "viewer"]);
    env.ok(&["role", "grant", "viewer", READ_ARTICLES]);
    env.user("ed@example.com", "editor");
    keys.insert(
        "narrowed",
        env.admin_token(
            "narrowed",
            "ed@example.com",
            &[READ_ARTICLES, "admin::users.read"],
        )
        .1,
    );
    env.ok(&["user", "add-role", "ed@example.com", "viewer"]);
    env.ok(&["user", "remove-role", "ed@example.com", "editor"]);
    // Owners deactivated, blocked, deleted.
    for (name, email, then) in [
        ("deactivated", "off@example.com", "deactivate"),
        ("blocked", "blk@example.com", "block"),
        ("deleted", "gone@example.com", "delete"),
    ] {
        env.ok(&["user", "create", "--email", email, "--role", "super-admin"]);
        keys.insert(name, env.admin_token(name, email, &["admin::users.read"]).1);
        env.ok(&["user", then, email]);
    }
    let (expired_id, expired) = env.content_token("expired", "full-access", &[]);
    sql(
        &env.schema,
        &format!(
            "UPDATE tokens SET expires_at = now() - interval '1 second' WHERE id = {expired_id}"
        ),
    )
    .await;
    keys.insert("expired", expired);
    // Pinned: the doors' client is 127.0.0.1 (the front proxy's peer, or
    // the shapes' X-Forwarded-For).
    keys.insert(
        "home",
        env.content_token_with("home", "full-access", &["--allow-cidr", "127.0.0.0/8"])
            .1,
    );
    keys.insert(
        "away",
        env.content_token_with("away", "full-access", &["--allow-cidr", "10.0.0.0/8"])
            .1,
    );
    Tokens { keys }
}

/// The SPEC decision table: (method, target, token, status).
const TABLE: &[(&str, &str, &str, u16)] = &[
    // Both kinds on both route families.
    ("GET", "/api/articles", "full", 200),
    ("GET", "/admin/users", "full", 401),
    ("GET", "/api/articles", "admin", 401),
    ("GET", "/admin/users", "admin", 200),
    ("GET", "/admin/users/me", "admin", 200),
    // The three types.
    ("GET", "/api/articles?filters[title]=a", "ro", 200),
    ("GET", "/api/articles/1", "ro", 200),
    ("POST", "/api/articles", "ro", 403),
    ("DELETE", "/api/articles/1", "full", 200),
    ("GET", "/api/articles", "custom", 200),
    ("GET", "/api/articles/1", "custom", 403),
    ("PUT", "/api/articles/1", "custom", 403),
    // Custom actions: a plugin's content-API route.
    ("GET", "/api/upload/files", "custom", 200),
    ("GET", "/api/upload/files/1", "custom", 403),
    // GraphQL: a read-only token's query, named in the query string.
    ("GET", "/graphql?query=%7Barticles%7Bid%7D%7D", "ro", 200),
    ("GET", "/graphql?query=mutation%7Bx%7D", "ro", 403),
    // Admin permission ∩ owner role.
    ("GET", "/admin/roles", "admin", 403),
    ("GET", ARTICLES, "narrowed", 200),
    ("GET", "/admin/users", "narrowed", 403),
    // Owner deactivated, blocked, deleted.
    ("GET", "/admin/users", "deactivated", 401),
    ("GET", "/admin/users", "blocked", 401),
    ("GET", "/admin/users", "deleted", 401),
    // Expired.
    ("GET", "/api/articles", "expired", 401),
    // Pinned networks.
    ("GET", "/api/articles", "home", 200),
    ("GET", "/api/articles", "away", 403),
    // Unknown keys.
    ("GET", "/api/articles", "unknown", 401),
    ("GET", "/admin/users", "unknown", 401),
    // Anonymous.
    ("GET", "/api/articles", "-", 200),
    ("GET", "/admin", "-", 200),
    ("GET", "/api/private/x", "-", 401),
    ("GET", "/uploads/a.png", "-", 200),
    // Session JWTs pass to the CMS.
    ("GET", "/admin/users", "jwt", 200),
    ("GET", "/api/private/x", "jwt", 200),
    // A target whose readings disagree.
    ("GET", "/admin/..%2fapi/x", "full", 400),
    // Readings that agree: judged as the one path they all read.
    ("GET", "/api/%2e%2e/admin/users", "full", 401),
    ("GET", "//api//articles", "full", 200),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spec_table_has_one_outcome_at_every_door() {
    let env = Env::with_config(DOORS_CONFIG).await;
    let tokens = make_tokens(&env).await;
    let g = env.gateway().await;
    let columns = Column::all(&g, env.upstream);
    let mut failures = Vec::new();
    for (method, path, token, status) in TABLE {
        let auth = tokens.bearer(token);
        let mut proxy: Option<Seen> = None;
        for column in &columns {
            let seen = column.ask(method, path, auth.as_deref()).await;
            let row = format!("{method} {path} as {token} at {}", column.name());
            match &proxy {
                None => {
                    if seen.status != *status {
                        failures.push(format!(
                            "{row}: {} (expected {status}): {:?}",
                            seen.status, seen.envelope
                        ));
                    }
                    proxy = Some(seen);
                }
                Some(p) if *p != seen => {
                    failures.push(format!("{row}: {seen:?}\n  the proxy: {p:?}"));
                }
                Some(_) => {}
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A client's own forwarding and identity headers, sent through each real
/// proxy: the decision is the one the plain request gets, and the CMS
/// receives only authgate's identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_headers_through_each_proxy_change_nothing() {
    let env = Env::with_config(DOORS_CONFIG).await;
    env.super_admin("root@example.com");
    let (full_id, full) = env.content_token("full", "full-access", &[]);
    let (admin_id, admin) = env.admin_token("admin", "root@example.com", &["admin::users.read"]);
    let (_, away) = env.content_token_with("away", "full-access", &["--allow-cidr", "10.0.0.0/8"]);
    let g = env.gateway().await;
    let decision = g.decision.unwrap();
    let fronts = [
        Front::nginx(decision, env.upstream),
        Front::caddy(decision, env.upstream),
    ];
    let naming_another: &[(&str, &str)] = &[
        ("x-forwarded-method", "DELETE"),
        ("x-forwarded-uri", "/admin/users"),
        ("x-original-method", "DELETE"),
        ("x-original-uri", "/admin/users"),
        ("x-original-url", "http://evil.example/admin/users"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "https"),
    ];
    for f in &fronts {
        let send = |path: &'static str, key: &str, extra: &[(&str, &str)]| {
            let auth = format!("Bearer {key}");
            let mut headers = vec![("authorization".to_owned(), auth)];
            headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            let url = f.url(path);
            async move {
                let h: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                request("GET", &url, None, &h, b"").await
            }
        };
        // A content key on a content route, the client naming an admin one.
        let r = send("/api/articles", &full, naming_another).await;
        assert_eq!(
            r.status,
            200,
            "{}: {}",
            f.name,
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(
            r.upstream_header("x-auth-token-id"),
            Some(full_id.to_string()),
            "{}",
            f.name
        );
        assert_eq!(
            r.upstream_header("x-auth-action").as_deref(),
            Some("api::article.article.find")
        );
        for h in [
            "x-original-uri",
            "x-original-url",
            "x-original-method",
            "x-forwarded-uri",
            "x-forwarded-method",
        ] {
            assert_eq!(
                r.upstream_header(h),
                None,
                "{}: {h} reached the CMS",
                f.name
            );
        }
        // An admin key on an admin route, the client naming a content one.
        let forged = [
            ("x-original-uri", "/api/articles"),
            ("x-forwarded-uri", "/api/articles"),
        ];
        let r = send("/admin/users", &admin, &forged).await;
        assert_eq!(r.status, 200, "{}", f.name);
        assert_eq!(
            r.upstream_header("x-auth-token-id"),
            Some(admin_id.to_string())
        );
        // A content key on an admin route, the client naming a content one.
        let r = send("/admin/users", &full, &forged).await;
        assert_eq!(r.status, 401, "{}", f.name);
        // A pinned token, the client naming an address inside its network.
        let r = send("/api/articles", &away, &[("x-forwarded-for", "10.1.2.3")]).await;
        assert_eq!(r.status, 403, "{}", f.name);
        assert_eq!(r.json()["error"]["message"], "Client address not allowed");
        // A method override the CMS could route by: refused.
        for (name, value) in [
            ("x-http-method-override", "DELETE"),
            ("x-rewrite-url", "/admin/users"),
        ] {
            let r = send("/api/articles", &full, &[(name, value)]).await;
            assert_eq!(r.status, 400, "{}: {name}", f.name);
            assert_eq!(
                r.json()["error"]["message"],
                "Method- and route-overriding headers are not accepted"
            );
        }
        // The client's identity headers: refused, or removed before the
        // CMS; never received.
        for (name, value) in [
            ("x-auth-token-id", "1"),
            ("x-auth-token-kind", "admin"),
            ("x-auth-anything", "x"),
            ("x_auth_token_id", "1"),
            ("X-Auth-Owner-Email", "root@example.com"),
        ] {
            let r = request("GET", &f.url("/api/articles"), None, &[(name, value)], b"").await;
            match r.status {
                200 => {
                    let at_cms = r.upstream_headers();
                    let got: Vec<_> = at_cms
                        .iter()
                        .filter(|(k, v)| {
                            k.replace('_', "-").starts_with("x-auth-")
                                && v.iter().any(|v| !v.is_empty())
                        })
                        .collect();
                    assert!(
                        got.is_empty(),
                        "{}: {name} reached the CMS: {got:?}",
                        f.name
                    );
                }
                400 => assert_eq!(
                    r.json()["error"]["message"],
                    "Identity headers are set by authgate only"
                ),
                s => panic!("{}: {name}: {s}", f.name),
            }
        }
    }
}

/// Only `decision.trusted_callers` are answered; anyone else gets 403 (a
/// gRPC status 7 when it asks in gRPC) and is counted. HTTP/1.1 and
/// HTTP/2 with prior knowledge share the port.
#[tokio::test]
async fn callers_outside_the_list_get_403_and_the_port_speaks_both_versions() {
    let env = Env::with_config(
        "[decision]\nlisten = \"127.0.0.1:0\"\ntrusted_callers = [\"192.0.2.1\"]\n",
    )
    .await;
    let g = env.gateway().await;
    let decision = g.decision.unwrap();
    let r = fronts::traefik(decision, "GET", "/api/articles", None, &[]).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json(),
        envelope(403, "ForbiddenError", "Caller not allowed")
    );
    let r = fronts::envoy_http(decision, "GET", "/api/articles", None, &[]).await;
    assert_eq!(r.status, 403);
    // A gRPC Check: denied in a CheckResponse (7, 403 and the same
    // envelope), which Envoy answers whatever its failure_mode_allow.
    let req = fronts::check_request("GET", "/api/articles", None, &[], None);
    let seen = checked(&fronts::envoy_grpc(decision, &req).await);
    assert_eq!(seen.status, 403);
    assert_eq!(
        seen.envelope,
        Some(envelope(403, "ForbiddenError", "Caller not allowed"))
    );
    let m = g.metrics_text().await;
    assert_eq!(metric(&m, "authgate_decision_callers_refused_total"), 3.0);
    assert_eq!(
        metric(
            &m,
            r#"authgate_requests_total{decision="pass",door="forward_auth",route_class="content-api",status_class="2xx"}"#
        ),
        0.0
    );
    g.stop().await;

    // Loopback (the default) is answered, in either version.
    let env = Env::with_config(DOORS_CONFIG).await;
    let g = env.gateway().await;
    let decision = g.decision.unwrap();
    assert_eq!(
        fronts::traefik(decision, "GET", "/api/articles", None, &[])
            .await
            .status,
        200
    );
    let req = fronts::check_request("GET", "/api/articles", None, &[], None);
    assert_eq!(
        checked(&fronts::envoy_grpc(decision, &req).await).status,
        200
    );
    let h2 = h2_get(decision, "/ext-authz/api/articles").await;
    assert_eq!(h2, 200);
    let m = g.metrics_text().await;
    assert_eq!(
        metric(
            &m,
            r#"authgate_requests_total{decision="pass",door="forward_auth",route_class="content-api",status_class="2xx"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            r#"authgate_requests_total{decision="pass",door="ext_authz_http",route_class="content-api",status_class="2xx"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            r#"authgate_requests_total{decision="pass",door="ext_authz_grpc",route_class="content-api",status_class="2xx"}"#
        ),
        1.0
    );
    assert_eq!(metric(&m, "authgate_decision_callers_refused_total"), 0.0);
}

/// gRPC calls that are not a readable `CheckRequest` fail at the gRPC
/// level; a `CheckRequest` that names no request is denied (400, 3) as the
/// HTTP doors deny a call that names none.
#[tokio::test]
async fn grpc_calls_that_are_not_one_check_request() {
    let env = Env::with_config(DOORS_CONFIG).await;
    let g = env.gateway().await;
    let d = g.decision.unwrap();
    let status = |a: fronts::GrpcAnswer| a.grpc_status;
    // Not protobuf (a field 0), not one frame, compressed, too large.
    assert_eq!(
        status(fronts::grpc_raw(d, b"\0\0\0\0\x02\x00\x01").await),
        "3"
    );
    assert_eq!(status(fronts::grpc_raw(d, b"\0\0\0\0\x09ab").await), "3");
    assert_eq!(status(fronts::grpc_raw(d, b"\x01\0\0\0\x01a").await), "12");
    // Over graphql_max_body (1 MiB) and the room for the other fields.
    let mut huge = vec![0u8, 0, 0x20, 0, 0];
    huge.resize(5 + 0x20_0000, b'a');
    assert_eq!(status(fronts::grpc_raw(d, &huge).await), "8");
    // An empty CheckRequest: no attributes.request.http.
    let seen = checked(&fronts::grpc_raw(d, b"\0\0\0\0\0").await);
    assert_eq!(seen.status, 400);
    assert_eq!(
        seen.envelope,
        Some(envelope(
            400,
            "ValidationError",
            "No single request to judge"
        ))
    );
    // A header that is not one.
    let req = fronts::check_request("GET", "/api/a", None, &[("x-a", "a\u{1}b")], None);
    assert_eq!(checked(&fronts::envoy_grpc(d, &req).await).status, 400);
    let m = g.metrics_text().await;
    assert_eq!(
        metric(
            &m,
            r#"authgate_requests_total{decision="deny",door="ext_authz_grpc",route_class="unprotected",status_class="4xx"}"#
        ),
        2.0,
        "{m}"
    );
}

/// The client's identity and override headers: the HTTP doors refuse them
/// (they cannot remove them); the gRPC door allows as the proxy does, and
/// names them in `headers_to_remove`, beside the identity it sets.
#[tokio::test]
async fn grpc_removes_what_the_http_doors_refuse() {
    let env = Env::with_config(DOORS_CONFIG).await;
    let (full_id, full) = env.content_token("full", "full-access", &[]);
    let g = env.gateway().await;
    let d = g.decision.unwrap();
    let auth = format!("Bearer {full}");
    let forged = [
        ("x-auth-token-id", "1"),
        ("x_auth_token_kind", "admin"),
        ("x-auth-anything", "x"),
        ("x-http-method-override", "DELETE"),
    ];
    let r = fronts::envoy_http(d, "GET", "/api/articles", Some(&auth), &forged).await;
    assert_eq!(r.status, 400);
    let req = fronts::check_request("GET", "/api/articles", Some(&auth), &forged, None);
    let a = fronts::envoy_grpc(d, &req).await;
    let seen = checked(&a);
    assert_eq!(seen.status, 200);
    assert_eq!(seen.identity["x-auth-token-id"], full_id.to_string());
    let ok = a.check.unwrap().ok_response.unwrap();
    for (name, _) in &forged[1..] {
        assert!(
            ok.headers_to_remove.iter().any(|r| r == name),
            "{name} not removed: {:?}",
            ok.headers_to_remove
        );
    }
    // Set, so not removed (Envoy removes after it sets).
    assert!(!ok.headers_to_remove.iter().any(|r| r == "x-auth-token-id"));
    assert!(!ok.headers_to_remove.iter().any(|r| r == "authorization"));
}

/// An HTTP/2 (prior knowledge) client.
fn h2_client() -> hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<bytes::Bytes>,
> {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

async fn h2_get(decision: SocketAddr, path: &str) -> u16 {
    let req = http::Request::builder()
        .uri(format!("http://{decision}{path}"))
        .header("host", CLIENT_HOST)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    h2_client().request(req).await.unwrap().status().as_u16()
}

/// nginx's `auth_request` keeps only 401 and 403; the documented
/// `error_page` answers 429 and 503 with authgate's own status, envelope
/// and `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_answers_429_and_503_as_authgate_does() {
    let env = Env::with_config(&format!(
        "{DOORS_CONFIG}\n[rate_limit]\nper_token = 1\nwindow = \"60s\"\n"
    ))
    .await;
    let (_, full) = env.content_token("full", "full-access", &[]);
    let g = env.gateway().await;
    let nginx = Front::nginx(g.decision.unwrap(), env.upstream);
    let url = nginx.url("/api/articles");
    assert_eq!(get(&url, Some(&full)).await.status, 200);
    let r = get(&url, Some(&full)).await;
    assert_eq!(r.status, 429, "{}", nginx.logs());
    assert_eq!(
        r.json(),
        envelope(429, "RateLimitError", "Too many requests")
    );
    assert!(r.headers.contains_key("retry-after"));
    assert!(r.headers.contains_key("x-request-id"));
    g.stop().await;

    // The token store unreachable: 503, as the proxy answers.
    let pg_addr = "127.0.0.1:5432".parse().unwrap();
    let pg = CutProxy::start(pg_addr).await;
    let text = std::fs::read_to_string(&env.config_path).unwrap().replace(
        &database_url(),
        &format!("postgres://postgres@{}/postgres", pg.addr),
    );
    std::fs::write(&env.config_path, text).unwrap();
    pg.set(ProxyMode::Refuse);
    let g = Gateway::start_unready(env.config()).await;
    let nginx = Front::nginx(g.decision.unwrap(), env.upstream);
    let r = get(&nginx.url("/api/articles"), Some(&"1".repeat(256))).await;
    let proxy = get(&g.url("/api/articles"), Some(&"1".repeat(256))).await;
    assert_eq!(proxy.status, 503);
    assert_eq!(r.status, 503, "{}", nginx.logs());
    assert_eq!(r.json(), proxy.json());
}

/// A read-only token's GraphQL `POST`: its operation is in the body. The
/// forward-auth doors never get the body, so they refuse it; Envoy's
/// `with_request_body` sends it to `/ext-authz` and in the gRPC
/// `CheckRequest`, which judge it as the proxy does (and a body Envoy cut
/// short counts as none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_bodies_reach_only_the_door_that_is_sent_them() {
    let env = Env::with_config(DOORS_CONFIG).await;
    let (_, ro) = env.content_token("ro", "read-only", &[]);
    let g = env.gateway().await;
    let decision = g.decision.unwrap();
    let query = br#"{"query":"{ articles { id } }"}"#;
    let mutation = br#"{"query":"mutation { deleteArticle(id: 1) { id } }"}"#;
    let json = ("content-type", "application/json");
    let post = |url: String, body: &'static [u8]| {
        let ro = ro.clone();
        async move { request("POST", &url, Some(&ro), &[json], body).await.status }
    };
    assert_eq!(post(g.url("/graphql"), query).await, 200);
    assert_eq!(post(g.url("/graphql"), mutation).await, 403);
    let nginx = Front::nginx(decision, env.upstream);
    assert_eq!(post(nginx.url("/graphql"), query).await, 403);
    let auth = format!("Bearer {ro}");
    let r = fronts::traefik(decision, "POST", "/graphql", Some(&auth), &[json]).await;
    assert_eq!(r.status, 403);
    // Envoy with with_request_body: the body, and its length.
    let envoy = |body: &'static [u8], extra: Vec<(&'static str, &'static str)>| {
        let url = format!("http://{decision}/ext-authz/graphql");
        let auth = auth.clone();
        async move {
            let mut h = vec![
                ("host", CLIENT_HOST),
                ("authorization", auth.as_str()),
                json,
            ];
            h.extend(extra);
            request("POST", &url, None, &h, body).await.status
        }
    };
    assert_eq!(envoy(query, vec![]).await, 200);
    assert_eq!(envoy(mutation, vec![]).await, 403);
    assert_eq!(
        envoy(query, vec![("x-envoy-auth-partial-body", "true")]).await,
        403
    );
    // The same through gRPC: attributes.request.http.body.
    let grpc = |body: &'static [u8], extra: &'static [(&'static str, &'static str)]| {
        let mut h = vec![json];
        h.extend_from_slice(extra);
        let req = fronts::check_request("POST", "/graphql", Some(&auth), &h, Some(body));
        async move { checked(&fronts::envoy_grpc(decision, &req).await).status }
    };
    assert_eq!(grpc(query, &[]).await, 200);
    assert_eq!(grpc(mutation, &[]).await, 403);
    assert_eq!(
        grpc(query, &[("x-envoy-auth-partial-body", "true")]).await,
        403
    );
}

/// A key of the corpora, by its placeholder.
struct Key {
    placeholder: &'static str,
    key: String,
    id: i64,
    kind: authgate::route::RouteClass,
}

/// Send raw bytes; the status (0: no answer).
async fn send_raw(addr: SocketAddr, bytes: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return 0;
    };
    if s.write_all(bytes).await.is_err() {
        return 0;
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// Both corpora (tests/attacks/cases.jsonl, readings.jsonl) through real
/// nginx and real Caddy in front of the decision listener: no request
/// carrying a key reaches the CMS at a path the other kind's routes take
/// (under any reading), and no identity header reaches it that authgate
/// did not set for that key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attack_corpora_through_nginx_and_caddy() {
    use authgate::route::RouteClass;
    let env = Env::with_config(DOORS_CONFIG).await;
    env.super_admin("root@example.com");
    let content = |name: &str, ty: &str, perms: &[&str]| env.content_token(name, ty, perms);
    let (ro_id, ro) = content("ro", "read-only", &[]);
    let (full_id, full) = content("full", "full-access", &[]);
    let (create_id, create) = content("create", "custom", &["api::article.article.create"]);
    let (admin_id, admin) = env.admin_token(
        "admin",
        "root@example.com",
        &[
            "admin::users.read",
            "admin::users.create",
            "plugin::content-manager.explorer.read@api::article.article",
            "plugin::content-manager.explorer.create@api::article.article",
            "plugin::upload.read",
            "plugin::email.settings.read",
            "plugin::users-permissions.roles.read",
            "plugin::content-type-builder.read",
            "plugin::i18n.locale.read",
        ],
    );
    let (noperm_id, noperm) = env.admin_token("noperm", "root@example.com", &[]);
    let key = |placeholder, key: &String, id, kind| Key {
        placeholder,
        key: key.clone(),
        id,
        kind,
    };
    let keys = [
        key(
            "{RO_UPPER}",
            &ro.to_uppercase(),
            ro_id,
            RouteClass::ContentApi,
        ),
        key("{RO}", &ro, ro_id, RouteClass::ContentApi),
        key("{FULL}", &full, full_id, RouteClass::ContentApi),
        key("{CREATE}", &create, create_id, RouteClass::ContentApi),
        key("{ADMIN}", &admin, admin_id, RouteClass::Admin),
        key("{NOPERM}", &noperm, noperm_id, RouteClass::Admin),
    ];
    let cfg = env.config();
    let g = env.gateway().await;
    let decision = g.decision.unwrap();
    let fronts = [
        Front::nginx(decision, env.upstream),
        Front::caddy(decision, env.upstream),
    ];
    let log_url = format!("http://{}/__log", env.upstream);
    let mut cases = Vec::new();
    for file in ["cases.jsonl", "readings.jsonl"] {
        let path = format!("{}/tests/attacks/{file}", env!("CARGO_MANIFEST_DIR"));
        for line in std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            let case: Value = serde_json::from_str(line).unwrap();
            let mut raw = case["req"].as_str().unwrap().to_owned();
            for k in &keys {
                raw = raw.replace(k.placeholder, &k.key);
            }
            cases.push((case["name"].as_str().unwrap_or("?").to_owned(), raw));
        }
    }
    assert!(cases.len() >= 500, "{} cases", cases.len());
    let mut failures = Vec::new();
    let mut forwarded = 0;
    for front in &fronts {
        for (name, raw) in &cases {
            let _ = get(&log_url, None).await;
            let _status = send_raw(front.addr, raw.as_bytes()).await;
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            let seen: Vec<Value> = serde_json::from_slice(&get(&log_url, None).await.body).unwrap();
            for r in &seen {
                forwarded += 1;
                let why = check_arrival(&cfg, &keys, r);
                failures.extend(
                    why.into_iter()
                        .map(|w| format!("{} {name}: {w}", front.name)),
                );
            }
        }
    }
    assert!(forwarded > 100, "only {forwarded} requests were forwarded");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// What is wrong with one request the CMS received, if anything.
fn check_arrival(cfg: &authgate::config::Config, keys: &[Key], r: &Value) -> Vec<String> {
    use authgate::route::RouteClass;
    let mut why = Vec::new();
    let headers = r["headers"].as_object().cloned().unwrap_or_default();
    let values = |n: &str| -> Vec<String> {
        headers
            .get(n)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let auth = values("authorization").join(",");
    // The longest placeholder's key first: RO_UPPER is RO in capitals.
    let key = keys.iter().find(|k| auth.contains(&k.key));
    let target = r["path"].as_str().unwrap_or("/");
    let method: http::Method = r["method"].as_str().unwrap_or("GET").parse().unwrap();
    if let Some(k) = key {
        let (path, query) = target
            .split_once('?')
            .map_or((target, None), |(p, q)| (p, Some(q)));
        let normal = authgate::route::normalise(path).map(|p| p.into_owned());
        match normal.map(|n| cfg.routes.judge(&method, path, query, &n).map(|r| r.class)) {
            Ok(Ok(class)) => {
                let other = match k.kind {
                    RouteClass::Admin => RouteClass::ContentApi,
                    _ => RouteClass::Admin,
                };
                if class == other {
                    why.push(format!(
                        "{} key reached {method} {target} ({})",
                        k.placeholder,
                        class.as_str()
                    ));
                }
            }
            _ => why.push(format!(
                "{} key reached {method} {target}, a target with disagreeing readings",
                k.placeholder
            )),
        }
    }
    for (name, _) in &headers {
        if !name.replace('_', "-").starts_with("x-auth-") {
            continue;
        }
        let vals: Vec<String> = values(name).into_iter().filter(|v| !v.is_empty()).collect();
        if vals.is_empty() {
            continue;
        }
        if !IDENTITY_NAMES.contains(&name.as_str()) || vals.len() != 1 {
            why.push(format!("{name}: {vals:?} reached the CMS"));
        }
    }
    let id = values("x-auth-token-id")
        .into_iter()
        .find(|v| !v.is_empty());
    match (id, key) {
        (None, _) => {}
        (Some(id), Some(k)) if id == k.id.to_string() => {}
        (Some(id), _) => why.push(format!("x-auth-token-id {id} for Authorization {auth:.20}")),
    }
    why
}

/// `decision.tls_cert`/`tls_key`: the listener speaks TLS, offering h2 (for
/// gRPC) and http/1.1 in ALPN.
#[tokio::test]
async fn the_decision_listener_speaks_tls_with_h2_and_http1() {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = std::env::temp_dir().join(format!("authgate-doors-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.join("d.crt"), dir.join("d.key"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let env = Env::with_config(&format!(
        "[decision]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert.display(),
        key.display()
    ))
    .await;
    let g = env.gateway().await;
    let decision = g.decision.unwrap();
    let connect = |alpn: &'static [u8]| {
        let der = ck.cert.der().to_vec();
        async move {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(rustls::pki_types::CertificateDer::from(der))
                .unwrap();
            let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
            cfg.alpn_protocols = vec![alpn.to_vec()];
            let tcp = tokio::net::TcpStream::connect(decision).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            tokio_rustls::TlsConnector::from(Arc::new(cfg))
                .connect(name, tcp)
                .await
                .unwrap()
        }
    };
    let h2 = connect(b"h2").await;
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut h1 = connect(b"http/1.1").await;
    assert_eq!(h1.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    h1.write_all(
        b"GET /forward-auth HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Method: GET\r\n\
          X-Forwarded-Uri: /api/articles\r\nX-Forwarded-Host: cms.example\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let _ = h1.read_to_end(&mut buf).await;
    assert!(
        buf.starts_with(b"HTTP/1.1 200 "),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
