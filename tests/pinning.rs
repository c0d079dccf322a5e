//! Network pinning (issue 16, item 3) through the real binary and the real
//! gateway: `--allow-cidr` on `token create`, `token update`, the 403 a
//! pinned token gets from elsewhere, the client address behind trusted
//! proxies (forged `X-Forwarded-For` entries never count), the metric, and
//! the audit trail. The REST API and the web page are in
//! `tests/management.rs`; the decision's table (IPv6 included) is in
//! `src/authz/tests.rs`.

// Helpers below are test code too: a failure is the test failing.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

/// Exactly the body a pinned token gets from elsewhere.
const NOT_ALLOWED: &str = r#"{"data":null,"error":{"status":403,"name":"ForbiddenError","message":"Client address not allowed","details":{}}}"#;

/// Create a full-access content-API token allowed from `cidrs`; (id, key).
fn pinned(env: &Env, name: &str, cidrs: &[&str]) -> (i64, String) {
    let options: Vec<&str> = cidrs.iter().flat_map(|c| ["--allow-cidr", c]).collect();
    env.content_token_with(name, "full-access", &options)
}

async fn status_from(g: &Gateway, key: &str, xff: Option<&str>) -> Resp {
    let headers: Vec<(&str, &str)> = xff.map(|v| ("x-forwarded-for", v)).into_iter().collect();
    request("GET", &g.url("/api/articles"), Some(key), &headers, b"").await
}

fn denied_count(metrics: &str, class: &str) -> u64 {
    let series = format!(
        r#"authgate_denied_total{{door="proxy",reason="address_not_allowed",route_class="{class}"}} "#
    );
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |n| n.trim().parse().unwrap())
}

async fn metrics(g: &Gateway) -> String {
    let r = get(&format!("http://{}/metrics", g.metrics), None).await;
    String::from_utf8_lossy(&r.body).into_owned()
}

async fn last_used_is_set(env: &Env, id: i64) -> bool {
    let q = format!("SELECT last_used_at IS NOT NULL FROM tokens WHERE id = {id}");
    sql(&env.schema, &q).await[0].get(0)
}

#[tokio::test]
async fn a_pinned_token_works_from_its_networks_only() {
    let env = Env::new().await;
    // Tests reach the gateway from 127.0.0.1.
    let (home_id, home) = pinned(&env, "home", &["127.0.0.0/8", "2001:db8::/32"]);
    let (away_id, away) = pinned(&env, "away", &["10.0.0.0/8"]);
    let shown = env.json(&["token", "show", &home_id.to_string()]);
    assert_eq!(
        shown["allowed_cidrs"],
        json!(["127.0.0.0/8", "2001:db8::/32"])
    );
    let text = env.ok(&["token", "show", &home_id.to_string()]);
    assert!(
        text.contains("networks:    127.0.0.0/8, 2001:db8::/32"),
        "{text}"
    );
    let g = env.gateway().await;

    let r = status_from(&g, &home, None).await;
    assert_eq!(r.status, 200, "from inside its networks");
    assert_eq!(
        r.upstream_header("x-auth-token-id"),
        Some(home_id.to_string())
    );
    let r = status_from(&g, &away, None).await;
    assert_eq!(r.status, 403, "from outside its networks");
    assert_eq!(String::from_utf8_lossy(&r.body), NOT_ALLOWED);
    assert_eq!(r.headers["content-type"], "application/json; charset=utf-8");
    // A client's own X-Forwarded-For from an untrusted peer changes nothing.
    let r = status_from(&g, &away, Some("10.1.2.3")).await;
    assert_eq!(r.status, 403, "a client-sent X-Forwarded-For never counts");
    let r = status_from(&g, &home, Some("10.1.2.3")).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.upstream_header("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        denied_count(&metrics(&g).await, "content-api"),
        2,
        "counted under its own reason"
    );

    // A refusal from elsewhere is no use of the token: last_used_at stays
    // (uses are written in batches within a second; the home token's,
    // after the refusals, was).
    eventually(Duration::from_secs(5), "home's use recorded", || {
        last_used_is_set(&env, home_id)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !last_used_is_set(&env, away_id).await,
        "no use recorded from elsewhere"
    );

    // `token update` changes the list; every replica's cache hears of it.
    let updated = env.json(&[
        "token",
        "update",
        &away_id.to_string(),
        "--allow-cidr",
        "127.0.0.1",
    ]);
    assert_eq!(updated["allowed_cidrs"], json!(["127.0.0.1/32"]));
    eventually(Duration::from_secs(5), "the new list applies", || async {
        status_from(&g, &away, None).await.status == 200
    })
    .await;
    env.ok(&[
        "token",
        "update",
        &away_id.to_string(),
        "--allow-cidr",
        "192.0.2.0/24",
    ]);
    eventually(
        Duration::from_secs(5),
        "the narrower list applies",
        || async { status_from(&g, &away, None).await.status == 403 },
    )
    .await;
    let cleared = env.json(&["token", "update", &away_id.to_string(), "--clear-cidrs"]);
    assert_eq!(cleared["allowed_cidrs"], json!([]));
    eventually(Duration::from_secs(5), "unpinned: anywhere", || async {
        status_from(&g, &away, None).await.status == 200
    })
    .await;
    // A write of the list alone (psql, another tool) is announced too
    // (the cache keeps a record for a minute otherwise).
    exec(
        &env.schema,
        &format!("UPDATE tokens SET allowed_cidrs = '{{192.0.2.0/24}}' WHERE id = {away_id}"),
    )
    .await;
    eventually(Duration::from_secs(5), "a psql write applies", || async {
        status_from(&g, &away, None).await.status == 403
    })
    .await;
    g.stop().await;
}

#[tokio::test]
async fn token_update_on_the_command_line() {
    let env = Env::new().await;
    let (id, _) = env.content_token("ci", "read-only", &[]);
    let id = id.to_string();
    let t = env.json(&[
        "token",
        "update",
        &id,
        "--name",
        "deploy",
        "--description",
        "the CI",
    ]);
    assert_eq!(
        (t["name"].as_str(), t["description"].as_str()),
        (Some("deploy"), Some("the CI"))
    );
    assert_eq!(t["type"], "read-only", "what is not named stays");
    env.ok(&[
        "token",
        "update",
        &id,
        "--allow-cidr",
        "10.0.0.0/8",
        "--allow-cidr",
        "2001:db8::1",
    ]);
    env.ok(&["token", "update", &id, "--clear-cidrs"]);

    // The same events an edit through the API writes, `via` cli.
    let out = env.ok(&["audit", "list", "--action", "api-token.update", "--json"]);
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 3, "{out}");
    for e in &events {
        assert_eq!(
            (e["via"].as_str(), e["actor"].as_str()),
            (Some("cli"), Some("operator"))
        );
    }
    // Newest first.
    assert_eq!(
        events[2]["changes"],
        json!({"name": {"before": "ci", "after": "deploy"},
               "description": {"before": "", "after": "the CI"}})
    );
    assert_eq!(
        events[1]["changes"],
        json!({"allowed_cidrs": {"before": [], "after": ["10.0.0.0/8", "2001:db8::1/128"]}})
    );
    assert_eq!(
        events[0]["changes"],
        json!({"allowed_cidrs": {"before": ["10.0.0.0/8", "2001:db8::1/128"], "after": []}})
    );
    let create = env.ok(&["audit", "list", "--action", "api-token.create", "--json"]);
    let create: Value = serde_json::from_str(create.trim()).unwrap();
    assert_eq!(
        create["changes"]["allowed_cidrs"],
        json!({"before": null, "after": []})
    );
    env.ok(&["audit", "verify"]);

    // Bad usage: exit 2, one line, nothing written.
    let bad: &[(&[&str], &str)] = &[
        (
            &["token", "update", &id, "--allow-cidr", "10.0.0.1/8"],
            "authgate: --allow-cidr: `10.0.0.1/8` has host bits set: the block is 10.0.0.0/8 (or write 10.0.0.1/32 for the one address)",
        ),
        (
            &["token", "update", &id, "--allow-cidr", "10.0.0.0/33"],
            "authgate: --allow-cidr: `10.0.0.0/33`: the prefix length must be 0 to 32",
        ),
        (
            &["token", "create", "--kind", "content-api", "--name", "n", "--allow-cidr", "nope"],
            "authgate: --allow-cidr: `nope` is not an IP address or CIDR block",
        ),
    ];
    for (args, line) in bad {
        let out = env.cli(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(stderr(&out).trim_end(), *line, "{args:?}");
    }
    for args in [
        vec!["token", "update", &id],
        vec![
            "token",
            "update",
            &id,
            "--allow-cidr",
            "10.0.0.0/8",
            "--clear-cidrs",
        ],
    ] {
        let out = env.cli(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
    let list = env.ok(&["token", "list", "--json"]);
    assert_eq!(list.lines().count(), 1, "the refused create wrote nothing");
    let events = env.ok(&["audit", "list", "--action", "api-token.update", "--json"]);
    assert_eq!(events.lines().count(), 3, "refused updates wrote nothing");
    let missing = env.cli(&["token", "update", "999999", "--name", "x"]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(
        stderr(&missing).lines().last(),
        Some("authgate: no token with id 999999")
    );
}

/// Rewrite the env's config with `server.trusted_proxies`.
fn trust(env: &Env, proxies: &str) {
    env.write_config("");
    let text = std::fs::read_to_string(&env.config_path).unwrap().replace(
        "shutdown_grace = \"5s\"",
        &format!("shutdown_grace = \"5s\"\ntrusted_proxies = {proxies}"),
    );
    std::fs::write(&env.config_path, text).unwrap();
}

#[tokio::test]
async fn behind_a_trusted_proxy_forged_entries_do_not_get_in() {
    let env = Env::new().await;
    // The clients, as the load balancer in front (loopback, here) says.
    let (_, office) = pinned(&env, "office", &["203.0.113.0/24"]);
    trust(&env, r#"["127.0.0.1/32"]"#);
    let g = env.gateway().await;

    // (X-Forwarded-For as the proxy hands it on, status)
    let rows: &[(Option<&str>, u16)] = &[
        // The proxy saw 203.0.113.7 and says so.
        (Some("203.0.113.7"), 200),
        (Some("203.0.113.7:51000"), 200),
        // A client at 198.51.100.9 sent `X-Forwarded-For: 203.0.113.7`;
        // the proxy appended what it saw. The forged left-most entry is
        // the client's word, not the proxy's.
        (Some("203.0.113.7, 198.51.100.9"), 403),
        (Some("203.0.113.7, 198.51.100.9, 127.0.0.1"), 403),
        // Left of an entry that is no address, nobody vouches: the proxy
        // itself (127.0.0.1) is the client.
        (Some("203.0.113.7, unknown"), 403),
        // No chain: the peer.
        (None, 403),
    ];
    for (xff, status) in rows {
        let r = status_from(&g, &office, *xff).await;
        assert_eq!(r.status, *status, "X-Forwarded-For: {xff:?}");
        if *status == 403 {
            assert_eq!(String::from_utf8_lossy(&r.body), NOT_ALLOWED);
        }
    }
    let r = status_from(&g, &office, Some("203.0.113.7")).await;
    assert_eq!(
        r.upstream_header("x-forwarded-for").as_deref(),
        Some("203.0.113.7, 127.0.0.1"),
        "the trusted chain is extended"
    );
    assert_eq!(denied_count(&metrics(&g).await, "content-api"), 4);
    g.stop().await;

    // The same peer, no longer trusted: its header is ignored.
    env.write_config("");
    let g = env.gateway().await;
    let r = status_from(&g, &office, Some("203.0.113.7")).await;
    assert_eq!(
        r.status, 403,
        "an untrusted peer's X-Forwarded-For never counts"
    );
    assert_eq!(String::from_utf8_lossy(&r.body), NOT_ALLOWED);
    g.stop().await;
}
