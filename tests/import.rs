//! Bringing existing keys along (issue 16, item 4): `token import` reads a
//! legacy CMS's key (or, with `--hash`, a Strapi row's `access_key`) on
//! standard input, and `POST /admin/{api,admin}-tokens/import` takes it in
//! the body. Imported keys of any accepted shape work at request time;
//! made-up keys of those shapes are still refused from memory.

// Helpers below are test code too: a failure is the test failing.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

const ARTICLES: &str = "/api/articles";

/// Characters a `Bearer` credential can carry, but no `.`: a key of them
/// is never JWT-shaped.
const TOKEN68: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_~+/=";

/// A random key of `len` such characters, after `prefix`.
fn made_up(prefix: &str, len: usize) -> String {
    let mut raw = vec![0u8; len - prefix.len()];
    getrandom::fill(&mut raw).unwrap();
    let tail: String = raw
        .iter()
        .map(|b| char::from(TOKEN68[usize::from(*b) % TOKEN68.len()]))
        .collect();
    format!("{prefix}{tail}")
}

fn import(env: &Env, args: &[&str], stdin: &str) -> Output {
    let mut a = vec!["token", "import"];
    a.extend(args);
    env.cli_stdin(&a, stdin)
}

/// `token import ARGS --json` with `stdin`, which must succeed: the token.
fn import_json(env: &Env, args: &[&str], stdin: &str) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = import(env, &a, stdin);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.get("key").is_none(), "the key is not printed back: {v}");
    v
}

/// Import a content-API token named `name` with `key`; its id.
fn imported(env: &Env, name: &str, key: &str) -> i64 {
    let v = import_json(
        env,
        &["--kind", "content-api", "--name", name],
        &format!("{key}\n"),
    );
    v["id"].as_i64().unwrap()
}

/// Exit 1 with one line on stderr, containing `needle` (after the note
/// that the CLI acts as the host operator).
fn refused(out: &Output, needle: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    let err = stderr(out);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.starts_with("authgate: acting as the host operator"))
        .collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(lines[0].contains(needle), "{err}");
}

fn invalid() -> Value {
    envelope(401, "UnauthorizedError", "Missing or invalid credentials")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_keys_work_and_made_up_ones_of_their_shape_never_reach_postgres() {
    let env = Env::new().await;
    let g = env.gateway().await;
    // A legacy CMS's keys: 40 characters (with every punctuation a Bearer
    // value may hold), the shortest and the longest accepted.
    let forty = "sk_live_Ab-Cd.Ef_Gh~Ij+Kl/Mn=Op012345678";
    assert_eq!(forty.len(), 40);
    let keys = [forty.to_owned(), made_up("", 20), made_up("x", 512)];
    let ids: Vec<i64> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| imported(&env, &format!("legacy-{i}"), k))
        .collect();
    // Each announced hash is in the gateway's set of issued hashes.
    eventually(Duration::from_secs(1), "3 known hashes", || async {
        metric(&g.metrics_text().await, "authgate_known_hashes") == 3.0
    })
    .await;

    // Made-up keys of the same shapes. Unknown to the set, a budget of
    // MISS_BUDGET a second is still looked up (a key created a moment ago
    // may not be announced yet); past it, every one is refused from
    // memory. The budget's second starts at the first unknown key after a
    // quiet second, so: wait, spend it, then one more made-up 40-character
    // key costs no query, and the imported keys (not cached yet) are
    // admitted by the set, not by the spent budget.
    let budget = f64::from(authgate::known::MISS_BUDGET);
    let mut shown = false;
    for attempt in 0..3 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let started = Instant::now();
        let q0 = store_queries(&g.metrics_text().await);
        for i in 0..150 {
            let fake = made_up(["sk_live_", "", "tok-", "~"][i % 4], 40);
            assert_eq!(get(&g.url(ARTICLES), Some(&fake)).await.status, 401);
        }
        let q1 = store_queries(&g.metrics_text().await);
        let fake = made_up("sk_live_", 40);
        assert_eq!(get(&g.url(ARTICLES), Some(&fake)).await.json(), invalid());
        let q2 = store_queries(&g.metrics_text().await);
        for (key, id) in keys.iter().zip(&ids) {
            g.accepts_as(ARTICLES, key, *id).await;
        }
        let took = started.elapsed();
        eprintln!(
            "attempt {attempt}: {} lookups for 150 made-up keys, {} for the next, in {took:?}",
            q1 - q0,
            q2 - q1
        );
        if took < Duration::from_millis(950) {
            assert_eq!(q1 - q0, budget, "the budget, and not one more");
            assert_eq!(q2, q1, "a made-up 40-character key refused without a query");
            shown = true;
            break;
        }
    }
    assert!(shown, "this machine never ran 150 requests within a second");

    // The audit trail: a create, marked imported; never the key.
    let events = env.ok(&["audit", "list", "--action", "api-token.create", "--json"]);
    assert_eq!(events.lines().count(), 3, "{events}");
    for line in events.lines() {
        let e: Value = serde_json::from_str(line).unwrap();
        assert_eq!(e["changes"]["imported"], true, "{e}");
    }
    assert!(keys.iter().all(|k| !events.contains(k.as_str())));
}

/// A Strapi row's `access_key`: HMAC-SHA512 of its key with the shared
/// salt. The key and the hash.
fn strapi_row() -> (String, String) {
    let key = authgate::token::generate_key().unwrap();
    let access_key = authgate::token::Hasher::new(SALT).hash_hex(&key);
    (key, access_key)
}

#[tokio::test]
async fn a_strapi_access_key_is_imported_with_hash() {
    let env = Env::new().await;
    env.ok(&["user", "create", "--email", "ed@example.com"]);
    let (strapi_key, access_key) = strapi_row();
    let args = [
        "--kind",
        "admin",
        "--name",
        "from-strapi",
        "--owner",
        "ed@example.com",
        "--hash",
    ];
    let admin = import_json(&env, &args, &access_key.to_uppercase());
    assert_eq!(admin["owner"], "ed@example.com");
    let custom_args = [
        "--kind",
        "content-api",
        "--name",
        "custom",
        "--type",
        "custom",
        "--permission",
        "api::article.article.find",
        "--duration",
        "30d",
        "--allow-cidr",
        "127.0.0.0/8",
    ];
    let custom = import_json(&env, &custom_args, "legacy-custom-key-0123456789\n");
    assert!(custom["expires_at"].is_string(), "{custom}");
    assert_eq!(
        custom["allowed_cidrs"],
        json!(["127.0.0.0/8"]),
        "pinned as created"
    );
    let hash_again = ["--kind", "content-api", "--name", "y", "--hash"];
    refused(
        &import(&env, &hash_again, &access_key),
        &format!("the key is already in use by token {}", admin["id"]),
    );

    let g = env.gateway().await;
    let admin_id = admin["id"].as_i64().unwrap();
    g.accepts_as("/admin/users/me", &strapi_key, admin_id).await;
    let custom_id = custom["id"].as_i64().unwrap();
    g.accepts_as(ARTICLES, "legacy-custom-key-0123456789", custom_id)
        .await;
    let r = get(
        &g.url("/api/homepage"),
        Some("legacy-custom-key-0123456789"),
    )
    .await;
    assert_eq!(r.status, 403, "a custom token holds only its actions");
}

#[tokio::test]
async fn keys_in_use_or_of_the_wrong_shape_are_refused_in_one_line() {
    let env = Env::new().await;
    let imported_id = imported(&env, "legacy", "legacy-key-0123456789");
    let (generated_id, generated) = env.content_token("generated", "read-only", &[]);
    let (rotated_id, replaced) = env.content_token("rotated", "read-only", &[]);
    env.ok(&[
        "token",
        "regenerate",
        &rotated_id.to_string(),
        "--keep-old-for",
        "1h",
    ]);
    let plain = ["--kind", "content-api", "--name", "x"];
    let hash = ["--kind", "content-api", "--name", "z", "--hash"];
    let custom = ["--kind", "content-api", "--name", "w", "--type", "custom"];
    let in_use = |id: i64| format!("the key is already in use by token {id}");
    let rows: &[(&[&str], String, String)] = &[
        (&plain, "legacy-key-0123456789".into(), in_use(imported_id)),
        (&plain, generated, in_use(generated_id)),
        (
            &plain,
            replaced,
            format!("{} (the key a regenerate replaced)", in_use(rotated_id)),
        ),
        (
            &plain,
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXNpZw".into(),
            "a key must not look like a JWT".into(),
        ),
        (
            &plain,
            "0123456789abcdefghi".into(),
            "a key must be 20 to 512 characters long, not 19".into(),
        ),
        (
            &plain,
            "0123456789 abcdefghij".into(),
            "a key may hold only letters, digits and".into(),
        ),
        (&plain, "\n".into(), "no key on standard input".into()),
        (
            &hash,
            strapi_row().1[..127].to_owned(),
            "an access_key hash is 128 hexadecimal characters (HMAC-SHA512 of the key), not 127"
                .into(),
        ),
        (
            &custom,
            "another-legacy-key-0123456789".into(),
            "a custom token needs at least one --permission ACTION".into(),
        ),
    ];
    for (args, stdin, needle) in rows {
        refused(&import(&env, args, stdin), needle);
    }
    let names = env.ok(&["token", "list", "--json"]);
    assert_eq!(
        names.lines().count(),
        3,
        "nothing refused was stored: {names}"
    );
    let help = env.cli(&["token", "import", "--help"]);
    assert!(
        !String::from_utf8_lossy(&help.stdout).contains("--key"),
        "no way to give the key on the command line"
    );
}

async fn post(g: &Gateway, path: &str, key: &str, body: Value) -> Resp {
    g.mgmt_post(path, key, &body.to_string()).await
}

#[tokio::test]
async fn the_rest_api_imports_keys_of_both_kinds() {
    let env = Env::new().await;
    let root = env.token_manager("root@example.com");
    let (_, reader) = env.admin_token("reader", "root@example.com", &["admin::api-tokens.read"]);
    let g = env.gateway().await;

    let legacy = "sk_test_0123456789abcdefghijklmnopqrstuv";
    let r = post(
        &g,
        "/admin/api-tokens/import",
        &root,
        json!({"name": "legacy", "type": "read-only", "lifespan": null, "accessKey": legacy}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let data = r.json()["data"].clone();
    assert!(data.get("accessKey").is_none(), "not sent back: {data}");
    g.accepts_as(ARTICLES, legacy, data["id"].as_i64().unwrap())
        .await;

    let (strapi_key, hash) = strapi_row();
    let r = post(
        &g,
        "/admin/admin-tokens/import",
        &root,
        json!({"name": "from-strapi", "accessKeyHash": hash}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let data = r.json()["data"].clone();
    assert_eq!(
        data["adminUserOwner"]["email"], "root@example.com",
        "{data}"
    );
    let id = data["id"].as_i64().unwrap();
    g.accepts_as("/admin/users/me", &strapi_key, id).await;

    let body = |extra: Value| {
        let mut b = json!({"name": "x", "type": "read-only"});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    for (extra, message) in [
        (
            json!({"accessKey": legacy}),
            "the key is already in use by token",
        ),
        (
            json!({"accessKey": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXNpZw"}),
            "a key must not look like a JWT",
        ),
        (
            json!({"accessKey": legacy, "accessKeyHash": hash}),
            "give exactly one of accessKey",
        ),
        (json!({}), "give exactly one of accessKey"),
        (json!({"accessKey": 12345678901234567890u64}), "as a string"),
        (
            json!({"accessKey": "fresh-legacy-key-0123456789", "owner": "x"}),
            "invalid body",
        ),
    ] {
        let r = post(&g, "/admin/api-tokens/import", &root, body(extra)).await;
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
        let e = r.json()["error"].clone();
        assert_eq!(e["name"], "ValidationError");
        assert!(e["message"].as_str().unwrap().contains(message), "{e}");
    }
    // Importing is creating: it takes the create permission.
    let r = post(
        &g,
        "/admin/api-tokens/import",
        &reader,
        body(json!({"accessKey": "fresh-legacy-key-0123456789"})),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["name"], "PolicyError");
    let r = request(
        "GET",
        &g.mgmt("/admin/api-tokens/import"),
        Some(&root),
        &[],
        b"",
    )
    .await;
    assert_eq!(r.status, 404, "not a token id");
}
