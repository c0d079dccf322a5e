//! The strapi5 layout end to end: a real Strapi 5.54 schema in a fresh
//! database, rows as Strapi writes them, the real gateway and CLI.

mod support;

use std::time::Duration;

use support::strapi5::*;
use support::*;

const EXPIRED: &str = "(now() AT TIME ZONE 'UTC') - interval '1 minute'";
const EXPIRES_SOON: &str = "(now() AT TIME ZONE 'UTC') + interval '30 minutes'";

fn invalid() -> serde_json::Value {
    envelope(401, "UnauthorizedError", "Missing or invalid credentials")
}

#[tokio::test]
async fn every_spec_decision_in_the_strapi5_layout() {
    let env = StrapiEnv::with_triggers("").await;
    let db = &env.db;

    // An editor whose role may read users and articles (the latter with the
    // field and condition limits Strapi stores: authgate leaves those to Strapi).
    let editor = db.admin_user("editor@example.com").await;
    let editors = db.role("Editor", "strapi-editor").await;
    db.add_user_to_role(editor, editors).await;
    db.grant(editors, "admin::users.read", None).await;
    db.grant(editors, "admin::webhooks.read", None).await;
    let read_articles = db
        .admin_permission(
            "plugin::content-manager.explorer.read",
            Some("api::article.article"),
            r#"{"fields": ["title"], "locales": ["en"]}"#,
            r#"["admin::is-creator"]"#,
        )
        .await;
    db.exec(&format!(
        "INSERT INTO admin_permissions_role_lnk (permission_id, role_id, permission_ord) VALUES ({read_articles}, {editors}, 2)"
    ))
    .await;
    // A super admin whose role has no permission rows at all.
    let root = db.admin_user("root@example.com").await;
    let supers = db.role("Super Admin", "strapi-super-admin").await;
    db.add_user_to_role(root, supers).await;

    let (_, ro) = db
        .token(&TokenSpec::content("Read Only", "read-only"))
        .await;
    let (_, full) = db
        .token(&TokenSpec::content("Full Access", "full-access"))
        .await;
    let (custom_id, custom) = db
        .token(&TokenSpec {
            actions: &["api::article.article.find"],
            ..TokenSpec::content("custom", "custom")
        })
        .await;
    let (legacy_id, legacy) = db
        .token(&TokenSpec {
            kind: None,
            ..TokenSpec::content("from Strapi 4", "read-only")
        })
        .await;
    let (_, bogus) = db.token(&TokenSpec::content("bogus type", "bogus")).await;
    let (_, expired) = db
        .token(&TokenSpec {
            expires_at: Some(EXPIRED),
            ..TokenSpec::content("expired", "full-access")
        })
        .await;
    let (_, soon) = db
        .token(&TokenSpec {
            expires_at: Some(EXPIRES_SOON),
            ..TokenSpec::content("expires in 30 minutes", "full-access")
        })
        .await;
    let (adm_id, adm) = db
        .token(&TokenSpec {
            admin_permissions: &[
                ("admin::users.read", None),
                (
                    "plugin::content-manager.explorer.read",
                    Some("api::article.article"),
                ),
                // The token holds it, the owner's role does not.
                ("admin::roles.read", None),
            ],
            ..TokenSpec::admin("ci", Some(editor))
        })
        .await;
    let (_, root_adm) = db
        .token(&TokenSpec {
            admin_permissions: &[("admin::roles.read", None)],
            ..TokenSpec::admin("root ci", Some(root))
        })
        .await;
    let (_, orphan) = db.token(&TokenSpec::admin("orphan", None)).await;
    let (_, expired_adm) = db
        .token(&TokenSpec {
            expires_at: Some(EXPIRED),
            ..TokenSpec::admin("expired admin", Some(editor))
        })
        .await;
    let g = env.gateway().await;
    let unknown = new_key();
    let upper = ro.to_uppercase();
    let forbidden = envelope(403, "ForbiddenError", "Forbidden");
    let policy = envelope(403, "PolicyError", "Policy Failed");
    let expired_body = envelope(401, "UnauthorizedError", "Token expired");

    type Row<'a> = (
        &'a str,
        &'a str,
        Option<&'a str>,
        u16,
        Option<serde_json::Value>,
    );
    let rows: Vec<Row> = vec![
        // 401: no such token, not a key, a key as not issued, the wrong kind.
        ("GET", "/api/articles", Some(&unknown), 401, Some(invalid())),
        ("GET", "/api/articles", Some("short"), 401, Some(invalid())),
        ("GET", "/api/articles", Some(&upper), 401, Some(invalid())),
        ("GET", "/admin/users", Some(&ro), 401, Some(invalid())),
        ("GET", "/admin/users", Some(&legacy), 401, Some(invalid())),
        ("GET", "/api/articles", Some(&adm), 401, Some(invalid())),
        // 401: expired (UTC in Strapi, +14 in this database's sessions).
        (
            "GET",
            "/api/articles",
            Some(&expired),
            401,
            Some(expired_body.clone()),
        ),
        (
            "GET",
            "/admin/users/me",
            Some(&expired_adm),
            401,
            Some(expired_body),
        ),
        // 401: admin token owner.
        (
            "GET",
            "/admin/users/me",
            Some(&orphan),
            401,
            Some(envelope(401, "UnauthorizedError", "Token owner not found")),
        ),
        // 403: content API.
        (
            "POST",
            "/api/articles",
            Some(&ro),
            403,
            Some(forbidden.clone()),
        ),
        (
            "POST",
            "/api/articles",
            Some(&legacy),
            403,
            Some(forbidden.clone()),
        ),
        (
            "GET",
            "/api/articles/1",
            Some(&custom),
            403,
            Some(forbidden.clone()),
        ),
        ("GET", "/api/articles", Some(&bogus), 403, Some(forbidden)),
        // 403: admin, the token holds it but the owner's role does not.
        ("GET", "/admin/roles", Some(&adm), 403, Some(policy.clone())),
        // 403: the owner's role holds it but the token does not.
        (
            "GET",
            "/admin/webhooks",
            Some(&adm),
            403,
            Some(policy.clone()),
        ),
        // 403: neither holds it.
        (
            "DELETE",
            "/content-manager/collection-types/api::article.article/abc",
            Some(&adm),
            403,
            Some(policy),
        ),
        // 400.
        (
            "GET",
            "/admin/../api/x%2f",
            None,
            400,
            Some(envelope(400, "ValidationError", "Invalid request path")),
        ),
        // Allowed.
        ("GET", "/api/articles", Some(&ro), 200, None),
        ("GET", "/api/articles/1", Some(&ro), 200, None),
        ("GET", "/api/articles", Some(&legacy), 200, None),
        ("DELETE", "/api/articles/1", Some(&full), 200, None),
        ("GET", "/api/articles", Some(&soon), 200, None),
        ("GET", "/api/articles", Some(&custom), 200, None),
        ("GET", "/admin/users", Some(&adm), 200, None),
        ("GET", "/admin/users/me", Some(&adm), 200, None),
        // Conditions and field limits are Strapi's to enforce on the data.
        (
            "GET",
            "/content-manager/collection-types/api::article.article",
            Some(&adm),
            200,
            None,
        ),
        ("GET", "/admin/roles", Some(&root_adm), 200, None),
        ("GET", "/api/articles", None, 200, None),
        ("GET", "/uploads/a.png", Some("garbage"), 200, None),
    ];
    for (method, path, token, status, body) in rows {
        let r = request(method, &g.url(path), token, &[], b"").await;
        assert_eq!(
            r.status,
            status,
            "{method} {path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        if let Some(b) = body {
            assert_eq!(r.json(), b, "{method} {path}");
        }
    }

    // Identity: the admin token's owner, no type (Strapi's 'read-only' on
    // admin tokens means nothing); the NULL-kind row is a content-API token.
    let h = get(&g.url("/admin/users"), Some(&adm))
        .await
        .upstream_headers();
    assert_eq!(h["x-auth-token-id"], vec![adm_id.to_string()]);
    assert_eq!(h["x-auth-token-kind"], vec!["admin"]);
    assert_eq!(h["x-auth-owner-id"], vec![editor.to_string()]);
    assert_eq!(h["x-auth-owner-email"], vec!["editor@example.com"]);
    assert_eq!(h["x-auth-action"], vec!["admin::users.read"]);
    assert!(!h.contains_key("x-auth-token-type"), "{h:?}");
    let h = get(&g.url("/api/articles"), Some(&legacy))
        .await
        .upstream_headers();
    assert_eq!(h["x-auth-token-id"], vec![legacy_id.to_string()]);
    assert_eq!(h["x-auth-token-kind"], vec!["content-api"]);
    assert_eq!(h["x-auth-token-type"], vec!["read-only"]);

    // last_used_at: written in UTC, the one column authgate writes.
    eventually(Duration::from_secs(5), "last_used_at written", || async {
        db.one::<bool>(&format!(
            "SELECT last_used_at IS NOT NULL FROM strapi_api_tokens WHERE id = {custom_id}"
        ))
        .await
    })
    .await;
    let skew: f64 = db
        .one(&format!(
            "SELECT abs(extract(epoch FROM last_used_at - (now() AT TIME ZONE 'UTC')))::float8
             FROM strapi_api_tokens WHERE id = {custom_id}"
        ))
        .await;
    assert!(skew < 60.0, "last_used_at is UTC wall time, off by {skew}s");
}

#[tokio::test]
async fn with_triggers_changes_in_strapi_apply_at_once() {
    // A TTL of an hour: only the triggers can explain a change seen at once.
    let env = StrapiEnv::with_triggers("[cache]\nttl = \"1h\"\n").await;
    let db = &env.db;
    let dev = db.admin_user("dev@example.com").await;
    let devs = db.role("Developer", "strapi-developer").await;
    db.add_user_to_role(dev, devs).await;
    let users_read = db.grant(devs, "admin::users.read", None).await;
    let (adm_id, adm) = db
        .token(&TokenSpec {
            admin_permissions: &[("admin::users.read", None)],
            ..TokenSpec::admin("ci", Some(dev))
        })
        .await;
    let (custom_id, custom) = db
        .token(&TokenSpec {
            actions: &["api::article.article.find"],
            ..TokenSpec::content("custom", "custom")
        })
        .await;
    let g = env.gateway().await;
    let users = g.url("/admin/users");
    let articles = g.url("/api/articles");
    let status = |url: String, key: String| async move { get(&url, Some(&key)).await.status };
    let becomes = |url: &str, key: &str, want: u16, what: &'static str| {
        let (url, key) = (url.to_owned(), key.to_owned());
        async move {
            eventually(Duration::from_secs(2), what, || {
                let (url, key) = (url.clone(), key.clone());
                async move { get(&url, Some(&key)).await.status == want }
            })
            .await
        }
    };
    assert_eq!(status(users.clone(), adm.clone()).await, 200, "cached now");

    // The owner: deactivated, is_active NULL, re-activated, blocked.
    db.exec(&format!(
        "UPDATE admin_users SET is_active = false WHERE id = {dev}"
    ))
    .await;
    becomes(&users, &adm, 401, "deactivated owner").await;
    assert_eq!(
        get(&users, Some(&adm)).await.json(),
        envelope(401, "UnauthorizedError", "Token owner is deactivated")
    );
    db.exec(&format!(
        "UPDATE admin_users SET is_active = NULL WHERE id = {dev}"
    ))
    .await;
    assert_eq!(
        status(users.clone(), adm.clone()).await,
        401,
        "NULL is not active"
    );
    db.exec(&format!(
        "UPDATE admin_users SET is_active = true WHERE id = {dev}"
    ))
    .await;
    becomes(&users, &adm, 200, "re-activated owner").await;
    db.exec(&format!(
        "UPDATE admin_users SET blocked = true WHERE id = {dev}"
    ))
    .await;
    becomes(&users, &adm, 401, "blocked owner").await;
    db.exec(&format!(
        "UPDATE admin_users SET blocked = false WHERE id = {dev}"
    ))
    .await;
    becomes(&users, &adm, 200, "unblocked owner").await;

    // The role loses the permission: its row deleted (Strapi's way) ...
    db.exec(&format!(
        "DELETE FROM admin_permissions WHERE id = {users_read}"
    ))
    .await;
    becomes(&users, &adm, 403, "role lost the permission row").await;
    // ... granted again, then only its link to the role removed ...
    let again = db.grant(devs, "admin::users.read", None).await;
    becomes(&users, &adm, 200, "granted again").await;
    db.exec(&format!(
        "DELETE FROM admin_permissions_role_lnk WHERE permission_id = {again}"
    ))
    .await;
    becomes(&users, &adm, 403, "role lost the link").await;
    // ... linked again, then its subject narrowed.
    db.exec(&format!(
        "INSERT INTO admin_permissions_role_lnk (permission_id, role_id, permission_ord) VALUES ({again}, {devs}, 1)"
    ))
    .await;
    becomes(&users, &adm, 200, "linked again").await;
    db.exec(&format!(
        "UPDATE admin_permissions SET subject = 'api::article.article' WHERE id = {again}"
    ))
    .await;
    becomes(&users, &adm, 403, "role permission narrowed to a subject").await;
    db.exec(&format!(
        "UPDATE admin_permissions SET subject = NULL WHERE id = {again}"
    ))
    .await;
    becomes(&users, &adm, 200, "subject widened again").await;
    // The owner leaves the role, then becomes super admin.
    db.exec(&format!(
        "DELETE FROM admin_users_roles_lnk WHERE user_id = {dev} AND role_id = {devs}"
    ))
    .await;
    becomes(&users, &adm, 403, "owner left the role").await;
    let supers = db.role("Super Admin", "strapi-super-admin").await;
    db.add_user_to_role(dev, supers).await;
    becomes(&users, &adm, 200, "owner became super admin").await;
    db.exec(&format!(
        "UPDATE admin_roles SET code = 'demoted' WHERE id = {supers}"
    ))
    .await;
    becomes(&users, &adm, 403, "the role is no longer super admin").await;
    db.exec(&format!(
        "UPDATE admin_roles SET code = 'strapi-super-admin' WHERE id = {supers}"
    ))
    .await;
    becomes(&users, &adm, 200, "super admin again").await;

    // The token loses its own permission.
    db.exec(&format!(
        "DELETE FROM admin_permissions_api_token_lnk WHERE api_token_id = {adm_id}"
    ))
    .await;
    becomes(&users, &adm, 403, "token lost its permission").await;

    // Content-API: the custom token's permission renamed, then its link removed.
    assert_eq!(status(articles.clone(), custom.clone()).await, 200);
    db.exec(&format!(
        "UPDATE strapi_api_token_permissions SET action = 'api::article.article.create'
         WHERE id IN (SELECT api_token_permission_id FROM strapi_api_token_permissions_token_lnk
                      WHERE api_token_id = {custom_id})"
    ))
    .await;
    becomes(&articles, &custom, 403, "custom action renamed").await;
    assert_eq!(
        request("POST", &articles, Some(&custom), &[], b"{}")
            .await
            .status,
        200
    );
    db.exec(&format!(
        "DELETE FROM strapi_api_token_permissions_token_lnk WHERE api_token_id = {custom_id}"
    ))
    .await;
    eventually(Duration::from_secs(2), "custom link removed", || async {
        request("POST", &articles, Some(&custom), &[], b"{}")
            .await
            .status
            == 403
    })
    .await;

    // The token edited in Strapi's panel: expired, regenerated, deleted.
    db.exec(&format!(
        "UPDATE strapi_api_tokens SET type = 'full-access', expires_at = {EXPIRED} WHERE id = {custom_id}"
    ))
    .await;
    becomes(&articles, &custom, 401, "expired in Strapi").await;
    let new_key = new_key();
    db.exec(&format!(
        "UPDATE strapi_api_tokens SET expires_at = NULL, access_key = '{}' WHERE id = {custom_id}",
        python_hmac(STRAPI_SALT, &new_key)
    ))
    .await;
    becomes(&articles, &custom, 401, "old key after regeneration").await;
    let r = get(&articles, Some(&new_key)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    db.exec(&format!(
        "DELETE FROM strapi_api_tokens WHERE id = {custom_id}"
    ))
    .await;
    becomes(&articles, &new_key, 401, "deleted in Strapi").await;

    // The owner deleted: the database drops the owner link.
    db.exec(&format!("DELETE FROM admin_users WHERE id = {dev}"))
        .await;
    becomes(&users, &adm, 401, "owner deleted").await;
    assert_eq!(
        get(&users, Some(&adm)).await.json(),
        envelope(401, "UnauthorizedError", "Token owner not found")
    );

    // A token created in Strapi's panel works at once.
    let (_, fresh) = db.token(&TokenSpec::content("new", "read-only")).await;
    assert_eq!(status(articles.clone(), fresh).await, 200);
}

#[tokio::test]
async fn without_triggers_polling_sees_changes_and_start_up_says_so() {
    let env = StrapiEnv::new("").await;
    let db = &env.db;
    let owner = db.admin_user("ops@example.com").await;
    let supers = db.role("Super Admin", "strapi-super-admin").await;
    db.add_user_to_role(owner, supers).await;
    let (_, adm) = db.token(&TokenSpec::admin("ops", Some(owner))).await;
    let mut replica = Replica::start(&env.config_path, &[]);
    let log = replica.log.lock().expect("log").join("\n");
    assert!(
        log.contains("invalidation triggers are not installed")
            && log.contains("postgres.poll_interval")
            && log.contains("authgate migrate --layout strapi5"),
        "start-up says changes are polled, and how to get triggers:\n{log}"
    );
    assert!(
        log.contains("no index on access_key")
            && log.contains(authgate::store::strapi5::RECOMMENDED_INDEX),
        "start-up warns about the index:\n{log}"
    );
    assert!(
        log.contains("content types read from Strapi") && log.contains("api::article.article"),
        "start-up names the content types it found:\n{log}"
    );

    let url = replica.url("/admin/users/me");
    assert_eq!(get(&url, Some(&adm)).await.status, 200, "cached now");
    db.exec(&format!(
        "UPDATE admin_users SET is_active = false, updated_at = now() AT TIME ZONE 'UTC' WHERE id = {owner}"
    ))
    .await;
    eventually(
        Duration::from_secs(1),
        "the poll sees the deactivation (cache.ttl is 5 s)",
        || async { get(&url, Some(&adm)).await.status == 401 },
    )
    .await;

    // A token made in Strapi a moment ago works on its first request: the
    // set of known hashes waits for the next poll instead of saying no.
    let (_, fresh) = db
        .token(&TokenSpec::content("just made", "read-only"))
        .await;
    assert_eq!(
        get(&replica.url("/api/articles"), Some(&fresh))
            .await
            .status,
        200
    );
    // Made-up keys are refused (from memory: see the flood test).
    let misses: Vec<_> = (0..150)
        .map(|_| {
            let (u, k) = (replica.url("/api/articles"), new_key());
            async move { get(&u, Some(&k)).await.status }
        })
        .collect();
    for s in futures_util::future::join_all(misses).await {
        assert_eq!(s, 401);
    }
    assert_eq!(replica.terminate(), Some(0));
}

#[tokio::test]
async fn a_key_hashed_by_python_with_the_oracle_salt_authenticates() {
    let env = StrapiEnv::new("").await;
    let key = new_key();
    let hash = python_hmac("oracle-api-token-salt", &key);
    assert_eq!(hash.len(), 128);
    assert_eq!(
        hash,
        authgate::token::Hasher::new("oracle-api-token-salt").hash_hex(&key),
        "authgate's hash is Python's (and Strapi's) HMAC-SHA512"
    );
    let id: i32 = env
        .db
        .query(
            "INSERT INTO strapi_api_tokens (document_id, name, description, kind, type, access_key,
                                            lifespan, expires_at, created_at, updated_at, published_at)
             VALUES ('oracledocumentid00000000', 'oracle', '', 'content-api', 'read-only', $1,
                     NULL, NULL, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC')
             RETURNING id",
            &[&hash],
        )
        .await[0]
        .get(0);
    let g = env.gateway().await;
    let r = get(&g.url("/api/articles"), Some(&key)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.upstream_header("x-auth-token-id"), Some(id.to_string()));
    assert_eq!(
        r.upstream_header("x-auth-token-name").as_deref(),
        Some("oracle")
    );
    let r = get(&g.url("/api/articles"), Some(&key.to_uppercase())).await;
    assert_eq!(r.status, 401, "the key as issued, not another spelling");
}

#[tokio::test]
async fn an_unreachable_store_is_503_and_a_dead_upstream_502() {
    let db = StrapiDb::create().await;
    let pg: std::net::SocketAddr = "127.0.0.1:5432".parse().expect("addr");
    let proxy = CutProxy::start(pg).await;
    let env = StrapiEnv::in_db(db, "").await;
    let (_, cached) = env
        .db
        .token(&TokenSpec::content("cached", "read-only"))
        .await;
    let (_, other) = env
        .db
        .token(&TokenSpec::content("other", "read-only"))
        .await;
    let mut cfg = env.config();
    cfg.postgres.url = authgate::config::SecretUrl(
        env.db
            .url()
            .replace("127.0.0.1:5432", &proxy.addr.to_string()),
    );
    assert!(
        cfg.postgres.url.expose().contains(&proxy.addr.to_string()),
        "AUTHGATE_TEST_DATABASE_URL must point at 127.0.0.1:5432 for this test"
    );
    let g = Gateway::start(cfg).await;
    assert_eq!(
        get(&g.url("/api/articles"), Some(&cached)).await.status,
        200
    );
    proxy.set(ProxyMode::Refuse);
    let r = get(&g.url("/api/articles"), Some(&other)).await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.json(),
        envelope(
            503,
            "ServiceUnavailableError",
            "Authentication temporarily unavailable"
        )
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let mut cfg = env.config();
    cfg.upstream.url = format!("http://{closed}").parse().expect("uri");
    let g2 = Gateway::start(cfg).await;
    let r = get(&g2.url("/api/articles"), Some(&other)).await;
    assert_eq!(r.status, 502);
    assert_eq!(
        r.json(),
        envelope(502, "BadGatewayError", "Upstream unavailable")
    );
}

#[tokio::test]
async fn rate_limits_apply_to_strapi_tokens() {
    let env = StrapiEnv::new("[rate_limit]\nper_token = 2\nwindow = \"1m\"\n").await;
    let (_, key) = env
        .db
        .token(&TokenSpec::content("busy", "full-access"))
        .await;
    let g = env.gateway().await;
    let url = g.url("/api/articles");
    assert_eq!(get(&url, Some(&key)).await.status, 200);
    assert_eq!(get(&url, Some(&key)).await.status, 200);
    let r = get(&url, Some(&key)).await;
    assert_eq!(r.status, 429);
    assert_eq!(
        r.json(),
        envelope(429, "RateLimitError", "Too many requests")
    );
    assert!(r.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn migrate_installs_only_triggers_and_touches_no_strapi_data() {
    let env = StrapiEnv::new("").await;
    let db = &env.db;
    let user = db.admin_user("a@example.com").await;
    let role = db.role("Editor", "strapi-editor").await;
    db.add_user_to_role(user, role).await;
    let perm = db.grant(role, "admin::users.read", None).await;
    let (token, _) = db
        .token(&TokenSpec {
            admin_permissions: &[("admin::users.read", None)],
            ..TokenSpec::admin("ci", Some(user))
        })
        .await;
    let token_perm: i32 = db
        .one(&format!(
            "SELECT permission_id FROM admin_permissions_api_token_lnk WHERE api_token_id = {token}"
        ))
        .await;

    // A config that does not name the layout: --layout selects it, and the
    // schema then defaults to Strapi's `public`.
    let plain = env.dir.join("plain.toml");
    std::fs::write(
        &plain,
        format!(
            "[postgres]\nurl = \"{}\"\n[tokens]\nsalt = \"{STRAPI_SALT}\"\n",
            db.url()
        ),
    )
    .expect("write");
    let snapshot = || async {
        let mut out = Vec::new();
        for t in authgate::store::strapi5::TABLES {
            out.push(
                db.one::<String>(&format!(
                    "SELECT '{t}:' || (SELECT count(*) FROM information_schema.columns
                                       WHERE table_schema = 'public' AND table_name = '{t}')
                            || ':' || coalesce(md5(string_agg(x::text, ',' ORDER BY x::text)), '-')
                     FROM {t} x"
                ))
                .await,
            );
        }
        out
    };
    let before = snapshot().await;
    let migrate = |extra: &[&str]| {
        let mut cmd = authgate_command();
        cmd.arg("--config").arg(&plain).arg("migrate").args(extra);
        cmd.env_remove("API_TOKEN_SALT");
        cmd.output().expect("run authgate")
    };
    let out = migrate(&["--layout", "strapi5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("installed") && said.contains("`public`"),
        "{said}"
    );
    assert_eq!(
        snapshot().await,
        before,
        "Strapi's rows and columns are as they were"
    );
    assert_eq!(
        db.one::<i64>(
            "SELECT count(*) FROM pg_tables WHERE tablename IN ('tokens', 'users', 'roles', 'schema_migrations')"
        )
        .await,
        0,
        "no authgate tables"
    );
    assert_eq!(
        db.one::<i64>(
            "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND t.tgname LIKE 'authgate%'"
        )
        .await,
        authgate::store::strapi5::TRIGGERS.len() as i64
    );
    assert_eq!(
        db.one::<String>(
            "SELECT string_agg(strapi_schema || ':' || version, ',') FROM authgate.strapi5_migrations"
        )
        .await,
        "public:1"
    );
    let out = migrate(&["--layout", "strapi5"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("up to date"),
        "idempotent: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        db.one::<i64>(
            "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = 'authgate' AND p.proname LIKE 'strapi5\\_%'"
        )
        .await,
        9,
        "the trigger functions live in schema authgate"
    );

    // What the triggers say, on the channel the listener uses.
    let (listener, mut conn) = tokio_postgres::connect(&db.url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        use futures_util::StreamExt;
        let mut s = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(m)) = s.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = m {
                let _ = tx.send(n.payload().to_owned());
            }
        }
    });
    let cfg = env.config();
    let channel = authgate::store::channel(&cfg.postgres);
    assert_eq!(channel, "authgate_strapi5_public");
    listener
        .batch_execute(&format!("LISTEN {channel}"))
        .await
        .expect("listen");
    let hash: String = db
        .one(&format!(
            "SELECT access_key FROM strapi_api_tokens WHERE id = {token}"
        ))
        .await;
    assert_eq!(
        heard(db, &mut rx, &channel, &format!(
            "UPDATE strapi_api_tokens SET last_used_at = now() AT TIME ZONE 'UTC', updated_at = now() AT TIME ZONE 'UTC' WHERE id = {token}"
        ))
        .await,
        Vec::<String>::new(),
        "last_used_at alone says nothing"
    );
    // Old and new row say the same, and Postgres delivers it once.
    assert_eq!(
        heard(
            db,
            &mut rx,
            &channel,
            &format!("UPDATE strapi_api_tokens SET name = 'renamed' WHERE id = {token}")
        )
        .await,
        vec![format!("token:{token}:{hash}")]
    );
    assert_eq!(
        heard(
            db,
            &mut rx,
            &channel,
            &format!("UPDATE admin_users SET is_active = false WHERE id = {user}")
        )
        .await,
        vec![format!("user:{user}")]
    );
    assert_eq!(
        heard(
            db,
            &mut rx,
            &channel,
            &format!("UPDATE admin_users SET prefered_language = 'fr' WHERE id = {user}")
        )
        .await,
        Vec::<String>::new(),
        "irrelevant columns say nothing"
    );
    assert_eq!(
        heard(db, &mut rx, &channel, &format!(
            "UPDATE admin_permissions SET subject = 'api::article.article' WHERE id IN ({perm}, {token_perm})"
        ))
        .await,
        vec![format!("role:{role}"), format!("token:{token}")]
    );
    assert_eq!(
        heard(db, &mut rx, &channel, &format!(
            "UPDATE admin_permissions SET properties = '{{\"fields\": [\"title\"]}}', conditions = '[\"admin::is-creator\"]' WHERE id = {perm}"
        ))
        .await,
        Vec::<String>::new(),
        "properties and conditions are Strapi's business"
    );
    assert_eq!(
        heard(
            db,
            &mut rx,
            &channel,
            &format!("DELETE FROM admin_permissions WHERE id = {perm}")
        )
        .await,
        vec![format!("role:{role}")],
        "the cascade to the link speaks"
    );

    // Strapi's own database user needs no rights on schema authgate for its
    // writes to pass through the triggers.
    let writer = db.new_db_role("strapi_writer").await;
    db.exec(&format!(
        "GRANT USAGE ON SCHEMA public TO {writer};
         GRANT ALL ON ALL TABLES IN SCHEMA public TO {writer};
         GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {writer};"
    ))
    .await;
    let got = heard(
        db,
        &mut rx,
        &channel,
        &format!(
            "SET ROLE {writer};
         UPDATE admin_users SET blocked = true WHERE id = {user};
         UPDATE admin_permissions SET subject = NULL WHERE id = {token_perm};
         DELETE FROM strapi_api_tokens WHERE id = {token};
         RESET ROLE;"
        ),
    )
    .await;
    assert!(got.contains(&format!("user:{user}")), "{got:?}");
    assert!(got.contains(&format!("token:{token}:{hash}")), "{got:?}");

    // A trigger lost (a table recreated, a hand-made DROP): check-config
    // notices, migrate repairs.
    db.exec("DROP TRIGGER authgate_notify ON admin_users_roles_lnk")
        .await;
    let out = env.cli(&["check-config"]);
    assert!(out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("incomplete") && err.contains("admin_users_roles_lnk.authgate_notify"),
        "{err}"
    );
    let said = env.ok(&["migrate"]);
    assert!(said.contains("installed"), "{said}");
    let err = stderr(&env.cli(&["check-config"]));
    assert!(!err.contains("trigger"), "{err}");
}

#[tokio::test]
async fn check_config_warns_about_the_missing_access_key_index() {
    let env = StrapiEnv::with_triggers("").await;
    let out = env.cli(&["check-config"]);
    assert!(out.status.success(), "a warning is not an error");
    let err = stderr(&out);
    assert!(
        err.contains("warning") && err.contains(authgate::store::strapi5::RECOMMENDED_INDEX),
        "{err}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("layout = \"strapi5\""),
        "the effective config is printed as before"
    );
    env.db
        .exec(authgate::store::strapi5::RECOMMENDED_INDEX)
        .await;
    let err = stderr(&env.cli(&["check-config"]));
    assert!(!err.contains("warning"), "{err}");
    assert!(err.contains("indexed and announce changes"), "{err}");

    // A database that cannot be reached: said, and still exit 0.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let text = std::fs::read_to_string(&env.config_path)
        .expect("read")
        .replace(
            &env.db.url(),
            &format!("postgres://postgres@{closed}/strapi"),
        );
    std::fs::write(&env.config_path, text).expect("write");
    let out = env.cli(&["check-config"]);
    assert!(out.status.success());
    assert!(
        stderr(&out).contains("could not reach the database"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn the_cli_reads_strapi_tokens_and_refuses_to_write() {
    let env = StrapiEnv::new("").await;
    let db = &env.db;
    let owner = db.admin_user("owner@example.com").await;
    let other = db.admin_user("other@example.com").await;
    let supers = db.role("Super Admin", "strapi-super-admin").await;
    let readers = db.role("Token readers", "strapi-token-readers").await;
    db.add_user_to_role(owner, supers).await;
    db.add_user_to_role(other, readers).await;
    db.grant(readers, "admin::admin-tokens.read", None).await;
    db.grant(readers, "admin::api-tokens.read", None).await;
    let (ro_id, ro_key) = db
        .token(&TokenSpec::content("Read Only", "read-only"))
        .await;
    let (legacy_id, _) = db
        .token(&TokenSpec {
            kind: None,
            expires_at: Some(EXPIRES_SOON),
            ..TokenSpec::content("legacy", "full-access")
        })
        .await;
    let (adm_id, adm_key) = db
        .token(&TokenSpec {
            admin_permissions: &[(
                "plugin::content-manager.explorer.read",
                Some("api::article.article"),
            )],
            ..TokenSpec::admin("ci", Some(owner))
        })
        .await;

    let lines: Vec<serde_json::Value> = env
        .ok(&["token", "list", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    let by_id = |id: i32| {
        lines
            .iter()
            .find(|v| v["id"] == id)
            .unwrap_or_else(|| panic!("token {id} listed"))
            .clone()
    };
    assert_eq!(by_id(ro_id)["kind"], "content-api");
    assert_eq!(by_id(ro_id)["type"], "read-only");
    assert_eq!(by_id(legacy_id)["kind"], "content-api", "kind NULL");
    assert!(by_id(legacy_id)["expires_at"].is_string());
    assert_eq!(by_id(adm_id)["kind"], "admin");
    assert_eq!(by_id(adm_id)["type"], serde_json::Value::Null);
    assert_eq!(by_id(adm_id)["owner"], "owner@example.com");
    assert_eq!(
        by_id(adm_id)["permissions"],
        serde_json::json!(["plugin::content-manager.explorer.read@api::article.article"])
    );
    let admins = env.ok(&["token", "list", "--kind", "admin", "--json"]);
    assert_eq!(admins.lines().count(), 1, "{admins}");

    // Showing a key again is an audit event: without the audit table
    // (schema authgate, made by `migrate`) it is refused, saying so.
    let unrecorded = env.cli(&["token", "show", &ro_id.to_string(), "--reveal"]);
    assert_eq!(unrecorded.status.code(), Some(1));
    assert!(
        stderr(&unrecorded).contains("run `authgate migrate --layout strapi5`"),
        "{}",
        stderr(&unrecorded)
    );
    env.ok(&["migrate"]);

    // show, and --reveal with Strapi's encrypted_key (same format).
    let v: serde_json::Value = serde_json::from_str(
        env.ok(&["token", "show", &ro_id.to_string(), "--reveal", "--json"])
            .trim(),
    )
    .expect("json");
    assert_eq!(v["name"], "Read Only");
    assert_eq!(v["key"], ro_key.as_str());
    let denied = env.cli(&[
        "token",
        "show",
        &adm_id.to_string(),
        "--reveal",
        "--as",
        "other@example.com",
    ]);
    assert_eq!(
        denied.status.code(),
        Some(1),
        "admin keys: their owner only"
    );
    let v: serde_json::Value = serde_json::from_str(
        env.ok(&[
            "token",
            "show",
            &adm_id.to_string(),
            "--reveal",
            "--as",
            "owner@example.com",
            "--json",
        ])
        .trim(),
    )
    .expect("json");
    assert_eq!(v["key"], adm_key.as_str());
    // Both views are in the audit trail, with who viewed them.
    let views = env.ok(&[
        "audit",
        "list",
        "--action",
        "admin-token.view-key",
        "--json",
    ]);
    assert!(views.contains("owner@example.com"), "{views}");
    let views = env.ok(&["audit", "list", "--action", "api-token.view-key", "--json"]);
    assert!(views.contains(r#""actor":"operator""#), "{views}");
    assert!(
        !views.contains(ro_key.as_str()),
        "no key in the audit trail"
    );
    assert!(env
        .ok(&["audit", "verify"])
        .contains("audit chain intact: 2 events"));
    assert!(env.ok(&["user", "list"]).contains("owner@example.com"));
    assert!(env.ok(&["role", "list"]).contains("(every permission)"));

    // Every write: one clear line, exit 1, nothing written.
    let before: String = db
        .one("SELECT md5(string_agg(x::text, ',' ORDER BY x.id)) FROM strapi_api_tokens x")
        .await;
    let id = ro_id.to_string();
    let writes: Vec<Vec<&str>> = vec![
        vec![
            "token",
            "create",
            "--kind",
            "content-api",
            "--name",
            "x",
            "--type",
            "read-only",
        ],
        vec!["token", "regenerate", &id],
        vec!["token", "delete", &id],
        vec!["user", "create", "--email", "new@example.com"],
        vec!["user", "deactivate", "owner@example.com"],
        vec!["user", "block", "owner@example.com"],
        vec!["role", "create", "x"],
        vec!["role", "grant", "Token readers", "admin::users.read"],
    ];
    for args in writes {
        let out = env.cli(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.contains("strapi5 layout") && err.contains("Strapi's admin panel"),
            "{args:?}: {err}"
        );
    }
    let after: String = db
        .one("SELECT md5(string_agg(x::text, ',' ORDER BY x.id)) FROM strapi_api_tokens x")
        .await;
    assert_eq!(before, after);
    assert!(
        db.one::<bool>(&format!(
            "SELECT is_active AND NOT blocked FROM admin_users WHERE id = {owner}"
        ))
        .await
    );
}

/// Rotation with overlap and import would write Strapi's tables: refused
/// with the lines docs/strapi5.md quotes, before stdin is read.
#[tokio::test]
async fn the_cli_refuses_rotation_with_overlap_and_import() {
    let env = StrapiEnv::new("").await;
    let (id, _) = env
        .db
        .token(&TokenSpec::content("Read Only", "read-only"))
        .await;
    let id = id.to_string();
    for (args, what) in [
        (
            vec!["token", "import", "--kind", "content-api", "--name", "l"],
            "token import",
        ),
        (
            vec!["token", "regenerate", &id, "--keep-old-for", "1h"],
            "token regenerate",
        ),
    ] {
        let out = env.cli(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(
            stderr(&out).trim(),
            format!("authgate: `{what}` is not available in the strapi5 layout: tokens, users and roles are managed in Strapi's admin panel (authgate only reads them; `token list` and `token show` work)")
        );
    }
    assert_eq!(env.ok(&["token", "list", "--json"]).lines().count(), 1);
}

#[tokio::test]
async fn strapi_tables_in_another_schema() {
    let db = StrapiDb::create_in("cms").await;
    let env = StrapiEnv::in_db(db, "[cache]\nttl = \"1h\"\n").await;
    let said = env.ok(&["migrate"]);
    assert!(said.contains("`cms`"), "{said}");
    let owner = env.db.admin_user("cms@example.com").await;
    let supers = env.db.role("Super Admin", "strapi-super-admin").await;
    env.db.add_user_to_role(owner, supers).await;
    let (_, key) = env.db.token(&TokenSpec::admin("ci", Some(owner))).await;
    let g = env.gateway().await;
    let url = g.url("/admin/users/me");
    assert_eq!(get(&url, Some(&key)).await.status, 200);
    env.db
        .exec(&format!(
            "UPDATE admin_users SET is_active = false WHERE id = {owner}"
        ))
        .await;
    eventually(
        Duration::from_secs(2),
        "deactivation via authgate_strapi5_cms",
        || async { get(&url, Some(&key)).await.status == 401 },
    )
    .await;
}

/// Run `sql`, then return what the channel heard from it: the payloads
/// without their `@<unix ms>` stamp, sorted. A sentinel notified afterwards
/// marks the end (notifications arrive in commit order), so silence is
/// checked without guessing a delay.
async fn heard(
    db: &StrapiDb,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    channel: &str,
    sql: &str,
) -> Vec<String> {
    db.exec(sql).await;
    db.exec(&format!("SELECT pg_notify('{channel}', 'sentinel')"))
        .await;
    let mut out = Vec::new();
    loop {
        let p = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("the sentinel arrives")
            .expect("the listening connection is open");
        if p == "sentinel" {
            break;
        }
        let (body, ms) = p
            .rsplit_once('@')
            .unwrap_or_else(|| panic!("payload without its time stamp: {p}"));
        assert!(ms.parse::<u64>().is_ok(), "{p}");
        out.push(body.to_owned());
    }
    out.sort();
    out
}

#[tokio::test]
async fn the_management_listener_reads_strapi_tokens_and_refuses_writes() {
    let env = StrapiEnv::new("").await;
    let db = &env.db;
    let owner = db.admin_user("tokens@example.com").await;
    let managers = db.role("Token managers", "strapi-token-managers").await;
    db.add_user_to_role(owner, managers).await;
    for action in [
        "admin::api-tokens.read",
        "admin::api-tokens.create",
        "admin::api-tokens.delete",
        "admin::api-tokens.regenerate",
    ] {
        db.grant(managers, action, None).await;
    }
    let (ro_id, _) = db
        .token(&TokenSpec::content("Read Only", "read-only"))
        .await;
    let (_, adm) = db
        .token(&TokenSpec {
            admin_permissions: &[
                ("admin::api-tokens.read", None),
                ("admin::api-tokens.create", None),
                ("admin::api-tokens.delete", None),
                ("admin::api-tokens.regenerate", None),
            ],
            ..TokenSpec::admin("tooling", Some(owner))
        })
        .await;
    let g = env.gateway().await;
    let json = [("content-type", "application/json")];

    let r = request("GET", &g.mgmt("/admin/api-tokens"), Some(&adm), &json, b"").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let listed = r.json()["data"].clone();
    assert!(
        listed.as_array().is_some_and(|l| l
            .iter()
            .any(|t| t["id"] == ro_id && t["name"] == "Read Only")),
        "Strapi's tokens are listed: {listed}"
    );

    let before: i64 = db.one("SELECT count(*) FROM strapi_api_tokens").await;
    let body = br#"{"name": "new", "type": "read-only", "lifespan": null}"#;
    let import =
        br#"{"name": "legacy", "type": "read-only", "accessKey": "legacy-key-0123456789abc"}"#;
    let rotate = br#"{"keepOldForSeconds": 3600}"#;
    for (method, path, body) in [
        ("POST", "/admin/api-tokens".to_owned(), &body[..]),
        ("DELETE", format!("/admin/api-tokens/{ro_id}"), &b""[..]),
        ("POST", "/admin/api-tokens/import".to_owned(), &import[..]),
        (
            "POST",
            format!("/admin/api-tokens/{ro_id}/regenerate"),
            &rotate[..],
        ),
    ] {
        let r = request(method, &g.mgmt(&path), Some(&adm), &json, body).await;
        assert_eq!(
            r.status,
            403,
            "{method} {path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let e = r.json()["error"].clone();
        assert_eq!(e["name"], "ForbiddenError", "{e}");
        assert!(
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("Strapi's admin panel")),
            "{e}"
        );
        // The lines docs/strapi5.md quotes.
        let what = match path.rsplit('/').next() {
            Some("import") => Some("import"),
            Some("regenerate") => Some("regenerate"),
            _ => None,
        };
        if let Some(what) = what {
            assert_eq!(
                e["message"],
                format!("cannot {what} tokens in the strapi5 layout: tokens, users and roles are managed in Strapi's admin panel")
            );
        }
    }
    assert_eq!(
        db.one::<i64>("SELECT count(*) FROM strapi_api_tokens")
            .await,
        before
    );
}

/// Network pinning and `token update` (issue 16) in this layout: Strapi's
/// tokens are never pinned, and every way of pinning one, or of editing it,
/// is refused with exactly the message docs/strapi5.md shows.
#[tokio::test]
async fn network_pinning_and_token_update_are_refused() {
    let env = StrapiEnv::new("").await;
    let db = &env.db;
    let owner = db.admin_user("tokens@example.com").await;
    let supers = db.role("Super Admin", "strapi-super-admin").await;
    db.add_user_to_role(owner, supers).await;
    let (ro_id, _) = db
        .token(&TokenSpec::content("Read Only", "read-only"))
        .await;
    let perms = [
        ("admin::api-tokens.read", None),
        ("admin::api-tokens.create", None),
        ("admin::api-tokens.update", None),
    ];
    let (_, adm) = db
        .token(&TokenSpec {
            admin_permissions: &perms,
            ..TokenSpec::admin("tooling", Some(owner))
        })
        .await;
    let before: String = db
        .one("SELECT md5(string_agg(x::text, ',' ORDER BY x.id)) FROM strapi_api_tokens x")
        .await;

    let refused = |what: &str| {
        format!("authgate: `{what}` is not available in the strapi5 layout: tokens, users and roles are managed in Strapi's admin panel (authgate only reads them; `token list` and `token show` work)")
    };
    let update = format!("token update {ro_id}");
    for (args, what) in [
        (format!("{update} --allow-cidr 10.0.0.0/8"), "token update"),
        (format!("{update} --clear-cidrs"), "token update"),
        (format!("{update} --name renamed"), "token update"),
        (
            "token create --kind content-api --name x --allow-cidr 10.0.0.0/8".into(),
            "token create",
        ),
    ] {
        let args: Vec<&str> = args.split(' ').collect();
        let out = env.cli(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(stderr(&out).trim_end(), refused(what), "{args:?}");
    }

    let g = env.gateway().await;
    let json = [("content-type", "application/json")];
    let r = request("GET", &g.mgmt("/admin/api-tokens"), Some(&adm), &json, b"").await;
    let listed = r.json()["data"].as_array().unwrap().clone();
    assert!(
        !listed.is_empty()
            && listed
                .iter()
                .all(|t| t["allowedCidrs"] == serde_json::json!([]))
    );
    let read_only = |what: &str| {
        envelope(403, "ForbiddenError", &format!("cannot {what} in the strapi5 layout: tokens, users and roles are managed in Strapi's admin panel"))
    };
    let path = g.mgmt(&format!("/admin/api-tokens/{ro_id}"));
    let body = br#"{"allowedCidrs": ["10.0.0.0/8"]}"#;
    let r = request("PUT", &path, Some(&adm), &json, body).await;
    assert_eq!(r.json(), read_only("edit tokens"));
    let body = br#"{"name": "new", "type": "read-only", "allowedCidrs": ["10.0.0.0/8"]}"#;
    let r = request(
        "POST",
        &g.mgmt("/admin/api-tokens"),
        Some(&adm),
        &json,
        body,
    )
    .await;
    assert_eq!(r.json(), read_only("create tokens"));
    let body = br#"{"allowedCidrs": ["10.0.0.1/8"]}"#;
    let r = request("PUT", &path, Some(&adm), &json, body).await;
    assert_eq!(r.status, 400, "an invalid CIDR is refused first");
    let after: String = db
        .one("SELECT md5(string_agg(x::text, ',' ORDER BY x.id)) FROM strapi_api_tokens x")
        .await;
    assert_eq!(before, after, "Strapi's tokens untouched");
}

// ---------------------------------------------------------------------------
// How fast changes made in Strapi take effect, polled and with triggers.
// ---------------------------------------------------------------------------

/// Wait until `path` with `key` answers `status`; how long that took.
async fn until_status(url: &str, key: &str, status: u16) -> Duration {
    let t0 = std::time::Instant::now();
    loop {
        let r = get(url, Some(key)).await;
        if r.status == status {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "{url} never answered {status} (last: {} {})",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Print p50/p99/max of `v` (under --nocapture) and return the p99.
fn report(mode: &str, kind: &str, v: &mut [Duration]) -> Duration {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    eprintln!(
        "{mode:<28} {kind:<22} n={:<4} p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms",
        v.len(),
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        v[v.len() - 1].as_secs_f64() * 1e3
    );
    at(0.99)
}

/// A token row as Strapi writes it, hashed with authgate's own HMAC (the
/// Python oracle is checked elsewhere; here speed matters).
async fn strapi_token(
    c: &tokio_postgres::Client,
    key: &str,
    kind: &str,
    ty: &str,
    owner: Option<i32>,
) -> i32 {
    let hash = authgate::token::Hasher::new(STRAPI_SALT).hash_hex(key);
    let id: i32 = c
        .query_one(
            "INSERT INTO strapi_api_tokens (document_id, name, description, kind, type, access_key,
                                            created_at, updated_at, published_at)
             VALUES (md5(random()::text), 'timed ' || md5(random()::text), '', $1, $2, $3,
                     now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC')
             RETURNING id",
            &[&kind, &ty, &hash],
        )
        .await
        .expect("insert token")
        .get(0);
    if let Some(owner) = owner {
        c.execute(
            "INSERT INTO strapi_api_tokens_admin_user_owner_lnk (api_token_id, user_id, api_token_ord) VALUES ($1, $2, 1)",
            &[&id, &owner],
        )
        .await
        .expect("owner link");
    }
    id
}

/// Every kind of change Strapi's admin panel makes, `n` times each, as
/// the SQL Strapi runs; returns (kind, times until the gateway at `base`
/// applied it).
async fn time_changes(db: &StrapiDb, base: &str, n: usize) -> Vec<(&'static str, Vec<Duration>)> {
    let c = db.client().await;
    let now = "now() AT TIME ZONE 'UTC'";
    let articles = format!("{base}/api/articles");
    let me = format!("{base}/admin/users/me");
    let users = format!("{base}/admin/users");
    let mut out = Vec::new();

    // Create: the first request with a key saved a moment ago.
    let mut v = Vec::new();
    for _ in 0..n {
        let key = new_key();
        strapi_token(&c, &key, "content-api", "read-only", None).await;
        v.push(until_status(&articles, &key, 200).await);
    }
    out.push(("create token", v));

    // Regenerate: a new access_key (and updated_at) on the row.
    let mut key = new_key();
    let id = strapi_token(&c, &key, "content-api", "read-only", None).await;
    let mut v = Vec::new();
    for _ in 0..n {
        until_status(&articles, &key, 200).await;
        let next = new_key();
        let hash = authgate::token::Hasher::new(STRAPI_SALT).hash_hex(&next);
        c.execute(
            &format!(
                "UPDATE strapi_api_tokens SET access_key = $1, updated_at = {now} WHERE id = $2"
            ),
            &[&hash, &id],
        )
        .await
        .expect("regenerate");
        v.push(until_status(&articles, &key, 401).await);
        key = next;
    }
    out.push(("regenerate token", v));

    // Edit a custom token's permissions: remove `find`, add it back.
    let key = new_key();
    let id = strapi_token(&c, &key, "content-api", "custom", None).await;
    let add = |id: i32| {
        let c = &c;
        async move {
            c.execute(
                &format!(
                    "WITH p AS (INSERT INTO strapi_api_token_permissions (document_id, action, created_at, updated_at, published_at)
                                VALUES (md5(random()::text), 'api::article.article.find', {now}, {now}, {now}) RETURNING id)
                     INSERT INTO strapi_api_token_permissions_token_lnk (api_token_permission_id, api_token_id, api_token_permission_ord)
                     SELECT p.id, $1, 1 FROM p"
                ),
                &[&id],
            )
            .await
            .expect("add permission");
        }
    };
    add(id).await;
    let mut v = Vec::new();
    for i in 0..n {
        until_status(&articles, &key, if i % 2 == 0 { 200 } else { 403 }).await;
        if i % 2 == 0 {
            c.execute(
                "DELETE FROM strapi_api_token_permissions WHERE id IN
                   (SELECT api_token_permission_id FROM strapi_api_token_permissions_token_lnk WHERE api_token_id = $1)",
                &[&id],
            )
            .await
            .expect("remove permission");
            v.push(until_status(&articles, &key, 403).await);
        } else {
            add(id).await;
            v.push(until_status(&articles, &key, 200).await);
        }
    }
    out.push(("edit token permissions", v));

    // Delete a token (cached first).
    let mut v = Vec::new();
    for _ in 0..n {
        let key = new_key();
        let id = strapi_token(&c, &key, "content-api", "full-access", None).await;
        until_status(&articles, &key, 200).await;
        c.execute("DELETE FROM strapi_api_tokens WHERE id = $1", &[&id])
            .await
            .expect("delete");
        v.push(until_status(&articles, &key, 401).await);
    }
    out.push(("delete token", v));

    // An owner deactivated, or blocked (and restored, untimed).
    let owner = db.admin_user("timed-owner@example.com").await;
    let editors = db.role("Timed editors", "strapi-timed-editor").await;
    db.add_user_to_role(owner, editors).await;
    let mut perm = db.grant(editors, "admin::users.read", None).await;
    let key = new_key();
    let token = strapi_token(&c, &key, "admin", "read-only", Some(owner)).await;
    let token_perm = db
        .admin_permission("admin::users.read", None, "{}", "[]")
        .await;
    c.execute(
        "INSERT INTO admin_permissions_api_token_lnk (permission_id, api_token_id, permission_ord) VALUES ($1, $2, 1)",
        &[&token_perm, &token],
    )
    .await
    .expect("token permission");
    for (kind, off, on) in [
        ("deactivate user", "is_active = false", "is_active = true"),
        ("block user", "blocked = true", "blocked = false"),
    ] {
        let mut v = Vec::new();
        for _ in 0..n {
            until_status(&me, &key, 200).await;
            c.batch_execute(&format!(
                "UPDATE admin_users SET {off}, updated_at = {now} WHERE id = {owner}"
            ))
            .await
            .expect("user off");
            v.push(until_status(&me, &key, 401).await);
            c.batch_execute(&format!(
                "UPDATE admin_users SET {on}, updated_at = {now} WHERE id = {owner}"
            ))
            .await
            .expect("user on");
        }
        out.push((kind, v));
    }

    // A role's permission removed (and granted again, timed too).
    let mut v = Vec::new();
    for i in 0..n {
        until_status(&users, &key, if i % 2 == 0 { 200 } else { 403 }).await;
        if i % 2 == 0 {
            c.execute("DELETE FROM admin_permissions WHERE id = $1", &[&perm])
                .await
                .expect("revoke");
            v.push(until_status(&users, &key, 403).await);
        } else {
            perm = db.grant(editors, "admin::users.read", None).await;
            v.push(until_status(&users, &key, 200).await);
        }
    }
    out.push(("edit role permissions", v));

    // Delete a user (their token stays, without an owner).
    let mut v = Vec::new();
    for i in 0..n {
        let user = db.admin_user(&format!("gone-{i}@example.com")).await;
        let key = new_key();
        strapi_token(&c, &key, "admin", "read-only", Some(user)).await;
        until_status(&me, &key, 200).await;
        c.execute("DELETE FROM admin_users WHERE id = $1", &[&user])
            .await
            .expect("delete user");
        v.push(until_status(&me, &key, 401).await);
    }
    out.push(("delete user", v));
    out
}

/// The polling interval of the timed run without triggers (the default,
/// 250 ms, takes 10x longer to test: `AUTHGATE_TEST_POLL_INTERVAL=250ms`).
/// The test makes each change right after the poll that showed the last
/// one, so its times are close to the worst case: one interval plus a poll.
fn test_poll_interval() -> Duration {
    std::env::var("AUTHGATE_TEST_POLL_INTERVAL")
        .ok()
        .and_then(|v| humantime::parse_duration(&v).ok())
        .unwrap_or(Duration::from_millis(25))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_made_in_strapi_is_seen_within_1s_polled_and_50ms_with_triggers() {
    let n: usize = std::env::var("AUTHGATE_TEST_CHANGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let interval = test_poll_interval();
    // One mode after the other: run at once, each one's CPU load showed in
    // the other's times.
    let polled = async {
        let env = StrapiEnv::new("").await;
        let mut cfg = env.config();
        cfg.postgres.poll_interval = interval;
        let g = env.gateway_with(cfg).await;
        time_changes(&env.db, &g.url(""), n).await
    };
    let triggered = async {
        let env = StrapiEnv::with_triggers("").await;
        let g = env.gateway().await;
        time_changes(&env.db, &g.url(""), n).await
    };
    let polled = polled.await;
    let triggered = triggered.await;
    let mode = format!("polled every {interval:?}");
    let mut slow = Vec::new();
    for (kind, mut v) in polled {
        let p99 = report(&mode, kind, &mut v);
        if p99 >= Duration::from_secs(1) {
            slow.push(format!("{kind}: p99 {p99:?} without triggers"));
        }
    }
    for (kind, mut v) in triggered {
        let p99 = report("with triggers", kind, &mut v);
        if p99 >= Duration::from_millis(50) {
            slow.push(format!("{kind}: p99 {p99:?} with triggers"));
        }
    }
    assert!(slow.is_empty(), "{slow:#?}");
}

/// A flood of made-up keys costs Postgres nothing, with or without
/// triggers: no token lookup, and (polled) no extra poll.
#[tokio::test]
async fn a_flood_of_made_up_keys_never_reaches_postgres() {
    for triggers in [false, true] {
        let env = if triggers {
            StrapiEnv::with_triggers("").await
        } else {
            StrapiEnv::new("").await
        };
        let (_, key) = env.db.token(&TokenSpec::content("real", "read-only")).await;
        let g = env.gateway().await;
        // Once a poll (or the listener) has loaded the set, a flood.
        until_status(&g.url("/api/articles"), &key, 200).await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        let lookups = || async {
            let text = String::from_utf8_lossy(
                &get(&format!("http://{}/metrics", g.metrics), None)
                    .await
                    .body,
            )
            .into_owned();
            text.lines()
                .find(|l| {
                    l.starts_with("authgate_store_query_duration_seconds_count")
                        && l.contains("find_token")
                })
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let before = lookups().await;
        let url = g.url("/api/articles");
        let t0 = std::time::Instant::now();
        let workers: Vec<_> = (0..32)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move {
                    let mut refused = 0;
                    for _ in 0..60 {
                        assert_eq!(get(&url, Some(&new_key())).await.status, 401);
                        refused += 1;
                    }
                    refused
                })
            })
            .collect();
        let mut refused = 0;
        for w in workers {
            refused += w.await.expect("flood worker");
        }
        let took = t0.elapsed();
        let after = lookups().await;
        eprintln!(
            "flood (triggers: {triggers}): {refused} made-up keys refused in {took:?}, {} token lookups",
            after - before
        );
        assert_eq!(after - before, 0.0, "token lookups during the flood");
        assert_eq!(get(&url, Some(&key)).await.status, 200);
    }
}

/// The expiry gauges read Strapi's own table (issue 16): expiry times are
/// Strapi's UTC timestamps, and a NULL kind is a content-API token.
#[tokio::test]
async fn token_gauges_count_strapi_tokens() {
    let env = StrapiEnv::new("").await;
    for (name, kind, expires) in [
        (
            "soon",
            "'content-api'",
            "now() AT TIME ZONE 'UTC' + interval '3 days'",
        ),
        (
            "old-row",
            "NULL",
            "now() AT TIME ZONE 'UTC' + interval '20 days'",
        ),
        (
            "gone",
            "'content-api'",
            "now() AT TIME ZONE 'UTC' - interval '1 hour'",
        ),
        ("forever", "'content-api'", "NULL"),
    ] {
        env.db
            .query(
                &format!(
                    "INSERT INTO strapi_api_tokens (document_id, name, description, kind, type, access_key,
                                                    expires_at, created_at, updated_at, published_at)
                     VALUES (md5($1), $1, '', {kind}, 'read-only', md5($1), {expires},
                             now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC')"
                ),
                &[&name],
            )
            .await;
    }
    let g = env.gateway().await;
    let want = [
        r#"authgate_tokens{kind="content-api",state="active"} 3"#,
        r#"authgate_tokens{kind="content-api",state="expired"} 1"#,
        r#"authgate_tokens_expiring{kind="content-api",within="1d"} 0"#,
        r#"authgate_tokens_expiring{kind="content-api",within="7d"} 1"#,
        r#"authgate_tokens_expiring{kind="content-api",within="30d"} 2"#,
        r#"authgate_tokens{kind="admin",state="active"} 0"#,
    ];
    let metrics = format!("http://{}/metrics", g.metrics);
    eventually(Duration::from_secs(5), "the gauges at start", || async {
        let r = get(&metrics, None).await;
        let text = String::from_utf8_lossy(&r.body).into_owned();
        want.iter().all(|w| text.lines().any(|l| l == *w))
    })
    .await;
}
