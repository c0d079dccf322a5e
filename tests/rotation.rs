//! Rotation with overlap (issue 16, item 2): `token regenerate
//! --keep-old-for` and the REST regenerate's `keepOldForSeconds`. The new
//! key works at once, the old one with the same identity until the overlap
//! ends, then is refused on every replica by its own clock; deleting the
//! token or its owner losing access ends both keys at once.

// Helpers below are test code too: a failure is the test failing.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use support::*;

const ARTICLES: &str = "/api/articles";

fn unknown_key() -> Value {
    envelope(401, "UnauthorizedError", "Missing or invalid credentials")
}

/// A time as the CLI, the API and the audit trail write it, to the
/// millisecond (the audit trail writes microseconds).
fn time(v: &Value) -> SystemTime {
    let s = v.as_str().unwrap_or_else(|| panic!("a time: {v}"));
    let t = humantime::parse_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    let ms = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap())
}

/// `token regenerate ID --keep-old-for KEEP --json`: its output and the
/// new key.
fn regenerate_keeping(env: &Env, id: i64, keep: &str) -> (Value, String) {
    let v = env.json(&[
        "token",
        "regenerate",
        &id.to_string(),
        "--keep-old-for",
        keep,
    ]);
    let key = v["key"].as_str().unwrap().to_owned();
    (v, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_key_works_on_both_replicas_until_the_overlap_ends() {
    let env = Env::new().await;
    let (id, old) = env.content_token("ci", "read-only", &[]);
    let g1 = env.gateway().await;
    g1.accepts_as(ARTICLES, &old, id).await;

    let (regen, new) = regenerate_keeping(&env, id, "4s");
    let until = time(&regen["old_key_expires_at"]);
    let left = until.duration_since(SystemTime::now()).unwrap();
    assert!(left > Duration::from_secs(3), "{left:?} left of 4s");

    // A replica started now loads the old hash into its known-hash set
    // (both of the token's hashes); the first heard the regenerate.
    let g2 = env.gateway().await;
    assert_eq!(
        metric(&g2.metrics_text().await, "authgate_known_hashes"),
        2.0
    );
    for g in [&g1, &g2] {
        g.accepts_as(ARTICLES, &new, id).await;
        g.accepts_as(ARTICLES, &old, id).await;
    }
    let show = env.ok(&["token", "show", &id.to_string()]);
    assert!(show.contains("old key:     works until"), "{show}");
    assert_eq!(
        env.json(&["token", "show", &id.to_string()])["old_key_expires_at"],
        regen["old_key_expires_at"]
    );

    // Poll both replicas with the old key until each refuses it: not
    // before the end, soon after, from the cached record (no lookup, no
    // event).
    let queries = [
        store_queries(&g1.metrics_text().await),
        store_queries(&g2.metrics_text().await),
    ];
    let mut refused: [Option<SystemTime>; 2] = [None, None];
    while refused.iter().any(Option::is_none) {
        for (i, g) in [&g1, &g2].into_iter().enumerate() {
            if refused[i].is_some() {
                continue;
            }
            let r = get(&g.url(ARTICLES), Some(&old)).await;
            match r.status {
                200 => assert!(SystemTime::now() < until + Duration::from_secs(1)),
                401 => {
                    assert_eq!(r.json(), unknown_key());
                    refused[i] = Some(SystemTime::now());
                }
                s => panic!("replica {i}: {s}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for (i, at) in refused.into_iter().flatten().enumerate() {
        let late = at
            .duration_since(until)
            .expect("not refused before the end");
        eprintln!("replica {i}: old key refused {late:?} after the overlap ended");
        assert!(late < Duration::from_millis(500), "replica {i}: {late:?}");
    }
    assert_eq!(
        [
            store_queries(&g1.metrics_text().await),
            store_queries(&g2.metrics_text().await),
        ],
        queries,
        "refused from the cached record, without a lookup"
    );
    for g in [&g1, &g2] {
        g.accepts_as(ARTICLES, &new, id).await;
    }
    let show = env.ok(&["token", "show", &id.to_string()]);
    assert!(!show.contains("old key"), "the overlap is over: {show}");

    // The regenerate event records the overlap.
    let events = env.ok(&[
        "audit",
        "list",
        "--action",
        "api-token.regenerate",
        "--json",
    ]);
    let e: Value = serde_json::from_str(events.lines().next().unwrap()).unwrap();
    assert_eq!(e["changes"]["old_key_expiry"]["before"], Value::Null);
    assert_eq!(time(&e["changes"]["old_key_expiry"]["after"]), until);
    assert!(!events.contains(&old) && !events.contains(&new));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_token_ends_both_keys_at_once_on_both_replicas() {
    let env = Env::new().await;
    let (id, old) = env.content_token("ci", "read-only", &[]);
    let (_, new) = regenerate_keeping(&env, id, "1h");
    let (g1, g2) = (env.gateway().await, env.gateway().await);
    for g in [&g1, &g2] {
        g.accepts_as(ARTICLES, &old, id).await;
        g.accepts_as(ARTICLES, &new, id).await;
    }
    env.ok(&["token", "delete", &id.to_string()]);
    for g in [&g1, &g2] {
        for key in [&old, &new] {
            eventually(Duration::from_secs(1), "both keys refused", || async {
                get(&g.url(ARTICLES), Some(key)).await.status == 401
            })
            .await;
        }
    }
}

#[tokio::test]
async fn an_owner_losing_access_ends_the_overlap_for_good() {
    let env = Env::new().await;
    env.ok(&["user", "create", "--email", "ed@example.com"]);
    let (id, old) = env.admin_token("ed-ci", "ed@example.com", &[]);
    let (_, new) = regenerate_keeping(&env, id, "7d");
    let g = env.gateway().await;
    let me = "/admin/users/me";
    g.accepts_as(me, &old, id).await;
    g.accepts_as(me, &new, id).await;

    env.ok(&["user", "deactivate", "ed@example.com"]);
    let deactivated = envelope(401, "UnauthorizedError", "Token owner is deactivated");
    eventually(Duration::from_secs(1), "new key refused", || async {
        get(&g.url(me), Some(&new)).await.json() == deactivated
    })
    .await;
    assert_eq!(get(&g.url(me), Some(&old)).await.json(), unknown_key());

    env.ok(&["user", "activate", "ed@example.com"]);
    eventually(Duration::from_secs(1), "new key back", || async {
        get(&g.url(me), Some(&new)).await.status == 200
    })
    .await;
    assert_eq!(
        get(&g.url(me), Some(&old)).await.json(),
        unknown_key(),
        "the old key does not come back with its owner"
    );
    assert_eq!(
        env.json(&["token", "show", &id.to_string()])["old_key_expires_at"],
        Value::Null
    );
}

#[tokio::test]
async fn the_cli_refuses_an_overlap_over_7_days() {
    let env = Env::new().await;
    let (id, key) = env.content_token("ci", "read-only", &[]);
    for (arg, code, needle) in [
        (
            "8d",
            1,
            "the old key can keep working for at most 7 days, not 8days",
        ),
        ("soon", 2, "invalid duration `soon`"),
    ] {
        let out = env.cli(&[
            "token",
            "regenerate",
            &id.to_string(),
            "--keep-old-for",
            arg,
        ]);
        assert_eq!(out.status.code(), Some(code), "{arg}");
        let err = stderr(&out);
        assert!(err.contains(needle), "{arg}: {err}");
    }
    let g = env.gateway().await;
    g.accepts_as(ARTICLES, &key, id).await;
}

fn validation_error(r: &Resp, needle: &str) {
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    let e = &r.json()["error"];
    assert_eq!(e["name"], "ValidationError", "{e}");
    assert!(e["message"].as_str().unwrap().contains(needle), "{e}");
}

#[tokio::test]
async fn the_rest_regenerate_keeps_the_old_key_for_keep_old_for_seconds() {
    let env = Env::new().await;
    let root = env.token_manager("root@example.com");
    let g = env.gateway().await;
    let (id, first) = env.content_token("site", "read-only", &[]);
    let path = format!("/admin/api-tokens/{id}/regenerate");

    let r = g
        .mgmt_post(&path, &root, r#"{"keepOldForSeconds": 3600}"#)
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let data = r.json()["data"].clone();
    let second = data["accessKey"].as_str().unwrap().to_owned();
    let until = time(&data["oldKeyExpiresAt"]);
    let hour = until.duration_since(SystemTime::now()).unwrap();
    assert!(
        hour > Duration::from_secs(3590) && hour <= Duration::from_secs(3600),
        "{hour:?}"
    );
    g.accepts_as(ARTICLES, &first, id).await;
    g.accepts_as(ARTICLES, &second, id).await;
    let shown = request(
        "GET",
        &g.mgmt(&format!("/admin/api-tokens/{id}")),
        Some(&root),
        &[],
        b"",
    )
    .await;
    assert_eq!(
        shown.json()["data"]["oldKeyExpiresAt"],
        data["oldKeyExpiresAt"]
    );

    for (body, needle) in [
        (r#"{"keepOldForSeconds": 604801}"#, "at most 7 days"),
        (r#"{"keepOldForSeconds": -1}"#, "invalid body"),
        (r#"{"keepOld": 60}"#, "invalid body"),
    ] {
        validation_error(&g.mgmt_post(&path, &root, body).await, needle);
    }
    g.accepts_as(ARTICLES, &first, id).await;

    // Without the option (Strapi's empty body, or `{}`), at once: the
    // current key and the one still in its overlap both stop.
    let r = g.mgmt_post(&path, &root, "{}").await;
    assert_eq!(r.status, 201);
    let third = r.json()["data"].clone();
    assert_eq!(third["oldKeyExpiresAt"], Value::Null);
    for key in [&first, &second] {
        eventually(Duration::from_secs(1), "earlier keys refused", || async {
            get(&g.url(ARTICLES), Some(key)).await.status == 401
        })
        .await;
    }
    g.accepts_as(ARTICLES, third["accessKey"].as_str().unwrap(), id)
        .await;
    let r = g.mgmt_post(&path, &root, "").await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["data"]["oldKeyExpiresAt"], Value::Null);

    // Admin tokens (their owner regenerates them) take the same body.
    let (adm, adm_old) = env.admin_token("root-ci", "root@example.com", &[]);
    let r = g
        .mgmt_post(
            &format!("/admin/admin-tokens/{adm}/regenerate"),
            &root,
            &json!({"keepOldForSeconds": 60}).to_string(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let data = r.json()["data"].clone();
    assert!(data["oldKeyExpiresAt"].is_string(), "{data}");
    g.accepts_as("/admin/users/me", &adm_old, adm).await;
    let new = data["accessKey"].as_str().unwrap();
    g.accepts_as("/admin/users/me", new, adm).await;

    // The audit trail: the overlap begun, then ended by the immediate one.
    let events: Vec<Value> = env
        .ok(&[
            "audit",
            "list",
            "--action",
            "api-token.regenerate",
            "--json",
        ])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let changes: Vec<&Value> = events.iter().rev().map(|e| &e["changes"]).collect();
    assert_eq!(changes[0]["old_key_expiry"]["before"], Value::Null);
    assert_eq!(time(&changes[0]["old_key_expiry"]["after"]), until);
    assert_eq!(time(&changes[1]["old_key_expiry"]["before"]), until);
    assert_eq!(changes[1]["old_key_expiry"]["after"], Value::Null);
    assert_eq!(changes[2], &json!({}), "nothing to record");
}
