//! One judgement at every door (issue 28): the SPEC decision table through
//! the proxy and through each door of the decision listener — real nginx
//! (`auth_request`) and real Caddy (`forward_auth`) in front of it, and the
//! request shapes of Envoy's ext_authz `http_service` and Traefik's
//! `forwardAuth` — with the same outcome at every door: the status, the
//! identity the CMS receives (or the answer carries) and the refusal's
//! envelope. The table is rows of requests and columns of doors
//! ([`Column`]); a gRPC `Check` column is one more variant and one more
//! arm of [`Column::ask`].
//!
//! Beside it: the attack corpus through both real proxies, forged
//! forwarding and identity headers from the client, a caller outside
//! `decision.trusted_callers`, and nginx's `error_page` for 429 and 503.

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
    Traefik(SocketAddr),
}

impl Column {
    fn name(&self) -> &'static str {
        match self {
            Column::Proxy(_) => "proxy",
            Column::Nginx(_) => "nginx",
            Column::Caddy(_) => "caddy",
            Column::EnvoyHttp(_) => "envoy-http",
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
    env.ok(&[
        "user",
        "create",
        "--email",
        "root@example.com",
        "--role",
        "super-admin",
    ]);
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
    env.ok(&[
        "user",
        "create",
        "--email",
        "ed@example.com",
        "--role",
        "editor",
    ]);
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
