//! Admin tokens: live intersection with the owner's roles, and who may
//! manage which token (issue 3).

mod support;

use std::time::Duration;

use support::*;

const READ_ARTICLES: &str = "plugin::content-manager.explorer.read@api::article.article";
const ARTICLES: &str = "/content-manager/collection-types/api::article.article";

async fn status(g: &Gateway, path: &str, key: &str) -> u16 {
    get(&g.url(path), Some(key)).await.status
}

#[tokio::test]
async fn role_changes_flip_the_decision_on_the_next_request() {
    let env = Env::new().await;
    env.ok(&["role", "create", "editor"]);
    env.ok(&["role", "grant", "editor", READ_ARTICLES]);
    env.user("ed@example.com", "editor");
    let (id, key) = env.admin_token("ci", "ed@example.com", &[READ_ARTICLES]);
    let g = env.gateway().await;
    assert_eq!(status(&g, ARTICLES, &key).await, 200);

    // Revoke from the role: the token loses it, and its permission row is gone.
    let out = env.ok(&["role", "revoke", "editor", READ_ARTICLES]);
    assert!(out.contains("removed it from 1 admin token"), "{out}");
    let rows = sql(
        &env.schema,
        &format!("SELECT count(*) FROM token_permissions WHERE token_id = {id}"),
    )
    .await;
    assert_eq!(
        rows[0].get::<_, i64>(0),
        0,
        "the token permission row is deleted with the role permission"
    );
    eventually(Duration::from_secs(2), "403 after revoke", || async {
        status(&g, ARTICLES, &key).await == 403
    })
    .await;
    assert_eq!(
        get(&g.url(ARTICLES), Some(&key)).await.json(),
        envelope(403, "PolicyError", "Policy Failed")
    );

    // Granting the role permission back does not give it back to the token.
    env.ok(&["role", "grant", "editor", READ_ARTICLES]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(status(&g, ARTICLES, &key).await, 403);
}

#[tokio::test]
async fn the_live_intersection_follows_role_membership() {
    let env = Env::new().await;
    env.ok(&["role", "create", "editor"]);
    env.ok(&["role", "grant", "editor", READ_ARTICLES]);
    env.user("ed@example.com", "editor");
    let (id, key) = env.admin_token("ci", "ed@example.com", &[READ_ARTICLES]);
    let g = env.gateway().await;
    assert_eq!(status(&g, ARTICLES, &key).await, 200);
    // The owner leaves the role: the token permission row stays, but the
    // owner no longer holds it, so it stops working at once.
    env.ok(&["user", "remove-role", "ed@example.com", "editor"]);
    eventually(
        Duration::from_secs(2),
        "403 after leaving the role",
        || async { status(&g, ARTICLES, &key).await == 403 },
    )
    .await;
    let rows = sql(
        &env.schema,
        &format!("SELECT count(*) FROM token_permissions WHERE token_id = {id}"),
    )
    .await;
    assert_eq!(rows[0].get::<_, i64>(0), 1);
    // Back in the role: works again.
    env.ok(&["user", "add-role", "ed@example.com", "editor"]);
    eventually(Duration::from_secs(2), "200 after rejoining", || async {
        status(&g, ARTICLES, &key).await == 200
    })
    .await;
    // A super admin holds everything: the token's own permission is what counts.
    env.ok(&["user", "remove-role", "ed@example.com", "editor"]);
    env.ok(&["user", "add-role", "ed@example.com", "super-admin"]);
    eventually(Duration::from_secs(2), "200 as super admin", || async {
        status(&g, ARTICLES, &key).await == 200
    })
    .await;
    assert_eq!(
        status(
            &g,
            "/content-manager/collection-types/api::other.other",
            &key
        )
        .await,
        403
    );
}

#[tokio::test]
async fn an_owner_with_two_roles_keeps_a_permission_one_role_loses() {
    let env = Env::new().await;
    for r in ["a", "b"] {
        env.ok(&["role", "create", r]);
        env.ok(&["role", "grant", r, READ_ARTICLES]);
    }
    env.ok(&[
        "user",
        "create",
        "--email",
        "two@example.com",
        "--role",
        "a",
        "--role",
        "b",
    ]);
    let (id, key) = env.admin_token("ci", "two@example.com", &[READ_ARTICLES]);
    let g = env.gateway().await;
    let out = env.ok(&["role", "revoke", "a", READ_ARTICLES]);
    assert!(out.contains("removed it from 0 admin token"), "{out}");
    let rows = sql(
        &env.schema,
        &format!("SELECT count(*) FROM token_permissions WHERE token_id = {id}"),
    )
    .await;
    assert_eq!(rows[0].get::<_, i64>(0), 1);
    assert_eq!(status(&g, ARTICLES, &key).await, 200);
}

#[tokio::test]
async fn creation_requires_the_owner_to_hold_each_permission() {
    let env = Env::new().await;
    env.ok(&["role", "create", "editor"]);
    env.ok(&["role", "grant", "editor", READ_ARTICLES]);
    env.user("ed@example.com", "editor");
    let out = env.cli(&[
        "token",
        "create",
        "--kind",
        "admin",
        "--name",
        "x",
        "--owner",
        "ed@example.com",
        "--permission",
        "plugin::content-manager.explorer.delete@api::article.article",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("does not hold the permission plugin::content-manager.explorer.delete@api::article.article"),
        "{}",
        stderr(&out)
    );
    env.admin_token("ok", "ed@example.com", &[READ_ARTICLES]);
}

#[tokio::test]
async fn management_rules_with_as() {
    let env = Env::new().await;
    env.ok(&["role", "create", "token-admin"]);
    for a in ["read", "create", "update", "delete", "regenerate"] {
        env.ok(&[
            "role",
            "grant",
            "token-admin",
            &format!("admin::admin-tokens.{a}"),
        ]);
        env.ok(&[
            "role",
            "grant",
            "token-admin",
            &format!("admin::api-tokens.{a}"),
        ]);
    }
    env.user("alice@example.com", "token-admin");
    env.user("bob@example.com", "token-admin");
    env.super_admin("root@example.com");
    env.ok(&["user", "create", "--email", "nobody@example.com"]);
    let made = env.json(&[
        "token",
        "create",
        "--kind",
        "admin",
        "--name",
        "alices",
        "--as",
        "alice@example.com",
    ]);
    let id = made["id"].as_i64().unwrap().to_string();
    assert_eq!(
        made["owner"], "alice@example.com",
        "the owner is the acting user"
    );

    let denied = |args: &[&str], needle: &str| {
        let out = env.cli(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    };
    // Anyone with the read permission may list and show.
    env.ok(&["token", "list", "--as", "bob@example.com"]);
    env.ok(&["token", "show", &id, "--as", "bob@example.com"]);
    denied(
        &["token", "list", "--as", "nobody@example.com"],
        "lacks the permission admin::api-tokens.read",
    );
    // Regenerate: owner only, not even a super admin.
    denied(
        &["token", "regenerate", &id, "--as", "bob@example.com"],
        "only the owner",
    );
    denied(
        &["token", "regenerate", &id, "--as", "root@example.com"],
        "only the owner",
    );
    env.ok(&["token", "regenerate", &id, "--as", "alice@example.com"]);
    // Delete: owner or super admin.
    denied(
        &["token", "delete", &id, "--as", "bob@example.com"],
        "only the owner of admin token",
    );
    // Creating a token owned by someone else is refused.
    denied(
        &[
            "token",
            "create",
            "--kind",
            "admin",
            "--name",
            "x",
            "--owner",
            "bob@example.com",
            "--as",
            "alice@example.com",
        ],
        "only create admin tokens owned by themselves",
    );
    env.ok(&["token", "delete", &id, "--as", "root@example.com"]);
    // Content-API tokens: anyone with the matching permission.
    let c = env.json(&[
        "token",
        "create",
        "--kind",
        "content-api",
        "--name",
        "c",
        "--type",
        "read-only",
        "--as",
        "alice@example.com",
    ]);
    let cid = c["id"].as_i64().unwrap().to_string();
    env.ok(&["token", "regenerate", &cid, "--as", "bob@example.com"]);
    env.ok(&["token", "delete", &cid, "--as", "bob@example.com"]);
    // Without --as the CLI says it acts as the host operator.
    let out = env.cli(&["token", "list"]);
    assert!(stderr(&out).is_empty() || !stderr(&out).contains("error"));
    let out = env.cli(&[
        "token",
        "create",
        "--kind",
        "content-api",
        "--name",
        "op",
        "--type",
        "read-only",
    ]);
    assert!(
        stderr(&out).contains("acting as the host operator"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn viewing_keys_needs_an_encryption_key_and_admin_keys_only_their_owner() {
    let env = Env::new().await;
    env.write_config("");
    let with_key = format!("{}\n", std::fs::read_to_string(&env.config_path).unwrap()).replace(
        "last_used_interval = \"1s\"",
        "last_used_interval = \"1s\"\nencryption_key = \"test-encryption-key\"",
    );
    std::fs::write(&env.config_path, with_key).unwrap();
    env.ok(&["role", "create", "reader"]);
    env.ok(&["role", "grant", "reader", "admin::admin-tokens.read"]);
    env.ok(&["role", "grant", "reader", "admin::api-tokens.read"]);
    env.super_admin("own@example.com");
    env.user("other@example.com", "reader");
    let (aid, akey) = env.admin_token("a", "own@example.com", &[]);
    let (cid, ckey) = env.content_token("c", "read-only", &[]);
    let shown = env.json(&[
        "token",
        "show",
        &aid.to_string(),
        "--reveal",
        "--as",
        "own@example.com",
    ]);
    assert_eq!(shown["key"], akey);
    let out = env.cli(&[
        "token",
        "show",
        &aid.to_string(),
        "--reveal",
        "--as",
        "other@example.com",
    ]);
    assert!(stderr(&out).contains("only the owner"), "{}", stderr(&out));
    let shown = env.json(&[
        "token",
        "show",
        &cid.to_string(),
        "--reveal",
        "--as",
        "other@example.com",
    ]);
    assert_eq!(shown["key"], ckey);
    // The stored form is Strapi's v1:<iv>:<ciphertext>:<tag>.
    let rows = sql(
        &env.schema,
        &format!("SELECT encrypted_key FROM tokens WHERE id = {cid}"),
    )
    .await;
    let enc: String = rows[0].get(0);
    assert!(
        enc.starts_with("v1:") && enc.split(':').count() == 4,
        "{enc}"
    );
}

#[tokio::test]
async fn graphql_body_over_the_bound_is_413_for_read_only() {
    let env = Env::with_config("").await;
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    std::fs::write(
        &env.config_path,
        format!("{text}\n[routes]\ngraphql_max_body = 64\n"),
    )
    .unwrap();
    let (_, ro) = env.content_token("ro", "read-only", &[]);
    let (_, custom) = env.content_token("c", "custom", &["api::article.article.find"]);
    let (_, custom_write) = env.content_token("cw", "custom", &["api::article.article.create"]);
    let g = env.gateway().await;
    let big = format!(
        r#"{{"query":"{{ articles {{ {} }} }}"}}"#,
        "title ".repeat(40)
    );
    let r = request("POST", &g.url("/graphql"), Some(&ro), &[], big.as_bytes()).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"]["name"], "PayloadTooLargeError");
    assert_eq!(
        request(
            "POST",
            &g.url("/graphql"),
            Some(&custom),
            &[],
            big.as_bytes()
        )
        .await
        .status,
        200
    );
    assert_eq!(
        request("POST", &g.url("/graphql"), Some(&custom_write), &[], b"{}")
            .await
            .status,
        403
    );
}
