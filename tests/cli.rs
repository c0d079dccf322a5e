//! The `authgate` binary: commands, output shapes, exit codes.

mod support;

use std::process::Command;

use support::*;

fn bin() -> Command {
    let mut c = authgate_command();
    c.env_remove("API_TOKEN_SALT");
    c
}

#[tokio::test]
async fn token_lifecycle_and_output_shapes() {
    let env = Env::new().await;
    let created = env.json(&[
        "token",
        "create",
        "--kind",
        "content-api",
        "--name",
        "site",
        "--type",
        "custom",
        "--permission",
        "api::article.article.find",
        "--description",
        "the site",
    ]);
    for field in ["id", "kind", "name", "key"] {
        assert!(!created[field].is_null(), "create --json carries {field}");
    }
    let key = created["key"].as_str().unwrap().to_owned();
    assert_eq!(key.len(), 256);
    assert!(key
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    let id = created["id"].as_i64().unwrap().to_string();

    // The key is shown once: never by list or show.
    let list = env.ok(&["token", "list", "--json"]);
    let show = env.ok(&["token", "show", &id]);
    let table = env.ok(&["token", "list"]);
    for out in [&list, &show, &table] {
        assert!(!out.contains(&key), "key leaked: {out}");
    }
    let line: serde_json::Value = serde_json::from_str(list.lines().next().unwrap()).unwrap();
    for field in [
        "id",
        "kind",
        "name",
        "type",
        "owner",
        "expires_at",
        "last_used_at",
    ] {
        assert!(
            line.get(field).is_some(),
            "list --json carries {field}: {line}"
        );
    }
    assert_eq!(line["type"], "custom");
    assert!(show.contains("api::article.article.find"));

    // The stored hash is HMAC-SHA512(salt, key), computed independently.
    let rows = sql(
        &env.schema,
        &format!("SELECT access_key FROM tokens WHERE id = {id}"),
    )
    .await;
    let stored: String = rows[0].get(0);
    let expected = std::process::Command::new("openssl")
        .args(["dgst", "-sha512", "-hmac", SALT, "-r"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(key.as_bytes())?;
            c.wait_with_output()
        })
        .expect("openssl");
    assert_eq!(
        stored,
        String::from_utf8(expected.stdout)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
    );

    let regen = env.json(&["token", "regenerate", &id]);
    assert_ne!(regen["key"], created["key"]);
    assert_eq!(regen["id"], created["id"]);
    let deleted = env.json(&["token", "delete", &id]);
    assert_eq!(deleted["deleted"], true);
    let out = env.cli(&["token", "show", &id]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains(&format!("no token with id {id}")), "{err}");
}

#[tokio::test]
async fn creation_rules() {
    let env = Env::new().await;
    let bad: &[(&[&str], &str)] = &[
        (
            &[
                "token",
                "create",
                "--kind",
                "content-api",
                "--name",
                "x",
                "--type",
                "custom",
                "--permission",
                "api::nope.nope.find",
            ],
            "unknown content-API action `api::nope.nope.find`",
        ),
        (
            &[
                "token",
                "create",
                "--kind",
                "content-api",
                "--name",
                "x",
                "--type",
                "custom",
            ],
            "at least one --permission",
        ),
        (
            &[
                "token",
                "create",
                "--kind",
                "content-api",
                "--name",
                "x",
                "--type",
                "read-only",
                "--permission",
                "api::article.article.find",
            ],
            "only for custom tokens",
        ),
        (
            &["token", "create", "--kind", "admin", "--name", "x"],
            "--owner",
        ),
        (
            &[
                "token",
                "create",
                "--kind",
                "admin",
                "--name",
                "x",
                "--owner",
                "nobody@example.com",
            ],
            "no user with email nobody@example.com",
        ),
    ];
    for (args, needle) in bad {
        let out = env.cli(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
    env.content_token("dup", "read-only", &[]);
    let out = env.cli(&[
        "token",
        "create",
        "--kind",
        "content-api",
        "--name",
        "dup",
        "--type",
        "read-only",
    ]);
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let env = Env::new().await;
    for args in [
        vec!["token", "create", "--kind", "nonsense", "--name", "x"],
        vec!["token", "create", "--kind", "content-api"],
        vec![
            "token",
            "create",
            "--kind",
            "content-api",
            "--name",
            "x",
            "--duration",
            "8d",
        ],
        vec!["role", "grant", "r", "bad action"],
        vec!["frobnicate"],
    ] {
        let out = env.cli(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
    let out = bin().arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[tokio::test]
async fn users_and_roles() {
    let env = Env::new().await;
    env.ok(&["role", "create", "editor"]);
    env.ok(&[
        "role",
        "grant",
        "editor",
        "plugin::content-manager.explorer.read@api::article.article",
    ]);
    let u = env.json(&[
        "user",
        "create",
        "--email",
        "ed@example.com",
        "--name",
        "Ed",
        "--role",
        "editor",
    ]);
    assert_eq!(u["roles"], serde_json::json!(["editor"]));
    let roles = env.ok(&["role", "list", "--json"]);
    assert!(
        roles.contains("\"super-admin\"") && roles.contains("explorer.read@api::article.article"),
        "{roles}"
    );
    let out = env.cli(&["user", "create", "--email", "ED@example.com"]);
    assert!(
        stderr(&out).contains("already exists"),
        "emails are unique, ignoring case"
    );
    let out = env.cli(&[
        "user",
        "create",
        "--email",
        "x@example.com",
        "--role",
        "ghost",
    ]);
    assert!(
        stderr(&out).contains("no role named `ghost`"),
        "{}",
        stderr(&out)
    );
    let out = env.cli(&["user", "deactivate", "nobody@example.com"]);
    assert_eq!(out.status.code(), Some(1));
    let out = env.cli(&["role", "revoke", "editor", "never.granted"]);
    assert_eq!(out.status.code(), Some(1));
    env.ok(&["user", "block", "ed@example.com"]);
    assert!(env.ok(&["user", "list"]).contains("blocked"));
}

#[tokio::test]
async fn config_errors_and_redaction() {
    let env = Env::new().await;
    let out = env.cli(&["check-config"]);
    assert!(out.status.success());
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(!printed.contains(SALT), "salt leaked");
    assert!(printed.contains("<redacted>"));

    let bad = env.dir.join("bad.toml");
    std::fs::write(&bad, "[cache]\nttl = \"forever\"\n[tokens]\nsalt = \"s\"\n").unwrap();
    let out = bin()
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cache.ttl"), "{err}");

    // --config after the subcommand, or from AUTHGATE_CONFIG.
    let out = bin()
        .arg("check-config")
        .arg("--config")
        .arg(&env.config_path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = bin()
        .arg("check-config")
        .env("AUTHGATE_CONFIG", &env.config_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = bin()
        .arg("check-config")
        .env("AUTHGATE_CONFIG", env.dir.join("missing.toml"))
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("cannot read config file"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn migrate_is_idempotent() {
    let env = Env::new().await;
    let out = env.ok(&["migrate"]);
    assert!(out.contains("up to date"), "{out}");
    let rows = sql(&env.schema, "SELECT count(*) FROM schema_migrations").await;
    assert_eq!(
        rows[0].get::<_, i64>(0),
        authgate::store::MIGRATIONS.len() as i64
    );
}

#[tokio::test]
async fn postgres_tls_verify_refuses_an_unverifiable_server() {
    // The local server's certificate is self-signed (or it has none): with
    // tls = "verify" authgate must refuse rather than fall back to plain.
    let env = Env::new().await;
    let text = std::fs::read_to_string(&env.config_path)
        .unwrap()
        .replace("pool_size = 4", "pool_size = 4\ntls = \"verify\"");
    std::fs::write(&env.config_path, text).unwrap();
    let out = env.cli(&["token", "list"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("TLS") || err.contains("tls") || err.contains("certificate"),
        "{err}"
    );
}

/// `token list --expiring`: only active tokens that expire inside the
/// window, soonest first (issue 16).
#[tokio::test]
async fn token_list_expiring_shows_what_expires_soon() {
    let env = Env::new().await;
    let create = |name: &str, duration: &str| {
        env.json(&[
            "token",
            "create",
            "--kind",
            "content-api",
            "--name",
            name,
            "--type",
            "read-only",
            "--duration",
            duration,
        ])["id"]
            .as_i64()
            .unwrap()
    };
    let week = create("week", "7d");
    let month = create("month", "30d");
    create("forever", "unlimited");
    let gone = create("gone", "7d");
    exec(
        &env.schema,
        &format!("UPDATE tokens SET expires_at = now() - interval '1 hour' WHERE id = {gone}"),
    )
    .await;
    let ids = |window: &str| -> Vec<i64> {
        env.ok(&["token", "list", "--expiring", window, "--json"])
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                    .as_i64()
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(ids("7d"), vec![week]);
    assert_eq!(ids("31d"), vec![week, month]);
    assert_eq!(ids("1d"), Vec::<i64>::new());
    let table = env.ok(&["token", "list", "--expiring", "7d"]);
    assert!(table.contains("week") && !table.contains("month") && !table.contains("gone"));
    let bad = env.cli(&["token", "list", "--expiring", "soon"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("invalid duration `soon`"),
        "{}",
        stderr(&bad)
    );
}

/// `serve` says at start when the schema lacks a migration (every lookup
/// that reads its columns would fail with 503 until `authgate migrate`).
#[tokio::test]
async fn pending_migrations_are_the_ones_the_schema_lacks() {
    let env = Env::new().await;
    let cfg = env.config();
    let pending = authgate::store::pending_migrations(&cfg.postgres)
        .await
        .expect("asked");
    assert_eq!(pending, Vec::<i32>::new(), "a migrated schema");
    exec(
        &env.schema,
        "DELETE FROM schema_migrations WHERE version = 5",
    )
    .await;
    let pending = authgate::store::pending_migrations(&cfg.postgres)
        .await
        .expect("asked");
    assert_eq!(pending, vec![5]);
    let mut fresh = cfg.postgres.clone();
    fresh.schema = format!("{}_never_migrated", env.schema);
    let all = authgate::store::pending_migrations(&fresh)
        .await
        .expect("asked");
    assert_eq!(all.first(), Some(&1));
    assert!(all.contains(&5), "{all:?}");
}

/// What a name sent through the API may carry to a terminal: an OSC title,
/// a bell, a carriage return, "erase line", DEL and a C1 CSI.
const HOSTILE: &str = "ok\u{1b}]0;pwned\u{7}\r\u{1b}[2Kfake\u{7f}\u{9b}31m";

fn assert_inert(what: &str, out: &[u8]) {
    for raw in [&b"\x1b"[..], b"\x07", b"\r", b"\x7f", "\u{9b}".as_bytes()] {
        assert!(
            !out.windows(raw.len()).any(|w| w == raw),
            "{what} prints {raw:?} raw: {:?}",
            String::from_utf8_lossy(out)
        );
    }
}

#[tokio::test]
async fn operator_output_never_carries_terminal_controls() {
    let env = Env::new().await;
    env.super_admin("root@example.com");
    let perms = ["admin::api-tokens.create", "admin::api-tokens.read"];
    let (_, root) = env.admin_token("root", "root@example.com", &perms);
    let g = env.gateway().await;
    let body = serde_json::json!({"name": HOSTILE, "description": HOSTILE, "type": "read-only", "lifespan": null});
    let r = request(
        "POST",
        &g.mgmt("/admin/api-tokens"),
        Some(&root),
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let id = r.json()["data"]["id"].as_i64().unwrap().to_string();
    for args in [
        &["token", "list"][..],
        &["token", "list", "--json"],
        &["token", "show", &id],
        &["token", "show", &id, "--json"],
        &["audit", "list"],
        &["audit", "list", "--json"],
    ] {
        let out = env.cli(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert_inert(&args.join(" "), &out.stdout);
        assert_inert(&args.join(" "), &out.stderr);
    }
    // Text shows the name escaped; JSON keeps it exact.
    let text = env.ok(&["token", "show", &id]);
    assert!(
        text.contains(r"ok\x1b]0;pwned\x07\r\x1b[2Kfake\x7f\u{9b}31m"),
        "{text}"
    );
    let json = env.json(&["token", "show", &id]);
    assert_eq!(json["name"], HOSTILE);
    // An error line that quotes a name is escaped too.
    let out = env.cli(&["role", "create", HOSTILE]);
    let out2 = env.cli(&["role", "create", HOSTILE]);
    assert!(!out2.status.success());
    assert_inert("role create (twice)", &out.stdout);
    assert_inert("role create (twice)", &out2.stderr);
    assert_inert("role list", &env.cli(&["role", "list"]).stdout);
}
