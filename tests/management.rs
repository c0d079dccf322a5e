//! The management listener (issue 8): every REST endpoint over HTTP against
//! real Postgres, each permission rule, the bootstrap token, the web page's
//! session and CSRF rules, and `openapi.yaml` against the served routes.

// Helpers below are test code too: a failure is the test failing.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const READ_ARTICLES: &str = "plugin::content-manager.explorer.read@api::article.article";
const ARTICLES_CM: &str = "/content-manager/collection-types/api::article.article";
const FIND_ARTICLES: &str = "api::article.article.find";

/// The cast: a super admin, two token admins (alice, bob), and the tokens
/// they sign their calls with.
struct Cast {
    env: Env,
    g: Gateway,
    /// root@: super admin; token holds every management permission.
    root: String,
    /// alice@: token admin; token holds every management permission, the
    /// users/roles reads and READ_ARTICLES.
    alice: String,
    /// bob@: token admin; token holds every management permission.
    bob: String,
}

async fn cast_with(extra: &str, encryption: bool) -> Cast {
    let env = Env::with_config(extra).await;
    if encryption {
        let text = std::fs::read_to_string(&env.config_path).unwrap().replace(
            "last_used_interval = \"1s\"",
            "last_used_interval = \"1s\"\nencryption_key = \"test-encryption-key\"",
        );
        std::fs::write(&env.config_path, text).unwrap();
    }
    env.ok(&["role", "create", "token-admin"]);
    let mut alice_perms = management_perms();
    alice_perms.extend(["admin::users.read".into(), "admin::roles.read".into()]);
    for p in &alice_perms {
        env.ok(&["role", "grant", "token-admin", p]);
    }
    env.ok(&["role", "grant", "token-admin", READ_ARTICLES]);
    for (email, role) in [
        ("root@example.com", "super-admin"),
        ("alice@example.com", "token-admin"),
        ("bob@example.com", "token-admin"),
    ] {
        env.ok(&["user", "create", "--email", email, "--role", role]);
    }
    let perms = management_perms();
    let refs: Vec<&str> = perms.iter().map(String::as_str).collect();
    let (_, root) = env.admin_token("root-cli", "root@example.com", &refs);
    let mut a: Vec<&str> = alice_perms.iter().map(String::as_str).collect();
    a.push(READ_ARTICLES);
    let (_, alice) = env.admin_token("alice-cli", "alice@example.com", &a);
    let (_, bob) = env.admin_token("bob-cli", "bob@example.com", &refs);
    let g = env.gateway().await;
    Cast {
        env,
        g,
        root,
        alice,
        bob,
    }
}

async fn cast() -> Cast {
    cast_with("", false).await
}

/// A management API call.
async fn call(c: &Cast, method: &str, path: &str, key: &str, body: Option<Value>) -> Resp {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    request(
        method,
        &c.g.mgmt(path),
        Some(key),
        &[("content-type", "application/json")],
        body.as_bytes(),
    )
    .await
}

fn assert_error(r: &Resp, status: u16, name: &str) {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["data"], Value::Null, "{v}");
    assert_eq!(v["error"]["status"], status, "{v}");
    assert_eq!(v["error"]["name"], name, "{v}");
    assert_eq!(v["error"]["details"], json!({}), "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
}

fn is_key(v: &Value) -> bool {
    v.as_str().is_some_and(|k| {
        k.len() == 256 && k.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

async fn proxy_status(c: &Cast, path: &str, key: &str) -> u16 {
    get(&c.g.url(path), Some(key)).await.status
}

#[tokio::test]
async fn api_tokens_crud_over_http_like_strapi() {
    let c = cast().await;
    // Create a custom token.
    let r = call(
        &c,
        "POST",
        "/admin/api-tokens",
        &c.alice,
        Some(
            json!({"name": "site", "description": "the site", "type": "custom",
                    "lifespan": 604_800_000i64, "permissions": [FIND_ARTICLES]}),
        ),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let t = r.json()["data"].clone();
    assert!(is_key(&t["accessKey"]), "{t}");
    assert_eq!(t["type"], "custom");
    assert_eq!(t["kind"], "content-api");
    assert_eq!(t["description"], "the site");
    assert_eq!(t["lifespan"], 604_800_000i64);
    assert_eq!(t["permissions"], json!([FIND_ARTICLES]));
    for f in ["expiresAt", "createdAt", "updatedAt"] {
        assert!(t[f].is_string(), "{f}: {t}");
    }
    assert!(t["lastUsedAt"].is_null());
    let id = t["id"].as_i64().unwrap();
    let key = t["accessKey"].as_str().unwrap().to_owned();
    // The key works on the proxy, for exactly its action.
    assert_eq!(proxy_status(&c, "/api/articles", &key).await, 200);
    assert_eq!(proxy_status(&c, "/api/articles/1", &key).await, 403);

    // List and show never carry a key (no encryption key configured).
    let r = call(&c, "GET", "/admin/api-tokens", &c.bob, None).await;
    assert_eq!(r.status, 200);
    let list = r.json()["data"].as_array().unwrap().clone();
    let row = list.iter().find(|t| t["id"] == id).expect("listed");
    assert!(row.get("accessKey").is_none());
    assert!(!String::from_utf8_lossy(&r.body).contains(&key));
    let r = call(&c, "GET", &format!("/admin/api-tokens/{id}"), &c.bob, None).await;
    assert_eq!(r.status, 200);
    assert!(r.json()["data"].get("accessKey").is_none());
    assert_eq!(r.json()["data"]["name"], "site");

    // Edit: rename and widen to findOne.
    let r = call(
        &c,
        "PUT",
        &format!("/admin/api-tokens/{id}"),
        &c.bob,
        Some(json!({"name": "site-2", "permissions": [FIND_ARTICLES, "api::article.article.findOne"]})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["data"]["name"], "site-2");
    eventually(
        Duration::from_secs(3),
        "findOne allowed after edit",
        || async { proxy_status(&c, "/api/articles/1", &key).await == 200 },
    )
    .await;
    // Switching to read-only drops the custom permissions.
    let r = call(
        &c,
        "PUT",
        &format!("/admin/api-tokens/{id}"),
        &c.bob,
        Some(json!({"type": "read-only"})),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"]["type"], "read-only");
    assert_eq!(r.json()["data"]["permissions"], json!([]));

    // Regenerate: a new key; the old one stops working.
    let r = call(
        &c,
        "POST",
        &format!("/admin/api-tokens/{id}/regenerate"),
        &c.bob,
        None,
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let new_key = r.json()["data"]["accessKey"].as_str().unwrap().to_owned();
    assert_ne!(new_key, key);
    assert_eq!(
        r.json()["data"]["expiresAt"],
        t["expiresAt"],
        "expiresAt is unchanged by a regenerate"
    );
    eventually(Duration::from_secs(3), "old key refused", || async {
        proxy_status(&c, "/api/articles", &key).await == 401
    })
    .await;
    assert_eq!(proxy_status(&c, "/api/articles", &new_key).await, 200);

    // Delete.
    let r = call(
        &c,
        "DELETE",
        &format!("/admin/api-tokens/{id}"),
        &c.bob,
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"]["id"], id);
    assert_error(
        &call(&c, "GET", &format!("/admin/api-tokens/{id}"), &c.bob, None).await,
        404,
        "NotFoundError",
    );
    eventually(Duration::from_secs(3), "deleted key refused", || async {
        proxy_status(&c, "/api/articles", &new_key).await == 401
    })
    .await;
}

#[tokio::test]
async fn api_bodies_are_validated() {
    let c = cast().await;
    let post = |body: Value| {
        let c = &c;
        async move { call(c, "POST", "/admin/api-tokens", &c.alice, Some(body)).await }
    };
    for body in [
        json!({"name": "x", "type": "everything"}),
        json!({"name": "x", "type": "custom", "permissions": ["api::nope.nope.find"]}),
        json!({"name": "x", "type": "custom", "permissions": []}),
        json!({"name": "x", "type": "read-only", "permissions": [FIND_ARTICLES]}),
        json!({"name": "x", "type": "read-only", "lifespan": 123}),
        json!({"name": " ", "type": "read-only"}),
        json!({"name": "x", "type": "read-only", "colour": "blue"}),
        json!({"type": "read-only"}),
    ] {
        assert_error(&post(body.clone()).await, 400, "ValidationError");
    }
    let r = call(&c, "POST", "/admin/api-tokens", &c.alice, None).await;
    assert_error(&r, 400, "ValidationError");
    let r = request(
        "POST",
        &c.g.mgmt("/admin/api-tokens"),
        Some(&c.alice),
        &[],
        b"{not json",
    )
    .await;
    assert_error(&r, 400, "ValidationError");
    // Duplicate names.
    assert_eq!(
        post(json!({"name": "dup", "type": "read-only"}))
            .await
            .status,
        201
    );
    assert_error(
        &post(json!({"name": "dup", "type": "read-only"})).await,
        400,
        "ValidationError",
    );
    // Admin tokens refuse `type` and `permissions`, as Strapi does.
    for body in [
        json!({"name": "a", "type": "read-only"}),
        json!({"name": "a", "permissions": []}),
        json!({"name": "a", "adminPermissions": [{"action": "admin::api-tokens.read", "conditions": ["admin::is-creator"]}]}),
    ] {
        let r = call(&c, "POST", "/admin/admin-tokens", &c.alice, Some(body)).await;
        assert_error(&r, 400, "ValidationError");
    }
    // Ids: the other kind, a missing one, not a number; methods and paths.
    let admin_id = sql(
        &c.env.schema,
        "SELECT id FROM tokens WHERE name = 'alice-cli'",
    )
    .await[0]
        .get::<_, i64>(0);
    for path in [
        format!("/admin/api-tokens/{admin_id}"),
        "/admin/api-tokens/999999".into(),
        "/admin/api-tokens/abc".into(),
        "/admin/nothing-here".into(),
    ] {
        assert_error(
            &call(&c, "GET", &path, &c.alice, None).await,
            404,
            "NotFoundError",
        );
    }
    assert_error(
        &call(&c, "PATCH", "/admin/api-tokens/1", &c.alice, None).await,
        405,
        "MethodNotAllowedError",
    );
    // Paths match like Strapi's router: any case, one trailing slash.
    assert_eq!(
        call(&c, "GET", "/ADMIN/API-TOKENS/", &c.alice, None)
            .await
            .status,
        200
    );
}

/// Create an admin token through the API as `key`'s owner.
async fn create_admin(c: &Cast, key: &str, name: &str, perms: &[(&str, Option<&str>)]) -> Resp {
    let perms: Vec<Value> = perms
        .iter()
        .map(|(a, s)| json!({"action": a, "subject": s}))
        .collect();
    call(
        c,
        "POST",
        "/admin/admin-tokens",
        key,
        Some(json!({"name": name, "adminPermissions": perms})),
    )
    .await
}

#[tokio::test]
async fn admin_tokens_owner_super_admin_and_other_admins() {
    let c = cast().await;
    let read_articles = (
        "plugin::content-manager.explorer.read",
        Some("api::article.article"),
    );
    // Alice creates a token; she owns it.
    let r = create_admin(&c, &c.alice, "ci", &[read_articles]).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let t = r.json()["data"].clone();
    assert_eq!(t["kind"], "admin");
    assert_eq!(t["adminUserOwner"]["email"], "alice@example.com");
    assert_eq!(
        t["adminPermissions"][0]["subject"], "api::article.article",
        "{t}"
    );
    assert!(t.get("type").is_none(), "admin tokens have no type");
    let id = t["id"].as_i64().unwrap();
    let key = t["accessKey"].as_str().unwrap().to_owned();
    assert_eq!(proxy_status(&c, ARTICLES_CM, &key).await, 200);

    // The ceiling: not what the owner lacks ...
    let r = create_admin(&c, &c.alice, "too-much", &[("admin::webhooks.read", None)]).await;
    assert_error(&r, 400, "ValidationError");
    // ... and not what the calling token lacks, though the owner holds it.
    let r = create_admin(&c, &c.bob, "bob-articles", &[read_articles]).await;
    assert_error(&r, 400, "ValidationError");

    let path = format!("/admin/admin-tokens/{id}");
    // Another admin (bob) may read it, but not change it.
    let r = call(&c, "GET", &path, &c.bob, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"]["name"], "ci");
    let rename = json!({"name": "renamed"});
    assert_error(
        &call(&c, "PUT", &path, &c.bob, Some(rename.clone())).await,
        403,
        "ForbiddenError",
    );
    assert_error(
        &call(&c, "DELETE", &path, &c.bob, None).await,
        403,
        "ForbiddenError",
    );
    assert_error(
        &call(&c, "POST", &format!("{path}/regenerate"), &c.bob, None).await,
        403,
        "ForbiddenError",
    );
    assert_error(
        &call(
            &c,
            "GET",
            &format!("{path}/owner-permissions"),
            &c.bob,
            None,
        )
        .await,
        403,
        "ForbiddenError",
    );

    // A super admin may edit and see the owner's permissions, but not regenerate.
    let r = call(&c, "PUT", &path, &c.root, Some(rename)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["data"]["name"], "renamed");
    let r = call(
        &c,
        "GET",
        &format!("{path}/owner-permissions"),
        &c.root,
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let owner_perms = r.json()["data"].clone();
    assert!(
        owner_perms
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["action"] == read_articles.0 && p["subject"] == "api::article.article"),
        "{owner_perms}"
    );
    assert_error(
        &call(&c, "POST", &format!("{path}/regenerate"), &c.root, None).await,
        403,
        "ForbiddenError",
    );
    // The owner sees her owner permissions too.
    assert_eq!(
        call(
            &c,
            "GET",
            &format!("{path}/owner-permissions"),
            &c.alice,
            None
        )
        .await
        .status,
        200
    );

    // The owner regenerates: the old key stops working.
    let r = call(&c, "POST", &format!("{path}/regenerate"), &c.alice, None).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let new_key = r.json()["data"]["accessKey"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(3), "old admin key refused", || async {
        proxy_status(&c, ARTICLES_CM, &key).await == 401
    })
    .await;
    assert_eq!(proxy_status(&c, ARTICLES_CM, &new_key).await, 200);

    // The owner edits permissions: dropping one works at once on the proxy.
    let r = call(
        &c,
        "PUT",
        &path,
        &c.alice,
        Some(json!({"adminPermissions": []})),
    )
    .await;
    assert_eq!(r.status, 200);
    eventually(Duration::from_secs(3), "permission dropped", || async {
        proxy_status(&c, ARTICLES_CM, &new_key).await == 403
    })
    .await;

    // The list shows the owner; the other kind's route does not reach it.
    let r = call(&c, "GET", "/admin/admin-tokens", &c.bob, None).await;
    let list = r.json()["data"].as_array().unwrap().clone();
    assert!(list
        .iter()
        .any(|t| t["id"] == id && t["adminUserOwner"]["email"] == "alice@example.com"));
    assert_error(
        &call(
            &c,
            "DELETE",
            &format!("/admin/api-tokens/{id}"),
            &c.root,
            None,
        )
        .await,
        404,
        "NotFoundError",
    );
    // A super admin may delete it.
    assert_eq!(call(&c, "DELETE", &path, &c.root, None).await.status, 200);
    eventually(
        Duration::from_secs(3),
        "deleted admin key refused",
        || async { proxy_status(&c, ARTICLES_CM, &new_key).await == 401 },
    )
    .await;
}

#[tokio::test]
async fn keys_are_viewable_again_only_where_allowed() {
    let c = cast_with("", true).await;
    // A content-API key: any reader sees it again.
    let r = call(
        &c,
        "POST",
        "/admin/api-tokens",
        &c.alice,
        Some(json!({"name": "viewable", "type": "read-only"})),
    )
    .await;
    assert_eq!(r.status, 201);
    let (id, key) = (
        r.json()["data"]["id"].as_i64().unwrap(),
        r.json()["data"]["accessKey"].as_str().unwrap().to_owned(),
    );
    let r = call(&c, "GET", &format!("/admin/api-tokens/{id}"), &c.bob, None).await;
    assert_eq!(r.json()["data"]["accessKey"], key.as_str());
    // An admin key: only its owner, not a super admin nor another admin.
    let r = create_admin(&c, &c.alice, "mine", &[]).await;
    let (aid, akey) = (
        r.json()["data"]["id"].as_i64().unwrap(),
        r.json()["data"]["accessKey"].as_str().unwrap().to_owned(),
    );
    let path = format!("/admin/admin-tokens/{aid}");
    let r = call(&c, "GET", &path, &c.alice, None).await;
    assert_eq!(r.json()["data"]["accessKey"], akey.as_str());
    for other in [&c.root, &c.bob] {
        let r = call(&c, "GET", &path, other, None).await;
        assert_eq!(r.status, 200);
        assert!(r.json()["data"].get("accessKey").is_none(), "{}", r.json());
        assert!(!String::from_utf8_lossy(&r.body).contains(&akey));
    }
    // The list never carries keys.
    let r = call(&c, "GET", "/admin/admin-tokens", &c.alice, None).await;
    assert!(!String::from_utf8_lossy(&r.body).contains(&akey));
}

#[tokio::test]
async fn the_token_and_its_owner_must_both_hold_the_permission() {
    let c = cast().await;
    // Alice holds every management permission; this token only the read.
    let (_, narrow) = c
        .env
        .admin_token("narrow", "alice@example.com", &["admin::api-tokens.read"]);
    assert_eq!(
        call(&c, "GET", "/admin/api-tokens", &narrow, None)
            .await
            .status,
        200
    );
    let create = json!({"name": "n", "type": "read-only"});
    let r = call(
        &c,
        "POST",
        "/admin/api-tokens",
        &narrow,
        Some(create.clone()),
    )
    .await;
    assert_eq!(
        r.json(),
        envelope(403, "PolicyError", "Policy Failed"),
        "the token lacks it though its owner holds it"
    );
    assert_error(
        &call(&c, "GET", "/admin/admin-tokens", &narrow, None).await,
        403,
        "PolicyError",
    );

    // Dave's token holds the permissions, but Dave leaves the role.
    c.env.user("dave@example.com", "token-admin");
    let perms = management_perms();
    let refs: Vec<&str> = perms.iter().map(String::as_str).collect();
    let (_, dave) = c.env.admin_token("dave-cli", "dave@example.com", &refs);
    assert_eq!(
        call(&c, "POST", "/admin/api-tokens", &dave, Some(create.clone()))
            .await
            .status,
        201
    );
    c.env
        .ok(&["user", "remove-role", "dave@example.com", "token-admin"]);
    let r = call(
        &c,
        "POST",
        "/admin/api-tokens",
        &dave,
        Some(json!({"name": "n2", "type": "read-only"})),
    )
    .await;
    assert_eq!(
        r.json(),
        envelope(403, "PolicyError", "Policy Failed"),
        "the owner lacks it though the token holds it"
    );
    assert_error(
        &call(&c, "GET", "/admin/api-tokens", &dave, None).await,
        403,
        "PolicyError",
    );
    // /admin/permissions needs no specific permission, only a valid admin token.
    assert_eq!(
        call(&c, "GET", "/admin/permissions", &dave, None)
            .await
            .status,
        200
    );

    // Who is not an admin token at all.
    let (_, content_key) = c.env.content_token("c", "full-access", &[]);
    let unauthorized = envelope(401, "UnauthorizedError", "Missing or invalid credentials");
    for key in [
        content_key.as_str(),
        "not-a-key",
        &"0".repeat(256),
        "eyJhbGciOiJIUzI1NiJ9.eyJpZCI6MX0.sig",
    ] {
        let r = call(&c, "GET", "/admin/api-tokens", key, None).await;
        assert_eq!(r.status, 401);
        assert_eq!(r.json(), unauthorized, "{key}");
    }
    let r = request("GET", &c.g.mgmt("/admin/api-tokens"), None, &[], b"").await;
    assert_eq!(r.json(), unauthorized);
    let r = request(
        "GET",
        &c.g.mgmt("/admin/api-tokens"),
        None,
        &[("authorization", &format!("Basic {}", c.alice))],
        b"",
    )
    .await;
    assert_eq!(r.status, 401);

    // Expired token; deactivated owner.
    let (eid, expired) = c
        .env
        .admin_token("old", "alice@example.com", &["admin::api-tokens.read"]);
    exec(
        &c.env.schema,
        &format!("UPDATE tokens SET expires_at = now() - interval '1 minute' WHERE id = {eid}"),
    )
    .await;
    let r = call(&c, "GET", "/admin/api-tokens", &expired, None).await;
    assert_eq!(
        r.json(),
        envelope(401, "UnauthorizedError", "Token expired")
    );
    c.env.ok(&["user", "deactivate", "bob@example.com"]);
    let r = call(&c, "GET", "/admin/api-tokens", &c.bob, None).await;
    assert_eq!(
        r.json(),
        envelope(401, "UnauthorizedError", "Token owner is deactivated")
    );
    c.env.ok(&["user", "activate", "bob@example.com"]);
    assert_eq!(
        call(&c, "GET", "/admin/api-tokens", &c.bob, None)
            .await
            .status,
        200
    );

    // Management calls count as uses of the calling token.
    eventually(Duration::from_secs(5), "last_used_at written", || async {
        let rows = sql(
            &c.env.schema,
            "SELECT count(*) FROM tokens WHERE name = 'narrow' AND last_used_at IS NOT NULL",
        )
        .await;
        rows[0].get::<_, i64>(0) == 1
    })
    .await;
}

#[tokio::test]
async fn users_roles_and_the_permission_catalog() {
    let c = cast().await;
    let r = call(&c, "GET", "/admin/users", &c.alice, None).await;
    assert_eq!(r.status, 200);
    let users = r.json()["data"]["results"].as_array().unwrap().clone();
    let emails: BTreeSet<&str> = users.iter().filter_map(|u| u["email"].as_str()).collect();
    assert!(emails.contains("alice@example.com") && emails.contains("root@example.com"));
    assert_eq!(r.json()["data"]["pagination"]["total"], users.len());
    let root = users
        .iter()
        .find(|u| u["email"] == "root@example.com")
        .unwrap();
    assert_eq!(root["superAdmin"], true);
    assert_eq!(root["isActive"], true);
    // Bob's token lacks admin::users.read / admin::roles.read.
    assert_error(
        &call(&c, "GET", "/admin/users", &c.bob, None).await,
        403,
        "PolicyError",
    );
    assert_error(
        &call(&c, "GET", "/admin/roles", &c.bob, None).await,
        403,
        "PolicyError",
    );

    let r = call(&c, "GET", "/admin/roles", &c.alice, None).await;
    assert_eq!(r.status, 200);
    let roles = r.json()["data"].as_array().unwrap().clone();
    let ta = roles.iter().find(|r| r["name"] == "token-admin").unwrap();
    assert!(ta["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["action"] == "admin::api-tokens.create"));
    assert!(roles.iter().any(|r| r["superAdmin"] == true));

    let r = call(&c, "GET", "/admin/permissions", &c.bob, None).await;
    assert_eq!(r.status, 200);
    let cat = r.json()["data"].clone();
    let article = cat["contentApi"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["category"] == "api::article.article")
        .expect("article group");
    let actions: BTreeSet<&str> = article["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for a in ["find", "findOne", "create", "update", "delete"] {
        assert!(
            actions.contains(format!("api::article.article.{a}").as_str()),
            "{a}"
        );
    }
    let admin = cat["admin"].as_array().unwrap();
    let group = |name: &str| {
        admin
            .iter()
            .find(|g| g["category"] == name)
            .unwrap_or_else(|| panic!("{name}: {cat}"))
            .clone()
    };
    let tokens = group("admin::api-tokens");
    assert!(tokens["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["action"] == "admin::api-tokens.regenerate" && p["subject"].is_null()));
    let cm = group("plugin::content-manager");
    assert!(cm["permissions"].as_array().unwrap().iter().any(|p| {
        p["action"] == "plugin::content-manager.explorer.read"
            && p["subject"] == "api::article.article"
    }));
}

/// The key file of a bootstrap test.
fn write_key(env: &Env, key: &str) -> std::path::PathBuf {
    let path = env.dir.join("bootstrap-token");
    std::fs::write(&path, format!("{key}\n")).unwrap();
    path
}

fn random_key() -> String {
    let mut b = [0u8; 128];
    getrandom::fill(&mut b).unwrap();
    hex::encode(b)
}

/// Start `authgate serve` and find its management address in the log.
fn start_replica(env: &Env) -> (Replica, String) {
    let r = Replica::start(&env.config_path, &[]);
    let line = r
        .log
        .lock()
        .unwrap()
        .iter()
        .find(|l| l.contains("authgate started"))
        .cloned()
        .expect("start line");
    let addr = line
        .split("management=Some(")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .unwrap_or_else(|| panic!("no management address in: {line}"))
        .to_owned();
    (r, format!("http://{addr}"))
}

#[tokio::test]
async fn the_bootstrap_token_file_provisions_a_super_admin_token() {
    let env = Env::with_config(
        "[management]\nlisten = \"127.0.0.1:0\"\nbootstrap_token_file = \"BOOTSTRAP\"\n",
    )
    .await;
    let key = random_key();
    let file = write_key(&env, &key);
    let text = std::fs::read_to_string(&env.config_path)
        .unwrap()
        .replace("BOOTSTRAP", file.to_str().unwrap());
    std::fs::write(&env.config_path, text).unwrap();

    let works = |base: String, key: String| async move {
        let mut last = 0;
        for _ in 0..200 {
            last = get(&format!("{base}/admin/api-tokens"), Some(&key))
                .await
                .status;
            if last == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("bootstrap key never worked (last status {last})");
    };
    let (mut replica, base) = start_replica(&env);
    works(base.clone(), key.clone()).await;
    // It may create admin tokens (for its owner) and content-API tokens.
    let r = request(
        "POST",
        &format!("{base}/admin/admin-tokens"),
        Some(&key),
        &[],
        json!({"name": "ci", "adminPermissions": [{"action": "admin::api-tokens.read"}]})
            .to_string()
            .as_bytes(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let users = env.ok(&["user", "list", "--json"]);
    let boot: Value = users
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|u| u["email"] == "bootstrap@authgate.local")
        .expect("bootstrap user");
    assert_eq!(boot["super_admin"], true);
    eventually(Duration::from_secs(5), "bootstrap logged", || async {
        replica
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("bootstrap token created"))
    })
    .await;
    assert_eq!(replica.terminate(), Some(0));
    let log = replica.log.lock().unwrap().join("\n");
    assert!(!log.contains(&key), "the key is never logged");

    // Idempotent: a restart with the same key changes nothing.
    let (mut replica, base) = start_replica(&env);
    works(base, key.clone()).await;
    let count = |env: &Env| {
        let schema = env.schema.clone();
        async move {
            sql(
                &schema,
                "SELECT count(*) FROM tokens WHERE name = 'bootstrap'",
            )
            .await[0]
                .get::<_, i64>(0)
        }
    };
    assert_eq!(count(&env).await, 1);
    replica.terminate();

    // A rotated Secret: the new key works, the old one no longer does.
    let new_key = random_key();
    write_key(&env, &new_key);
    let (mut replica, base) = start_replica(&env);
    works(base.clone(), new_key.clone()).await;
    assert_eq!(
        get(&format!("{base}/admin/api-tokens"), Some(&key))
            .await
            .status,
        401
    );
    assert_eq!(count(&env).await, 1);
    replica.terminate();
    let log = replica.log.lock().unwrap().join("\n");
    assert!(!log.contains(&new_key));

    // A malformed key file stops the start with a clear message.
    std::fs::write(&file, "not a key").unwrap();
    let out = authgate_command()
        .arg("--config")
        .arg(&env.config_path)
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("bootstrap_token_file"),
        "{}",
        stderr(&out)
    );
}

/// Start `authgate serve` with the bootstrap file at `file` and wait until
/// the provisioning said what it did (one of `lines`).
async fn start_and_wait(env: &Env, lines: &[&str]) -> (Replica, String) {
    let (replica, base) = start_replica(env);
    eventually(
        Duration::from_secs(10),
        "bootstrap outcome logged",
        || async {
            replica
                .log
                .lock()
                .expect("log")
                .iter()
                .any(|l| lines.iter().any(|want| l.contains(want)))
        },
    )
    .await;
    (replica, base)
}

#[tokio::test]
async fn a_deleted_or_regenerated_bootstrap_token_is_never_resurrected() {
    for end in ["delete", "regenerate"] {
        let env = Env::with_config(
            "[management]\nlisten = \"127.0.0.1:0\"\nbootstrap_token_file = \"BOOTSTRAP\"\n",
        )
        .await;
        let key = random_key();
        let file = write_key(&env, &key);
        let text = std::fs::read_to_string(&env.config_path)
            .unwrap()
            .replace("BOOTSTRAP", file.to_str().unwrap());
        std::fs::write(&env.config_path, text).unwrap();

        // First start: the file provisions the token.
        let (mut replica, base) = start_and_wait(&env, &["bootstrap token created"]).await;
        assert_eq!(
            get(&format!("{base}/admin/api-tokens"), Some(&key))
                .await
                .status,
            200
        );
        replica.terminate();

        // The operator ends it, with the token's own rights.
        let id = env
            .ok(&["token", "list", "--kind", "admin", "--json"])
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|t| t["name"] == "bootstrap")
            .expect("bootstrap token")["id"]
            .as_i64()
            .unwrap();
        let args: Vec<String> = match end {
            "delete" => vec!["token".into(), "delete".into(), id.to_string()],
            _ => vec![
                "token".into(),
                "regenerate".into(),
                id.to_string(),
                "--as".into(),
                "bootstrap@authgate.local".into(),
            ],
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        env.ok(&args);

        // Restarts with the same file: the old key stays refused, and
        // one log line says why.
        for _ in 0..2 {
            let (mut replica, base) = start_and_wait(
                &env,
                &[
                    "bootstrap_token_file is consumed",
                    "bootstrap token created",
                    "bootstrap token has the new key",
                ],
            )
            .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(
                get(&format!("{base}/admin/api-tokens"), Some(&key))
                    .await
                    .status,
                401,
                "{end}: the bootstrap key came back"
            );
            replica.terminate();
            let log = replica.log.lock().unwrap().clone();
            let consumed: Vec<&String> = log
                .iter()
                .filter(|l| l.contains("bootstrap_token_file is consumed"))
                .collect();
            assert_eq!(consumed.len(), 1, "{end}: {log:#?}");
            assert!(
                !log.iter().any(|l| l.contains(&key)),
                "the key is never logged"
            );
        }
        let bootstrap_tokens = sql(
            &env.schema,
            "SELECT count(*) FROM tokens WHERE name = 'bootstrap'",
        )
        .await[0]
            .get::<_, i64>(0);
        assert_eq!(bootstrap_tokens, i64::from(end == "regenerate"), "{end}");
        // The database keeps a fingerprint of the file's key, never the key.
        let stored = sql(
            &env.schema,
            "SELECT row_to_json(b)::text FROM bootstrap_keys b",
        )
        .await;
        assert_eq!(stored.len(), 1);
        let row: String = stored[0].get(0);
        let hasher = authgate::token::Hasher::new(SALT);
        assert!(
            !row.contains(&key) && !row.contains(&hasher.hash_hex(&key)),
            "{row}"
        );
    }
}

// ----- the web page over HTTP --------------------------------------------------

/// A minimal browser: a cookie jar and form posts.
struct Browser {
    base: String,
    cookies: HashMap<String, String>,
    origin: Option<String>,
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Browser {
    fn new(base: String) -> Self {
        Self {
            origin: Some(base.clone()),
            base,
            cookies: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep_cookies(&mut self, r: &Resp) {
        for v in r.headers.get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let (kv, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = kv.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), val.to_owned());
            }
        }
    }

    async fn get(&mut self, path: &str) -> Resp {
        let cookie = self.cookie_header();
        let r = request(
            "GET",
            &format!("{}{path}", self.base),
            None,
            &[("cookie", &cookie)],
            b"",
        )
        .await;
        self.keep_cookies(&r);
        r
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Resp {
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let cookie = self.cookie_header();
        let mut headers = vec![
            ("cookie", cookie.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        if let Some(o) = &self.origin {
            headers.push(("origin", o.as_str()));
        }
        let r = request(
            "POST",
            &format!("{}{path}", self.base),
            None,
            &headers,
            body.as_bytes(),
        )
        .await;
        self.keep_cookies(&r);
        r
    }

    async fn sign_in(&mut self, key: &str) -> Resp {
        let page = self.get("/").await;
        let csrf = csrf_of(&page);
        self.post("/login", &[("_csrf", &csrf), ("token", key)])
            .await
    }
}

fn text(r: &Resp) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

fn csrf_of(r: &Resp) -> String {
    let t = text(r);
    t.split(r#"name="_csrf" value=""#)
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no CSRF field in: {t}"))
        .to_owned()
}

/// The key a page shows in its key banner.
fn shown_key(page: &str) -> String {
    page.split(r#"<code id="token-key" class="key">"#)
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap_or_else(|| panic!("no key shown: {page}"))
        .to_owned()
}

fn location(r: &Resp) -> String {
    r.headers["location"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_web_page_sessions_csrf_and_rules() {
    let c = cast_with("", true).await;
    let base = format!("http://{}", c.g.management.unwrap());
    let mut b = Browser::new(base.clone());

    // Signed out: the sign-in page, with strict headers.
    let r = b.get("/").await;
    assert_eq!(r.status, 200);
    assert!(text(&r).contains(r#"<label for="token">Admin token</label>"#));
    let csp = r.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(
        b.get("/api-tokens").await.status,
        303,
        "lists need a session"
    );

    // Sign-in needs the form's double-submit token and a valid admin token.
    let mut stranger = Browser::new(base.clone());
    let r = stranger
        .post("/login", &[("_csrf", "x"), ("token", &c.alice)])
        .await;
    assert_eq!(r.status, 403);
    let (_, content_key) = c.env.content_token("c", "read-only", &[]);
    let r = b.sign_in(&content_key).await;
    assert_eq!(r.status, 401);
    assert!(text(&r).contains("not a valid admin token"));
    let r = b.sign_in(&c.alice).await;
    assert_eq!(r.status, 303);
    assert_eq!(location(&r), "/api-tokens");
    let set: Vec<String> = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let session = set
        .iter()
        .find(|c| c.starts_with("authgate_session="))
        .expect("session cookie");
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Strict"));
    assert!(!session.contains(&c.alice), "the cookie is not the key");

    // The list, then create a token through the form.
    let r = b.get("/api-tokens").await;
    assert_eq!(r.status, 200);
    assert!(text(&r).contains("Create new API Token"));
    assert!(
        !text(&r).contains(&c.alice),
        "the page never shows the sign-in key"
    );
    let csrf = csrf_of(&r);
    let form = [
        ("_csrf", csrf.as_str()),
        ("name", "from the page"),
        ("description", "<b>bold</b>"),
        ("duration", "30"),
        ("type", "custom"),
        ("permission", FIND_ARTICLES),
    ];
    let r = b.post("/api-tokens", &form[1..]).await;
    assert_eq!(r.status, 403, "no CSRF token, no write");
    let mut evil = Browser::new(base.clone());
    evil.cookies = b.cookies.clone();
    evil.origin = Some("http://evil.example".into());
    assert_eq!(
        evil.post("/api-tokens", &form).await.status,
        403,
        "cross-origin"
    );
    let mut blind = Browser::new(base.clone());
    blind.cookies = b.cookies.clone();
    blind.origin = None;
    assert_eq!(
        blind.post("/api-tokens", &form).await.status,
        403,
        "a POST that names no origin at all (neither Origin nor Referer)"
    );
    let r = b.post("/api-tokens", &form).await;
    assert_eq!(r.status, 303, "{}", text(&r));
    let detail = location(&r);
    let r = b.get(&detail).await;
    let page = text(&r);
    assert!(page.contains("Copy your new API Token now"), "{page}");
    let key = shown_key(&page);
    assert_eq!(key.len(), 256);
    assert_eq!(proxy_status(&c, "/api/articles", &key).await, 200);
    let again = text(&b.get(&detail).await);
    assert!(!again.contains(&key), "a fresh key is shown once");
    let list = text(&b.get("/api-tokens").await);
    assert!(list.contains("&lt;b&gt;bold&lt;/b&gt;"), "escaped");

    // Admin tokens: Alice's own shows View key; Bob's does not for her.
    let (bob_tid, _) = c.env.admin_token("bobs", "bob@example.com", &[]);
    let r = b.get(&format!("/admin-tokens/{bob_tid}")).await;
    assert_eq!(r.status, 200);
    let page = text(&r);
    assert!(page.contains("bob@example.com"));
    for hidden in ["View key", "Regenerate", ">Delete<"] {
        assert!(!page.contains(hidden), "{hidden} shown to a non-owner");
    }
    let csrf = csrf_of(&r);
    let r = b
        .post(
            &format!("/admin-tokens/{bob_tid}/reveal"),
            &[("_csrf", &csrf)],
        )
        .await;
    assert_eq!(
        r.status, 403,
        "viewing another owner's admin key is refused"
    );
    assert!(text(&r).contains("only the owner"));
    assert!(!text(&r).contains(r#"id="token-key""#));
    let r = b
        .post(
            &format!("/admin-tokens/{bob_tid}/regenerate"),
            &[("_csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, 403);
    let alice_tid = sql(
        &c.env.schema,
        "SELECT id FROM tokens WHERE name = 'alice-cli'",
    )
    .await[0]
        .get::<_, i64>(0);
    let r = b.get(&format!("/admin-tokens/{alice_tid}")).await;
    assert!(text(&r).contains("View key"));
    let r = b
        .post(
            &format!("/admin-tokens/{alice_tid}/reveal"),
            &[("_csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, 303);
    let page = text(&b.get(&location(&r)).await);
    assert!(page.contains(&c.alice), "the owner may view her key");

    // Disabled checkboxes: what the signed-in token lacks.
    let r = b.get("/admin-tokens/new").await;
    let page = text(&r);
    let webhooks = page
        .split(r#"value="admin::webhooks.read""#)
        .nth(1)
        .and_then(|s| s.split('>').next())
        .unwrap_or_else(|| panic!("webhooks.read offered: {page}"));
    assert!(webhooks.contains("disabled"), "{webhooks}");
    let articles = page
        .split(&format!(r#"value="{READ_ARTICLES}""#))
        .nth(1)
        .and_then(|s| s.split('>').next())
        .unwrap();
    assert!(!articles.contains("disabled"), "{articles}");

    // Sign out; and a session whose token is deleted ends at once.
    let csrf = csrf_of(&b.get("/api-tokens").await);
    let r = b.post("/logout", &[("_csrf", &csrf)]).await;
    assert_eq!(r.status, 303);
    assert_eq!(b.get("/api-tokens").await.status, 303);
    let (tid, temp) = c
        .env
        .admin_token("temp", "alice@example.com", &["admin::api-tokens.read"]);
    let mut t = Browser::new(base);
    assert_eq!(t.sign_in(&temp).await.status, 303);
    assert_eq!(t.get("/api-tokens").await.status, 200);
    c.env.ok(&["token", "delete", &tid.to_string()]);
    let r = t.get("/api-tokens").await;
    assert_eq!(r.status, 401);
    assert!(text(&r).contains("Signed out"));
}

/// The page's regenerate offers to keep the old key working, as the API's
/// `keepOldForSeconds` does, and shows until when it does.
#[tokio::test]
async fn the_web_page_regenerates_keeping_the_old_key_as_chosen() {
    let c = cast().await;
    let mut b = Browser::new(format!("http://{}", c.g.management.unwrap()));
    assert_eq!(b.sign_in(&c.alice).await.status, 303);
    let (id, first) = c.env.content_token("site", "read-only", &[]);
    let detail = format!("/api-tokens/{id}");
    let regenerate = format!("{detail}/regenerate");
    let r = b.get(&detail).await;
    let page = text(&r);
    for choice in [
        r#"<option value="0">stops at once</option>"#,
        r#"<option value="604800">works 7 more days</option>"#,
    ] {
        assert!(page.contains(choice), "{page}");
    }
    assert!(!page.contains("Old key works until"));
    let csrf = csrf_of(&r);

    let r = b
        .post(&regenerate, &[("_csrf", &csrf), ("keep_old_for", "86400")])
        .await;
    assert_eq!(r.status, 303, "{}", text(&r));
    let page = text(&b.get(&detail).await);
    assert!(page.contains("Old key works until"), "{page}");
    let second = shown_key(&page);
    assert_eq!(proxy_status(&c, "/api/articles", &first).await, 200);
    assert_eq!(proxy_status(&c, "/api/articles", &second).await, 200);

    let r = b
        .post(&regenerate, &[("_csrf", &csrf), ("keep_old_for", "604801")])
        .await;
    assert_eq!(r.status, 400);
    assert!(text(&r).contains("at most 7 days"), "{}", text(&r));

    let r = b
        .post(&regenerate, &[("_csrf", &csrf), ("keep_old_for", "0")])
        .await;
    assert_eq!(r.status, 303);
    assert!(!text(&b.get(&detail).await).contains("Old key works until"));
    for key in [&first, &second] {
        eventually(Duration::from_secs(1), "the earlier keys stop", || async {
            proxy_status(&c, "/api/articles", key).await == 401
        })
        .await;
    }
}

// ----- issue 16: network pinning and expiry on the page ----------------------------

/// The `api-token.update` events, newest first.
fn update_events(env: &Env) -> Vec<Value> {
    env.ok(&["audit", "list", "--action", "api-token.update", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `allowedCidrs` over the REST API: create, show, update, clear, the
/// refusals at write time, the 403 on the proxy and on this API, the audit.
#[tokio::test]
async fn pinned_tokens_over_the_api() {
    let c = cast().await;
    let body = json!({"name": "office", "type": "full-access", "lifespan": null,
                      "allowedCidrs": ["2001:db8::1", "10.0.0.0/8", "10.0.0.0/8"]});
    let r = call(&c, "POST", "/admin/api-tokens", &c.alice, Some(body)).await;
    assert_eq!(r.status, 201, "{}", text(&r));
    let t = r.json()["data"].clone();
    assert_eq!(t["allowedCidrs"], json!(["10.0.0.0/8", "2001:db8::1/128"]));
    let (id, key) = (
        t["id"].as_i64().unwrap(),
        t["accessKey"].as_str().unwrap().to_owned(),
    );
    let path = format!("/admin/api-tokens/{id}");
    let shown = call(&c, "GET", &path, &c.alice, None).await.json();
    assert_eq!(shown["data"]["allowedCidrs"], t["allowedCidrs"]);
    let listed = call(&c, "GET", "/admin/api-tokens", &c.alice, None)
        .await
        .json();
    let alice_cli = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "office");
    assert_eq!(alice_cli.unwrap()["allowedCidrs"], t["allowedCidrs"]);

    // The tests reach the proxy from 127.0.0.1: outside.
    let r = get(&c.g.url("/api/articles"), Some(&key)).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json(),
        envelope(403, "ForbiddenError", "Client address not allowed")
    );

    // Update: the whole list replaced; a body without the field keeps it.
    let put = |b: Value| call(&c, "PUT", &path, &c.alice, Some(b));
    let r = put(json!({"allowedCidrs": ["127.0.0.1"]})).await;
    assert_eq!(r.json()["data"]["allowedCidrs"], json!(["127.0.0.1/32"]));
    eventually(Duration::from_secs(5), "the new list applies", || async {
        proxy_status(&c, "/api/articles", &key).await == 200
    })
    .await;
    let r = put(json!({"description": "kept"})).await;
    assert_eq!(r.json()["data"]["allowedCidrs"], json!(["127.0.0.1/32"]));
    let r = put(json!({"allowedCidrs": []})).await;
    assert_eq!(r.json()["data"]["allowedCidrs"], json!([]));

    // Refused at write time, naming the field and the value, no flag.
    let bad: &[(&str, Value, &str)] = &[
        ("PUT", json!({"allowedCidrs": ["10.0.0.1/8"]}),
         "allowedCidrs: `10.0.0.1/8` has host bits set: the block is 10.0.0.0/8 (or write 10.0.0.1/32 for the one address)"),
        ("PUT", json!({"allowedCidrs": ["10.0.0.0/8", "office"]}),
         "allowedCidrs: `office` is not an IP address or CIDR block"),
        ("POST", json!({"name": "bad", "type": "read-only", "allowedCidrs": ["::/129"]}),
         "allowedCidrs: `::/129`: the prefix length must be 0 to 128"),
        ("PUT", json!({"allowedCidrs": (0..65).map(|i| format!("10.0.{i}.0/24")).collect::<Vec<_>>()}),
         "a token may be pinned to at most 64 CIDR blocks, not 65"),
    ];
    for (method, body, message) in bad {
        let at = if *method == "POST" {
            "/admin/api-tokens"
        } else {
            path.as_str()
        };
        let r = call(&c, method, at, &c.alice, Some(body.clone())).await;
        assert_error(&r, 400, "ValidationError");
        assert_eq!(r.json()["error"]["message"], *message);
    }
    let names: Vec<Value> = call(&c, "GET", "/admin/api-tokens", &c.alice, None)
        .await
        .json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert!(
        !names.contains(&json!("bad")),
        "a refused create writes nothing"
    );
    let shown = call(&c, "GET", &path, &c.alice, None).await.json();
    assert_eq!(
        shown["data"]["allowedCidrs"],
        json!([]),
        "refused updates changed nothing"
    );

    // An admin token pinned elsewhere is refused on this API and the proxy.
    let body = json!({"name": "ci", "allowedCidrs": ["192.0.2.0/24"],
                      "adminPermissions": [{"action": "admin::api-tokens.read"}]});
    let r = call(&c, "POST", "/admin/admin-tokens", &c.alice, Some(body)).await;
    assert_eq!(r.status, 201, "{}", text(&r));
    assert_eq!(r.json()["data"]["allowedCidrs"], json!(["192.0.2.0/24"]));
    let ci = r.json()["data"]["accessKey"].as_str().unwrap().to_owned();
    let r = call(&c, "GET", "/admin/api-tokens", &ci, None).await;
    assert_error(&r, 403, "ForbiddenError");
    assert_eq!(r.json()["error"]["message"], "Client address not allowed");
    let r = get(&c.g.url("/admin/users"), Some(&ci)).await;
    assert_eq!(
        r.json(),
        envelope(403, "ForbiddenError", "Client address not allowed")
    );

    // Each change is one `api-token.update` event with the list.
    let changes: Vec<Value> = update_events(&c.env)
        .iter()
        .map(|e| e["changes"]["allowed_cidrs"].clone())
        .collect();
    assert_eq!(
        changes,
        [
            json!({"before": ["127.0.0.1/32"], "after": []}),
            Value::Null,
            json!({"before": ["10.0.0.0/8", "2001:db8::1/128"], "after": ["127.0.0.1/32"]}),
        ]
    );
}

/// The web page: the allowed networks on create, edit and the token's page.
#[tokio::test]
async fn the_web_page_pins_tokens() {
    let c = cast().await;
    let mut b = Browser::new(format!("http://{}", c.g.management.unwrap()));
    assert_eq!(b.sign_in(&c.alice).await.status, 303);
    let csrf = csrf_of(&b.get("/api-tokens/new").await);
    let create = |name, cidrs| {
        [
            ("_csrf", csrf.as_str()),
            ("name", name),
            ("duration", "7"),
            ("type", "read-only"),
            ("allowed_cidrs", cidrs),
        ]
    };
    let r = b
        .post(
            "/api-tokens",
            &create("pinned", "10.0.0.0/8\r\n2001:db8::/32"),
        )
        .await;
    assert_eq!(r.status, 303, "{}", text(&r));
    let detail = location(&r);
    let page = text(&b.get(&detail).await);
    assert!(page.contains("<dt>Allowed networks</dt><dd class=\"networks\"><code>10.0.0.0/8</code> <code>2001:db8::/32</code> </dd>"), "{page}");
    assert!(
        page.contains(">10.0.0.0/8\n2001:db8::/32</textarea>"),
        "the edit form holds the list"
    );
    let key = page
        .split(r#"<code id="token-key" class="key">"#)
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap()
        .to_owned();
    assert_eq!(proxy_status(&c, "/api/articles", &key).await, 403);

    // A wrong entry: the form again, with the message and what was typed.
    let r = b.post("/api-tokens", &create("typo", "10.0.0.1/8")).await;
    assert_eq!(r.status, 400);
    assert!(
        text(&r).contains("Allowed networks: `10.0.0.1/8` has host bits set"),
        "{}",
        text(&r)
    );
    assert!(text(&r).contains(">10.0.0.1/8</textarea>"));

    // Edit: loopback allowed, then cleared (an empty field).
    let id = detail.rsplit('/').next().unwrap().to_owned();
    let csrf = csrf_of(&b.get(&detail).await);
    let steps = [
        ("127.0.0.0/8", 200, "<code>127.0.0.0/8</code> "),
        ("", 200, r#"<span class="muted">Any address</span>"#),
        ("192.0.2.1", 403, "<code>192.0.2.1/32</code> "),
    ];
    for (cidrs, status, shown) in steps {
        let edit = [
            ("_csrf", csrf.as_str()),
            ("name", "pinned"),
            ("description", ""),
            ("type", "read-only"),
            ("allowed_cidrs", cidrs),
        ];
        let r = b.post(&detail, &edit).await;
        assert_eq!(r.status, 303, "{}", text(&r));
        let page = text(&b.get(&detail).await);
        assert!(
            page.contains(&format!(r#"<dd class="networks">{shown}</dd>"#)),
            "{cidrs}: {page}"
        );
        eventually(
            Duration::from_secs(5),
            "the page's list applies",
            || async { proxy_status(&c, "/api/articles", &key).await == status },
        )
        .await;
    }
    let shown = call(
        &c,
        "GET",
        &format!("/admin/api-tokens/{id}"),
        &c.alice,
        None,
    )
    .await;
    assert_eq!(
        shown.json()["data"]["allowedCidrs"],
        json!(["192.0.2.1/32"])
    );
    let events = update_events(&c.env);
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e["via"] == "ui"), "{events:?}");
}

/// The token lists: an expiry mark on each token that expires, and sorting
/// by expiry on the server, from the column header (issue 16, item 1).
#[tokio::test]
async fn the_token_lists_mark_and_sort_expiry() {
    let c = cast().await;
    let mut b = Browser::new(format!("http://{}", c.g.management.unwrap()));
    assert_eq!(b.sign_in(&c.alice).await.status, 303);
    let create = |name: &str, duration: &str| {
        c.env
            .content_token_with(name, "read-only", &["--duration", duration])
            .0
    };
    create("week", "7d");
    create("month", "30d");
    let (gone, today) = (create("gone", "30d"), create("today", "30d"));
    create("forever", "unlimited");
    exec(&c.env.schema, &format!(
        "UPDATE tokens SET expires_at = now() - interval '1 hour' WHERE id = {gone};
         UPDATE tokens SET expires_at = date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                                        + interval '23 hours 59 minutes' WHERE id = {today};
         UPDATE tokens SET expires_at = greatest(expires_at, now() + interval '1 minute') WHERE id = {today}")).await;
    let order = |page: &str| -> Vec<String> {
        page.split(r#"<th scope="row" data-label="Name"><a href="/api-tokens/"#)
            .skip(1)
            .map(|row| {
                row.split('>')
                    .nth(1)
                    .unwrap()
                    .split('<')
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    let page = text(&b.get("/api-tokens").await);
    assert_eq!(
        order(&page),
        ["week", "month", "gone", "today", "forever"],
        "made first, first"
    );
    assert!(page.contains(r#"<th scope="col" aria-sort="none"><a class="sort" href="/api-tokens?sort=expiresAt:asc">Expires"#), "{page}");
    assert!(page.contains(r#"<span class="expiry-mark expired">expired</span>"#));
    assert!(
        page.contains(r#"<span class="expiry-mark soon">expires today</span>"#)
            || page.contains(r#"<span class="expiry-mark soon">expires in 1 day</span>"#),
        "a token expiring before the day ends (or just past midnight)"
    );
    assert!(page.contains(r#"<span class="expiry-mark soon">expires in 7 days</span>"#));
    assert!(page.contains(r#"<span class="expiry-mark later">expires in 30 days</span>"#));
    let page = text(&b.get("/api-tokens?sort=expiresAt:asc").await);
    assert_eq!(order(&page), ["gone", "today", "week", "month", "forever"]);
    assert!(page.contains(
        r#"aria-sort="ascending"><a class="sort" href="/api-tokens?sort=expiresAt:desc">"#
    ));
    let page = text(&b.get("/api-tokens?sort=expiresAt:desc").await);
    assert_eq!(order(&page), ["forever", "month", "week", "today", "gone"]);
    assert!(page.contains(
        r#"aria-sort="descending"><a class="sort" href="/api-tokens?sort=expiresAt:asc">"#
    ));
    assert!(!page.contains("<script>"), "no inline script");
    let page = text(&b.get("/admin-tokens?sort=expiresAt:asc").await);
    assert!(
        page.contains(r#"aria-sort="ascending""#),
        "admin tokens sort too"
    );
}

// ----- openapi.yaml ------------------------------------------------------------

/// The `(METHOD, /path)` pairs under `paths:` of openapi.yaml. The file is
/// kept in a plain two-space layout this reader relies on.
fn openapi_routes() -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml"))
        .expect("openapi.yaml at the crate root");
    let mut out = BTreeSet::new();
    let mut in_paths = false;
    let mut path: Option<String> = None;
    for line in text.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            in_paths = line == "paths:";
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(p) = line.strip_prefix("  /") {
            path = Some(format!("/{}", p.trim_end_matches(':')));
        } else if let Some(m) = line.strip_prefix("    ").and_then(|l| l.strip_suffix(':')) {
            if ["get", "post", "put", "delete", "patch", "head", "options"].contains(&m) {
                out.insert((m.to_uppercase(), path.clone().expect("method under a path")));
            }
        }
    }
    out
}

#[test]
fn openapi_describes_exactly_the_routes_served() {
    let served: BTreeSet<(String, String)> = authgate::management::api::ROUTES
        .iter()
        .map(|r| (r.method.to_owned(), r.path.replace(":id", "{id}")))
        .collect();
    let described = openapi_routes();
    let missing: Vec<_> = served.difference(&described).collect();
    let extra: Vec<_> = described.difference(&served).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "openapi.yaml is out of step with api::ROUTES: undocumented {missing:?}, not served {extra:?}"
    );
    assert_eq!(served.len(), 20);
}

/// A stored row that does not decode is the store's fault: a 500 (logged),
/// never a 400 ValidationError blaming the caller.
#[tokio::test]
async fn a_corrupt_row_is_a_server_error_not_the_callers() {
    let c = cast().await;
    let (id, _) = c.env.content_token("broken", "read-only", &[]);
    exec(
        &c.env.schema,
        &format!(
            "ALTER TABLE tokens DROP CONSTRAINT tokens_type_check;
             UPDATE tokens SET type = 'no-such-type' WHERE id = {id};"
        ),
    )
    .await;
    let r = call(&c, "GET", "/admin/api-tokens", &c.root, None).await;
    assert_error(&r, 500, "InternalServerError");
    let r = call(&c, "GET", &format!("/admin/api-tokens/{id}"), &c.root, None).await;
    assert_error(&r, 500, "InternalServerError");
}

/// After a config reload, the management API checks permissions against,
/// and lists, the routes in force, as the proxy does (issue 17: it used to
/// keep the table it started with).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_reaches_the_management_catalog_and_its_checks() {
    let env = Env::new().await;
    env.super_admin("root@example.com");
    let (_, key) = env.admin_token("root", "root@example.com", &["admin::api-tokens.create"]);
    let (_replica, mgmt) = start_replica(&env);
    let catalog = || async {
        let r = request(
            "GET",
            &format!("{mgmt}/admin/permissions"),
            Some(&key),
            &[],
            b"",
        )
        .await;
        assert_eq!(r.status, 200);
        r.json()["data"].clone()
    };
    let has_posts = |cat: &Value| {
        let content = cat["contentApi"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["category"] == "api::post.post");
        let admin = cat["admin"].as_array().unwrap().iter().any(|g| {
            g["permissions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["subject"] == "api::post.post")
        });
        (content, admin)
    };
    let create = || async {
        let body = json!({"name": "posts", "type": "custom", "lifespan": null,
                          "permissions": ["api::post.post.find"]})
        .to_string();
        request(
            "POST",
            &format!("{mgmt}/admin/api-tokens"),
            Some(&key),
            &[("content-type", "application/json")],
            body.as_bytes(),
        )
        .await
        .status
    };
    assert_eq!(has_posts(&catalog().await), (false, false));
    assert_eq!(
        create().await,
        400,
        "api::post.post is not a known type yet"
    );

    env.write_config("[[content_types]]\nuid = \"api::post.post\"\nplural = \"posts\"\n");
    eventually(Duration::from_secs(6), "the reloaded catalog", || async {
        has_posts(&catalog().await) == (true, true)
    })
    .await;
    assert_eq!(create().await, 201, "the new type's action is now known");
}

/// `?expiring=` on the token lists: what `token list --expiring` prints,
/// through the API (the `AuthgateTokensExpiringSoon` alert's next step).
#[tokio::test]
async fn token_lists_filter_what_expires_soon() {
    let c = cast().await;
    for (name, duration) in [("week", "7d"), ("month", "30d"), ("forever", "unlimited")] {
        c.env
            .content_token_with(name, "read-only", &["--duration", duration]);
    }
    let names = |r: &Resp| -> Vec<String> {
        r.json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let r = call(&c, "GET", "/admin/api-tokens?expiring=8d", &c.bob, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(names(&r), ["week"]);
    let r = call(&c, "GET", "/admin/api-tokens?expiring=31d", &c.bob, None).await;
    assert_eq!(names(&r), ["week", "month"], "soonest first");
    let all = call(&c, "GET", "/admin/api-tokens", &c.bob, None).await;
    assert!(names(&all).contains(&"forever".to_owned()));
    let r = call(&c, "GET", "/admin/api-tokens?expiring=soon", &c.bob, None).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        envelope(
            400,
            "ValidationError",
            "`expiring` must be a duration such as 7d or 36h, not `soon`"
        )
    );
}
