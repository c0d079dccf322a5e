//! The audit trail (issue 15) on a real database: one event per management
//! action through the CLI, the REST API and the bootstrap file, none for a
//! change that fails, never a key or a hash, a chain `audit verify` trusts
//! only while nobody edited, deleted or reordered it, and one chain under
//! two concurrent writers.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use authgate::audit::{AuditCtx, AuditKey, Origin};
use authgate::control::Actor;
use authgate::model::Permission;
use serde_json::{json, Value};
use support::*;

/// Every event, oldest first, as `audit list --json` prints them.
fn events(env: &Env) -> Vec<Value> {
    let out = env.ok(&["audit", "list", "--limit", "100000", "--json"]);
    let mut v: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("event JSON"))
        .collect();
    v.reverse();
    v
}

fn count_by_action(events: &[Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in events {
        *m.entry(e["action"].as_str().unwrap_or("?").to_owned())
            .or_insert(0) += 1;
    }
    m
}

fn with_encryption(env: &Env) {
    let text = std::fs::read_to_string(&env.config_path)
        .expect("config")
        .replace(
            "last_used_interval = \"1s\"",
            "last_used_interval = \"1s\"\nencryption_key = \"audit-test-encryption-key\"",
        );
    std::fs::write(&env.config_path, text).expect("config");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cli_action_is_one_event_and_failures_are_none() {
    let env = Env::new().await;
    with_encryption(&env);
    env.ok(&["role", "create", "editors"]);
    env.ok(&["role", "grant", "editors", "admin::admin-tokens.read"]);
    env.ok(&["role", "grant", "editors", "admin::admin-tokens.read"]); // no change
    env.ok(&["role", "grant", "editors", "admin::admin-tokens.create"]);
    env.ok(&["role", "revoke", "editors", "admin::admin-tokens.create"]);
    env.user("ed@example.com", "editors");
    env.ok(&["user", "deactivate", "ed@example.com"]);
    env.ok(&["user", "activate", "ed@example.com"]);
    env.ok(&["user", "block", "ed@example.com"]);
    env.ok(&["user", "unblock", "ed@example.com"]);
    env.ok(&["user", "add-role", "ed@example.com", "super-admin"]);
    env.ok(&["user", "remove-role", "ed@example.com", "super-admin"]);
    let (id, key) = env.content_token("ci", "read-only", &[]);
    let (admin_id, admin_key) =
        env.admin_token("ed-admin", "ed@example.com", &["admin::admin-tokens.read"]);
    env.ok(&["token", "show", &id.to_string(), "--reveal"]);
    env.ok(&[
        "token",
        "show",
        &admin_id.to_string(),
        "--reveal",
        "--as",
        "ed@example.com",
    ]);
    let out = env.cli(&["token", "regenerate", &id.to_string(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let regenerated: Value = serde_json::from_slice(&out.stdout).expect("json");
    // The event is also one log line, without the old or the new key.
    let line = stderr(&out);
    assert!(
        line.contains("authgate::audit") && line.contains("api-token.regenerate"),
        "{line}"
    );
    assert!(!line.contains(key.as_str()) && !line.contains(regenerated["key"].as_str().unwrap()));
    env.ok(&["token", "delete", &id.to_string()]);
    env.ok(&["user", "delete", "ed@example.com"]);
    env.ok(&["role", "create", "short-lived"]);
    env.ok(&["role", "delete", "short-lived"]);

    // Failures leave nothing: a duplicate name, a revoke of what is not
    // held, a user that does not exist, a view the actor may not make.
    let before = events(&env).len();
    assert!(!env.cli(&["role", "create", "editors"]).status.success());
    assert!(!env
        .cli(&["role", "revoke", "editors", "admin::users.read"])
        .status
        .success());
    assert!(!env
        .cli(&["user", "block", "nobody@example.com"])
        .status
        .success());
    assert!(!env.cli(&["token", "delete", "999999"]).status.success());
    assert!(!env.cli(&["role", "delete", "super-admin"]).status.success());
    assert!(!env
        .cli(&["role", "delete", "no-such-role"])
        .status
        .success());
    env.ok(&["user", "create", "--email", "eve@example.com"]);
    let (other, _) = env.content_token("other", "read-only", &[]);
    assert!(!env
        .cli(&[
            "token",
            "show",
            &other.to_string(),
            "--reveal",
            "--as",
            "eve@example.com"
        ])
        .status
        .success());
    assert_eq!(
        events(&env).len(),
        before + 2,
        "only eve and `other` were recorded"
    );

    let all = events(&env);
    let counts = count_by_action(&all);
    let expected: BTreeMap<String, usize> = [
        ("role.create", 2),
        ("role.update", 3),
        ("role.delete", 1),
        ("user.create", 2),
        ("user.update", 6),
        ("user.delete", 1),
        ("api-token.create", 2),
        ("api-token.view-key", 1),
        ("api-token.regenerate", 1),
        ("api-token.delete", 1),
        ("admin-token.create", 1),
        ("admin-token.view-key", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(counts, expected);

    for e in &all {
        assert_eq!(e["via"], "cli", "{e}");
        assert!(e["hash"].as_str().is_some_and(|h| h.len() == 64), "{e}");
        assert!(e["at"].as_str().is_some_and(|t| t.ends_with('Z')), "{e}");
    }
    let view = all
        .iter()
        .find(|e| e["action"] == "admin-token.view-key")
        .unwrap();
    assert_eq!(view["actor"], "ed@example.com");
    assert_eq!(
        view["target"],
        json!({"kind": "admin-token", "id": admin_id, "name": "ed-admin"})
    );
    let create = all
        .iter()
        .find(|e| e["action"] == "api-token.create")
        .unwrap();
    assert_eq!(create["actor"], "operator");
    assert_eq!(
        create["changes"]["name"],
        json!({"before": null, "after": "ci"})
    );
    assert_eq!(create["changes"]["type"]["after"], "read-only");
    let status: Vec<&Value> = all
        .iter()
        .filter(|e| e["action"] == "user.update")
        .map(|e| &e["changes"])
        .collect();
    assert_eq!(
        status[0],
        &json!({"status": {"before": "active", "after": "inactive"}})
    );
    assert_eq!(
        status[2],
        &json!({"status": {"before": "active", "after": "blocked"}})
    );
    assert_eq!(
        status[4]["roles"]["after"],
        json!(["editors", "super-admin"])
    );
    let deleted = all.iter().find(|e| e["action"] == "user.delete").unwrap();
    assert_eq!(deleted["changes"]["tokens"]["before"], json!([admin_id]));

    // No key, hash or encrypted key anywhere in the table.
    let hasher = authgate::token::Hasher::new(SALT);
    let rows = sql(
        &env.schema,
        "SELECT row_to_json(a)::text FROM audit_events a",
    )
    .await;
    let text: String = rows.iter().map(|r| r.get::<_, String>(0)).collect();
    let new_key = regenerated["key"].as_str().unwrap().to_owned();
    for secret in [&key, &admin_key, &new_key] {
        assert!(!text.contains(secret.as_str()), "a key is in audit_events");
        assert!(
            !text.contains(&hasher.hash_hex(secret)),
            "a key's hash is in audit_events"
        );
    }
    for enc in sql(
        &env.schema,
        "SELECT encrypted_key FROM tokens WHERE encrypted_key IS NOT NULL",
    )
    .await
    {
        assert!(
            !text.contains(&enc.get::<_, String>(0)),
            "an encrypted key is in audit_events"
        );
    }
    assert_eq!(
        env.ok(&["audit", "verify"]).trim(),
        format!("audit chain intact: {} events", all.len())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_actions_record_actor_request_and_client() {
    let env = Env::new().await;
    with_encryption(&env);
    env.super_admin("root@example.com");
    let perms = [
        "admin::api-tokens.read",
        "admin::api-tokens.create",
        "admin::api-tokens.update",
        "admin::api-tokens.delete",
        "admin::api-tokens.regenerate",
        "admin::audit-logs.read",
    ];
    let (_, root) = env.admin_token("root", "root@example.com", &perms);
    let g = env.gateway().await;
    let rid = [
        ("x-request-id", "audit-test-1"),
        ("content-type", "application/json"),
    ];
    let created = request(
        "POST",
        &g.mgmt("/admin/api-tokens"),
        Some(&root),
        &rid,
        br#"{"name":"via-api","type":"read-only","lifespan":null}"#,
    )
    .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    // The answer names authgate's own id, never the client's.
    let gateway_rid = created.headers["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(gateway_rid, "audit-test-1");
    let id = created.json()["data"]["id"].as_i64().unwrap();
    let base = g.mgmt(&format!("/admin/api-tokens/{id}"));
    let key = created.json()["data"]["accessKey"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        request(
            "PUT",
            &base,
            Some(&root),
            // A client id that is not a plain one is not recorded at all.
            &[
                ("x-request-id", "not plain <b>id</b>"),
                ("content-type", "application/json")
            ],
            br#"{"description":"changed"}"#
        )
        .await
        .status,
        200
    );
    assert_eq!(
        request("GET", &base, Some(&root), &rid, b"").await.status,
        200
    ); // key shown
    assert_eq!(
        request(
            "POST",
            &format!("{base}/regenerate"),
            Some(&root),
            &rid,
            b""
        )
        .await
        .status,
        201
    );
    assert_eq!(
        request("DELETE", &base, Some(&root), &rid, b"")
            .await
            .status,
        200
    );
    // A failed change: no event.
    let dup = request(
        "POST",
        &g.mgmt("/admin/api-tokens"),
        Some(&root),
        &rid,
        br#"{"name":"root","type":"nonsense"}"#,
    )
    .await;
    assert_eq!(dup.status, 400);

    let listed = get(
        &g.mgmt("/admin/audit-logs?actor=root@example.com&pageSize=10"),
        Some(&root),
    )
    .await;
    assert_eq!(listed.status, 200);
    let body = listed.json();
    let results = body["results"].as_array().unwrap();
    let actions: Vec<&str> = results
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "api-token.delete",
            "api-token.regenerate",
            "api-token.view-key",
            "api-token.update",
            "api-token.create"
        ]
    );
    assert_eq!(
        body["pagination"],
        json!({"page": 1, "pageSize": 10, "pageCount": 1, "total": 5})
    );
    let mut gateway_ids = std::collections::BTreeSet::new();
    for e in results {
        assert_eq!(e["via"], "api");
        assert_eq!(e["actor"], "root@example.com");
        // The request id is authgate's own (`<12 hex>-<hex>`); what the
        // client sent is a separate, labelled field.
        let own = e["request_id"].as_str().expect("request_id");
        assert_ne!(own, "audit-test-1", "{e}");
        let (prefix, counter) = own.split_once('-').expect("gateway id");
        assert!(
            prefix.len() == 12
                && (prefix.to_owned() + counter)
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit()),
            "{e}"
        );
        gateway_ids.insert(own.to_owned());
        if e["action"] == "api-token.update" {
            assert_eq!(e["client_request_id"], Value::Null, "{e}");
        } else {
            assert_eq!(e["client_request_id"], "audit-test-1", "{e}");
        }
        assert_eq!(e["client_ip"], "127.0.0.1");
        assert!(!e.to_string().contains(&key));
    }
    assert_eq!(gateway_ids.len(), 5, "one id per request");
    assert_eq!(results[4]["request_id"], gateway_rid.as_str());
    // The CLI shows both, labelled; the chain covers the new field.
    let text = env.ok(&["audit", "list", "--actor", "root@example.com"]);
    assert!(
        text.contains(&format!(
            "request-id={gateway_rid} client-request-id=audit-test-1"
        )),
        "{text}"
    );
    assert!(env
        .ok(&["audit", "verify"])
        .starts_with("audit chain intact"));
    assert_eq!(
        results[3]["changes"],
        json!({"description": {"before": "", "after": "changed"}})
    );
    let one = get(
        &g.mgmt(&format!("/admin/audit-logs/{}", results[0]["id"])),
        Some(&root),
    )
    .await;
    assert_eq!(one.json()["data"], results[0]);
    let filtered = get(
        &g.mgmt("/admin/audit-logs?action=api-token.update&since=1h"),
        Some(&root),
    )
    .await;
    assert_eq!(filtered.json()["pagination"]["total"], 1);
    assert_eq!(
        get(&g.mgmt("/admin/audit-logs/999999"), Some(&root))
            .await
            .status,
        404
    );

    // Reading the trail needs admin::audit-logs.read.
    let (_, reader) = env.admin_token("no-audit", "root@example.com", &["admin::api-tokens.read"]);
    assert_eq!(
        get(&g.mgmt("/admin/audit-logs"), Some(&reader))
            .await
            .status,
        403
    );

    // The chain covers the client's id: changed in place, it is named.
    exec(
        &env.schema,
        "SET session_replication_role = replica;
         UPDATE audit_events SET client_request_id = 'forged' WHERE client_request_id IS NOT NULL;
         SET session_replication_role = origin;",
    )
    .await;
    let out = env.cli(&["audit", "verify"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the chain covers client_request_id"
    );
    assert!(stderr(&out).contains("was edited"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_the_first_edited_deleted_or_reordered_event() {
    let env = Env::new().await;
    for i in 0..6 {
        env.ok(&["role", "create", &format!("r{i}")]);
    }
    assert_eq!(
        env.ok(&["audit", "verify"]).trim(),
        "audit chain intact: 6 events"
    );
    // The table refuses edits and deletions.
    for statement in [
        "UPDATE audit_events SET actor = 'x' WHERE id = 2",
        "DELETE FROM audit_events WHERE id = 2",
        "TRUNCATE audit_events",
    ] {
        let (client, conn) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(&format!("SET search_path = {}", env.schema))
            .await
            .unwrap();
        let err = client.batch_execute(statement).await.expect_err(statement);
        assert!(
            format!("{err:?}").contains("append-only"),
            "{statement}: {err:?}"
        );
    }
    // Someone with the power to disable triggers edits anyway.
    let tamper = |sql_text: &str| {
        format!("SET session_replication_role = replica; {sql_text}; SET session_replication_role = origin;")
    };
    let verify = |env: &Env| {
        let out = env.cli(&["audit", "verify"]);
        (out.status.code(), stderr(&out))
    };
    exec(
        &env.schema,
        &tamper("UPDATE audit_events SET target_name = 'renamed' WHERE id = 3"),
    )
    .await;
    let (code, err) = verify(&env);
    assert_eq!(code, Some(1));
    assert!(err.contains("event 3 was edited"), "{err}");
    exec(
        &env.schema,
        &tamper("UPDATE audit_events SET target_name = 'r2' WHERE id = 3"),
    )
    .await;
    assert_eq!(verify(&env).0, Some(0), "restored");

    exec(&env.schema, &tamper(
        "CREATE TEMP TABLE saved AS SELECT * FROM audit_events WHERE id = 4; DELETE FROM audit_events WHERE id = 4",
    ))
    .await;
    let (code, err) = verify(&env);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("the event before event 5 was deleted"),
        "{err}"
    );

    // Swap two rows' contents, keeping ids in order.
    let env2 = Env::new().await;
    for i in 0..4 {
        env2.ok(&["role", "create", &format!("s{i}")]);
    }
    exec(
        &env2.schema,
        &tamper(
            "UPDATE audit_events SET id = -id WHERE id IN (2, 3);
         UPDATE audit_events SET id = 3 WHERE id = -2;
         UPDATE audit_events SET id = 2 WHERE id = -3",
        ),
    )
    .await;
    let (code, err) = verify(&env2);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("event 2 was edited") || err.contains("event 3"),
        "{err}"
    );

    // Deleting the oldest events without a checkpoint is caught too.
    let env3 = Env::new().await;
    for i in 0..4 {
        env3.ok(&["role", "create", &format!("t{i}")]);
    }
    exec(
        &env3.schema,
        &tamper("DELETE FROM audit_events WHERE id <= 2"),
    )
    .await;
    let (code, err) = verify(&env3);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("events before event 3 were deleted without a checkpoint"),
        "{err}"
    );
}

/// Run `statements` as one transaction on a connection of the
/// application's role (the tests' role), as anyone holding it could.
async fn as_app_role(schema: &str, statements: &str) -> Result<(), tokio_postgres::Error> {
    let client = connect_in(schema).await;
    client
        .batch_execute(&format!("BEGIN; {statements}; COMMIT"))
        .await
}

/// `(newest id, its hash)` as `audit list --json` shows them.
fn head(env: &Env) -> (i64, String) {
    let all = events(env);
    let last = all.last().expect("an event");
    (
        last["id"].as_i64().expect("id"),
        last["hash"].as_str().expect("hash").to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tail_cannot_be_cut_and_a_cut_below_a_known_head_is_caught() {
    let env = Env::new().await;
    for i in 0..5 {
        env.ok(&["role", "create", &format!("r{i}")]);
    }
    let (id, hash) = head(&env);
    assert_eq!(id, 5);
    let anchored = format!("{id}:{hash}");

    // The session-setting trick no longer switches the guard off: the
    // newest events, all of them, or a TRUNCATE are refused.
    for attempt in [
        "SET LOCAL authgate.audit_retention = 'on'; DELETE FROM audit_events WHERE id >= 4",
        "SET LOCAL authgate.audit_retention = 'on'; DELETE FROM audit_events",
        "SET LOCAL authgate.audit_retention = 'on'; DELETE FROM audit_events WHERE id = 1",
        "SET LOCAL authgate.audit_retention = 'on'; TRUNCATE audit_events",
    ] {
        let err = as_app_role(&env.schema, attempt).await.expect_err(attempt);
        assert!(
            format!("{err:?}").contains("append-only"),
            "{attempt}: {err:?}"
        );
    }
    assert_eq!(
        env.ok(&["audit", "verify", "--head", &anchored]).trim(),
        "audit chain intact: 5 events"
    );
    // Every audit log line carries the head to keep outside the table.
    let out = env.cli(&["role", "create", "r5"]);
    assert!(
        stderr(&out).contains(&format!("head=6:{}", head(&env).1)),
        "{}",
        stderr(&out)
    );

    // A checkpoint forged to cover a deletion is itself unverifiable
    // (it is not HMACed with the audit key), and stays the newest event.
    as_app_role(
        &env.schema,
        "INSERT INTO audit_events (id, at, action, actor, via, target_kind, target_id, target_name,
                                   changes, prev_hash, hash)
         SELECT max(id) + 1, now(), 'audit.checkpoint', 'operator', 'retention', 'audit', 6, '',
                jsonb_build_object('pruned_through', 6), 'x', 'y' FROM audit_events;
         DELETE FROM audit_events WHERE id >= 4 AND id <= 6",
    )
    .await
    .expect("a forged checkpoint lets rows it names go");
    let out = env.cli(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("event 7 was edited"),
        "{}",
        stderr(&out)
    );

    // Someone who can switch triggers off (the table's owner) cuts the
    // tail: the chain alone looks intact, the anchored head does not.
    let env = Env::new().await;
    for i in 0..5 {
        env.ok(&["role", "create", &format!("s{i}")]);
    }
    let (_, hash) = head(&env);
    let anchored = format!("5:{hash}");
    let tamper = |s: &str| {
        format!(
            "SET session_replication_role = replica; {s}; SET session_replication_role = origin;"
        )
    };
    exec(
        &env.schema,
        &tamper("DELETE FROM audit_events WHERE id >= 4"),
    )
    .await;
    assert_eq!(
        env.ok(&["audit", "verify"]).trim(),
        "audit chain intact: 3 events"
    );
    let out = env.cli(&["audit", "verify", "--head", &anchored]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("does not reach the head 5"),
        "{}",
        stderr(&out)
    );
    // A wrong hash for a head still in the table is named too.
    let out = env.cli(&[
        "audit",
        "verify",
        "--head",
        &format!("2:{}", "0".repeat(64)),
    ]);
    assert_eq!(out.status.code(), Some(1));

    // A full wipe: ids go on from where they were, so even without the
    // head the next event shows the cut.
    exec(&env.schema, &tamper("DELETE FROM audit_events")).await;
    assert_eq!(
        env.cli(&["audit", "verify", "--head", &anchored])
            .status
            .code(),
        Some(1)
    );
    env.ok(&["role", "create", "after-wipe"]);
    let all = events(&env);
    assert_eq!(all.len(), 1);
    assert!(
        all[0]["id"].as_i64().unwrap() > 5,
        "ids never restart: {}",
        all[0]
    );
    let out = env.cli(&["audit", "verify"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_that_does_not_own_the_table_cannot_switch_the_guard_off() {
    // The deployment README recommends: the table owned by the migration
    // role, authgate running as a role that only holds privileges.
    let env = Env::new().await;
    for i in 0..3 {
        env.ok(&["role", "create", &format!("o{i}")]);
    }
    let role = format!("{}_app", env.schema);
    exec(
        &env.schema,
        &format!(
            "CREATE ROLE {role}; GRANT USAGE ON SCHEMA {s} TO {role};
             GRANT SELECT, INSERT, DELETE ON audit_events TO {role};
             GRANT USAGE ON SEQUENCE audit_events_id_seq TO {role};",
            s = env.schema
        ),
    )
    .await;
    for attempt in [
        "SET LOCAL authgate.audit_retention = 'on'; DELETE FROM audit_events",
        "SET LOCAL session_replication_role = replica; DELETE FROM audit_events",
        "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only",
        "DROP TRIGGER audit_events_append_only ON audit_events",
        "SELECT setval('audit_events_id_seq', 1)",
    ] {
        let err = as_app_role(&env.schema, &format!("SET LOCAL ROLE {role}; {attempt}"))
            .await
            .expect_err(attempt);
        let err = format!("{err:?}");
        assert!(
            err.contains("append-only")
                || err.contains("ermission denied")
                || err.contains("must be owner"),
            "{attempt}: {err}"
        );
    }
    // What it needs it can do: append with the next id.
    as_app_role(
        &env.schema,
        &format!("SET LOCAL ROLE {role}; SELECT nextval('audit_events_id_seq')"),
    )
    .await
    .expect("nextval");
    exec(
        &env.schema,
        &format!("DROP OWNED BY {role}; DROP ROLE {role};"),
    )
    .await;
    assert_eq!(
        env.ok(&["audit", "verify"]).trim(),
        "audit chain intact: 3 events"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_writers_keep_one_chain_and_pruning_keeps_it_verifiable() {
    let env = Env::new().await;
    env.ok(&["role", "create", "busy"]);
    let cfg = env.config();
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let cfg = cfg.clone();
            tokio::spawn(async move {
                let store = authgate::store::Store::new(&cfg.postgres).expect("store");
                let ctx = AuditCtx {
                    actor: format!("writer{w}@example.com"),
                    origin: Origin::cli(),
                    key: AuditKey::from_config(&cfg),
                };
                for i in 0..500 {
                    let p = Permission::new(format!("plugin::w{w}.action{i}"), None);
                    store.grant("busy", &p, &ctx).await.expect("grant");
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer");
    }
    let out = env.ok(&["audit", "verify"]);
    assert_eq!(out.trim(), "audit chain intact: 1001 events");

    // The retention job: everything but the head is older than 1 ms here.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let store = authgate::store::Store::new(&cfg.postgres).expect("store");
    let mgr = authgate::control::Manager::new(&store, &cfg);
    let pruned = store
        .prune_audit(&mgr.audit(&Actor::Operator), Duration::from_millis(1))
        .await
        .expect("prune");
    assert_eq!(pruned, 1000);
    assert_eq!(
        env.ok(&["audit", "verify"]).trim(),
        "audit chain intact: 2 events"
    );
    env.ok(&["role", "create", "after-prune"]);
    assert_eq!(
        env.ok(&["audit", "verify"]).trim(),
        "audit chain intact: 3 events"
    );
    let all = events(&env);
    assert_eq!(all[1]["action"], "audit.checkpoint");
    assert_eq!(all[1]["changes"]["pruned_through"], 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_file_is_recorded_as_bootstrap() {
    let env = Env::with_config(
        "[management]\nlisten = \"127.0.0.1:0\"\nbootstrap_token_file = \"BOOTSTRAP\"\n",
    )
    .await;
    let mut raw = [0u8; 128];
    getrandom::fill(&mut raw).unwrap();
    let key = hex::encode(raw);
    let file = env.dir.join("bootstrap.key");
    std::fs::write(&file, &key).unwrap();
    let text = std::fs::read_to_string(&env.config_path)
        .unwrap()
        .replace("BOOTSTRAP", file.to_str().unwrap());
    std::fs::write(&env.config_path, text).unwrap();
    let g = env.gateway().await;
    eventually(Duration::from_secs(10), "bootstrap token works", || {
        let url = g.mgmt("/admin/audit-logs");
        let key = key.clone();
        async move { get(&url, Some(&key)).await.status == 200 }
    })
    .await;
    let all = events(&env);
    let actions: Vec<(&str, &str)> = all
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["via"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [
            ("user.create", "bootstrap"),
            ("admin-token.create", "bootstrap")
        ]
    );
    assert!(!all.iter().any(|e| e.to_string().contains(&key)));
}
