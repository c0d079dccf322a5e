//! A real Strapi 5 database per test, for the `strapi5` layout.
//!
//! Every [`StrapiDb`] is a fresh DATABASE (Strapi's schema dump qualifies
//! every name with `public.`, so a database of its own is simpler and truer
//! than a rewritten schema) holding the schema of a real Strapi 5.54
//! (`tests/fixtures/strapi5-schema.sql`, a `pg_dump --schema-only`). It is
//! dropped when the test ends, pass or fail. Its sessions default to a time
//! zone far from UTC (+14), so a Strapi timestamp read without `AT TIME ZONE
//! 'UTC'` shows up as a wrong expiry.
//!
//! Like a Strapi that has booted once, it holds the core-store row
//! `strapi_content_types_schema` with the project's one collection type
//! (`api::article.article`, as in `strapi5-routes.txt`) and the plugin and
//! admin types (`tests/fixtures/strapi5-content-types.json`: the shape
//! Strapi 5 stores, attributes trimmed). The config written by
//! [`StrapiEnv`] has no `[[content_types]]`: the types come from there.
//!
//! Rows are inserted the way Strapi 5 stores them (document ids, UTC
//! timestamps without time zone, link tables with their `_ord` columns,
//! admin tokens with `type = 'read-only'`), and access keys are hashed by
//! Python's `hmac`, independently of authgate.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};

use super::{database_url, load_config, run_cli, run_cli_ok, start_echo, stderr, unique, Gateway};

/// The salt of the Strapi instance these rows pretend to come from.
pub const STRAPI_SALT: &str = "oracle-api-token-salt";
/// Its `ENCRYPTION_KEY`.
pub const STRAPI_ENCRYPTION_KEY: &str = "strapi-test-encryption-key";

const SCHEMA_DUMP: &str = include_str!("../fixtures/strapi5-schema.sql");
/// The value of the core-store row `strapi_content_types_schema`.
pub const CONTENT_TYPES: &str = include_str!("../fixtures/strapi5-content-types.json");

/// `database_url()` with another database name.
pub fn url_for_database(name: &str) -> String {
    let base = database_url();
    let scheme_end = base
        .find("://")
        .map(|i| i + 3)
        .expect("AUTHGATE_TEST_DATABASE_URL must be a postgres:// URL for the strapi5 tests");
    let (head, query) = match base.find('?') {
        Some(q) => (&base[..q], &base[q..]),
        None => (&base[..], ""),
    };
    let authority_end = head[scheme_end..]
        .find('/')
        .map_or(head.len(), |i| scheme_end + i);
    format!("{}/{name}{query}", &head[..authority_end])
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    tokio::spawn(conn);
    client
}

/// 128 random bytes as lower-case hex: the shape of a Strapi key.
pub fn new_key() -> String {
    let mut b = [0u8; 128];
    getrandom::fill(&mut b).expect("random");
    hex::encode(b)
}

/// HMAC-SHA512(salt, key) as lower-case hex, computed by Python.
pub fn python_hmac(salt: &str, key: &str) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import hmac, hashlib, sys; print(hmac.new(sys.argv[1].encode(), sys.argv[2].encode(), hashlib.sha512).hexdigest())",
            salt,
            key,
        ])
        .output()
        .expect("python3 is needed for the strapi5 tests");
    assert!(out.status.success(), "python3: {}", stderr(&out));
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_owned()
}

fn document_id() -> String {
    // Strapi 5 document ids: 24 lower-case alphanumerics.
    let mut b = [0u8; 12];
    getrandom::fill(&mut b).expect("random");
    hex::encode(b)
}

/// What kind of token row to insert.
#[derive(Debug, Clone)]
pub struct TokenSpec<'a> {
    pub name: &'a str,
    /// `Some("content-api")`, `Some("admin")`, or `None` (rows from before
    /// admin tokens existed).
    pub kind: Option<&'a str>,
    /// Strapi stores `read-only` for admin tokens too.
    pub token_type: Option<&'a str>,
    /// SQL for `expires_at` (UTC wall time), e.g.
    /// `(now() AT TIME ZONE 'UTC') + interval '7 days'`; `None` = unlimited.
    pub expires_at: Option<&'a str>,
    /// Custom content-API actions.
    pub actions: &'a [&'a str],
    /// Admin token permissions (action, subject).
    pub admin_permissions: &'a [(&'a str, Option<&'a str>)],
    pub owner: Option<i32>,
}

impl<'a> TokenSpec<'a> {
    pub fn content(name: &'a str, token_type: &'a str) -> Self {
        Self {
            name,
            kind: Some("content-api"),
            token_type: Some(token_type),
            expires_at: None,
            actions: &[],
            admin_permissions: &[],
            owner: None,
        }
    }

    pub fn admin(name: &'a str, owner: Option<i32>) -> Self {
        Self {
            name,
            kind: Some("admin"),
            token_type: Some("read-only"),
            expires_at: None,
            actions: &[],
            admin_permissions: &[],
            owner,
        }
    }
}

/// A fresh database with Strapi 5's schema, dropped on drop.
pub struct StrapiDb {
    pub name: String,
    /// The schema holding Strapi's tables.
    pub schema: String,
    /// Cluster-wide roles a test created, dropped after the database.
    roles: std::sync::Mutex<Vec<String>>,
}

impl StrapiDb {
    /// Strapi's tables in `public`, as Strapi makes them.
    pub async fn create() -> StrapiDb {
        Self::create_in("public").await
    }

    /// Strapi's tables in `schema` (Strapi's `DATABASE_SCHEMA`).
    pub async fn create_in(schema: &str) -> StrapiDb {
        let name = unique("strapi5");
        let admin = connect(&database_url()).await;
        // One statement per call: CREATE DATABASE refuses a transaction block.
        for statement in [
            format!("CREATE DATABASE {name}"),
            format!("ALTER DATABASE {name} SET timezone TO 'Pacific/Kiritimati'"),
        ] {
            admin.batch_execute(&statement).await.expect(&statement);
        }
        let db = StrapiDb {
            name,
            schema: schema.to_owned(),
            roles: std::sync::Mutex::new(Vec::new()),
        };
        // psql meta-commands (\restrict) are not SQL.
        let mut dump: String = SCHEMA_DUMP
            .lines()
            .filter(|l| !l.starts_with('\\'))
            .collect::<Vec<_>>()
            .join("\n");
        if schema != "public" {
            dump = format!(
                "CREATE SCHEMA {schema};\n{}",
                dump.replace("public.", &format!("{schema}."))
            );
        }
        connect(&db.url())
            .await
            .batch_execute(&dump)
            .await
            .expect("load the Strapi 5 schema dump");
        db.set_content_types(CONTENT_TYPES).await;
        db
    }

    /// Write the core-store row of the content types as Strapi does at boot
    /// (an UPDATE of the existing row, else an INSERT).
    pub async fn set_content_types(&self, json: &str) {
        let c = self.client().await;
        let updated = c
            .execute(
                "UPDATE strapi_core_store_settings SET value = $1 WHERE key = 'strapi_content_types_schema'",
                &[&json],
            )
            .await
            .expect("update core store");
        if updated == 0 {
            c.execute(
                "INSERT INTO strapi_core_store_settings (key, value, type, environment, tag)
                 VALUES ('strapi_content_types_schema', $1, 'object', NULL, NULL)",
                &[&json],
            )
            .await
            .expect("insert core store");
        }
    }

    pub fn url(&self) -> String {
        url_for_database(&self.name)
    }

    /// A client whose search_path is Strapi's schema.
    pub async fn client(&self) -> tokio_postgres::Client {
        let c = connect(&self.url()).await;
        c.batch_execute(&format!("SET search_path = {}", self.schema))
            .await
            .expect("search_path");
        c
    }

    pub async fn exec(&self, statements: &str) {
        self.client()
            .await
            .batch_execute(statements)
            .await
            .unwrap_or_else(|e| panic!("{statements}: {e}"));
    }

    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Vec<tokio_postgres::Row> {
        self.client()
            .await
            .query(sql, params)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The first column of the first row.
    pub async fn one<T>(&self, sql: &str) -> T
    where
        T: for<'r> tokio_postgres::types::FromSql<'r>,
    {
        self.query(sql, &[]).await[0].get(0)
    }

    /// A role created for this test (dropped with the database).
    pub async fn new_db_role(&self, prefix: &str) -> String {
        let name = unique(prefix);
        connect(&database_url())
            .await
            .batch_execute(&format!("CREATE ROLE {name} NOLOGIN"))
            .await
            .expect("create role");
        self.roles.lock().expect("roles").push(name.clone());
        name
    }

    // ----- rows as Strapi writes them ------------------------------------

    /// An admin user (`admin::user`).
    pub async fn admin_user(&self, email: &str) -> i32 {
        self.query(
            "INSERT INTO admin_users (document_id, firstname, lastname, email, password,
                                      is_active, blocked, prefered_language,
                                      created_at, updated_at, published_at)
             VALUES ($1, 'Test', 'User', $2, '$2a$10$7dOWl1bYJzGk1nkuEHBLxuKuqC1fy1Ah6gOQW0m8Jb0GzZcGtiMEa',
                     true, false, NULL,
                     now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC')
             RETURNING id",
            &[&document_id(), &email],
        )
        .await[0]
            .get(0)
    }

    /// A role (`admin::role`); Strapi's super admin has code `strapi-super-admin`.
    pub async fn role(&self, name: &str, code: &str) -> i32 {
        self.query(
            "INSERT INTO admin_roles (document_id, name, code, description, created_at, updated_at, published_at)
             VALUES ($1, $2, $3, '', now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC')
             RETURNING id",
            &[&document_id(), &name, &code],
        )
        .await[0]
            .get(0)
    }

    pub async fn add_user_to_role(&self, user: i32, role: i32) {
        self.query(
            "INSERT INTO admin_users_roles_lnk (user_id, role_id, role_ord, user_ord)
             VALUES ($1, $2,
                     (SELECT count(*) + 1 FROM admin_users_roles_lnk WHERE user_id = $1),
                     (SELECT count(*) + 1 FROM admin_users_roles_lnk WHERE role_id = $2))",
            &[&user, &role],
        )
        .await;
    }

    /// An `admin::permission` row (with Strapi's properties and
    /// conditions); returns its id.
    pub async fn admin_permission(
        &self,
        action: &str,
        subject: Option<&str>,
        properties: &str,
        conditions: &str,
    ) -> i32 {
        self.query(
            "INSERT INTO admin_permissions (document_id, action, action_parameters, subject, properties,
                                            conditions, created_at, updated_at, published_at)
             VALUES ($1, $2, '{}'::jsonb, $3, $4::text::jsonb, $5::text::jsonb,
                     now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC')
             RETURNING id",
            &[&document_id(), &action, &subject, &properties, &conditions],
        )
        .await[0]
            .get(0)
    }

    /// Grant a role a permission, as a new permission row linked to the
    /// role (Strapi's shape); returns the permission id.
    pub async fn grant(&self, role: i32, action: &str, subject: Option<&str>) -> i32 {
        let id = self.admin_permission(action, subject, "{}", "[]").await;
        self.query(
            "INSERT INTO admin_permissions_role_lnk (permission_id, role_id, permission_ord)
             VALUES ($1, $2, (SELECT count(*) + 1 FROM admin_permissions_role_lnk WHERE role_id = $2))",
            &[&id, &role],
        )
        .await;
        id
    }

    /// Insert a token; returns (id, key). The access key is hashed by
    /// Python with [`STRAPI_SALT`].
    pub async fn token(&self, t: &TokenSpec<'_>) -> (i32, String) {
        let key = new_key();
        let id = self.token_with_key(t, &key).await;
        (id, key)
    }

    /// Insert a token with a given key; returns its id.
    pub async fn token_with_key(&self, t: &TokenSpec<'_>, key: &str) -> i32 {
        let access_key = python_hmac(STRAPI_SALT, key);
        let encrypted = authgate::token::KeyCipher::new(STRAPI_ENCRYPTION_KEY)
            .encrypt(key)
            .expect("encrypt");
        let lifespan: Option<i64> = t.expires_at.map(|_| 604_800_000);
        let expires = t.expires_at.unwrap_or("NULL");
        let id: i32 = self
            .query(
                &format!(
                    "INSERT INTO strapi_api_tokens (document_id, name, description, kind, type, access_key,
                                                    encrypted_key, last_used_at, expires_at, lifespan,
                                                    created_at, updated_at, published_at)
                     VALUES ($1, $2, '', $3, $4, $5, $6, NULL, {expires}, $7,
                             now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC')
                     RETURNING id"
                ),
                &[
                    &document_id(),
                    &t.name,
                    &t.kind,
                    &t.token_type,
                    &access_key,
                    &encrypted,
                    &lifespan,
                ],
            )
            .await[0]
            .get(0);
        for (i, action) in t.actions.iter().enumerate() {
            let ord = i as f64 + 1.0;
            self.query(
                "WITH p AS (
                     INSERT INTO strapi_api_token_permissions (document_id, action, created_at, updated_at, published_at)
                     VALUES ($1, $2, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC')
                     RETURNING id)
                 INSERT INTO strapi_api_token_permissions_token_lnk (api_token_permission_id, api_token_id, api_token_permission_ord)
                 SELECT p.id, $3, $4 FROM p",
                &[&document_id(), action, &id, &ord],
            )
            .await;
        }
        for (i, (action, subject)) in t.admin_permissions.iter().enumerate() {
            let perm = self.admin_permission(action, *subject, "{}", "[]").await;
            let ord = i as f64 + 1.0;
            self.query(
                "INSERT INTO admin_permissions_api_token_lnk (permission_id, api_token_id, permission_ord)
                 VALUES ($1, $2, $3)",
                &[&perm, &id, &ord],
            )
            .await;
        }
        if let Some(owner) = t.owner {
            self.query(
                "INSERT INTO strapi_api_tokens_admin_user_owner_lnk (api_token_id, user_id, api_token_ord)
                 VALUES ($1, $2, 1)",
                &[&id, &owner],
            )
            .await;
        }
        id
    }
}

impl Drop for StrapiDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let roles = std::mem::take(&mut *self.roles.lock().unwrap_or_else(|p| p.into_inner()));
        // Drop cannot await, and the test's runtime may be shutting down.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&database_url(), tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                    for r in roles {
                        let _ = client
                            .batch_execute(&format!("DROP ROLE IF EXISTS {r}"))
                            .await;
                    }
                }
            });
        })
        .join();
    }
}

/// A Strapi database, an echo upstream standing in for Strapi's HTTP
/// server, and an authgate config in the strapi5 layout.
pub struct StrapiEnv {
    pub db: StrapiDb,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub upstream: SocketAddr,
    extra: String,
}

impl StrapiEnv {
    /// Strapi's tables as Strapi leaves them: no authgate triggers.
    pub async fn new(extra: &str) -> StrapiEnv {
        Self::in_db(StrapiDb::create().await, extra).await
    }

    /// With `authgate migrate` run: changes in Strapi apply at once.
    pub async fn with_triggers(extra: &str) -> StrapiEnv {
        let env = Self::new(extra).await;
        env.ok(&["migrate"]);
        env
    }

    pub async fn in_db(db: StrapiDb, extra: &str) -> StrapiEnv {
        let dir = std::env::temp_dir().join(unique("authgate-strapi5"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let env = StrapiEnv {
            config_path: dir.join("config.toml"),
            dir,
            upstream: start_echo().await,
            db,
            extra: extra.to_owned(),
        };
        env.write_config("");
        env
    }

    /// (Re)write the config file with `more` appended.
    pub fn write_config(&self, more: &str) {
        let text = format!(
            r#"
[server]
listen = "127.0.0.1:0"
request_header_timeout = "5s"
shutdown_grace = "5s"

[upstream]
url = "http://{upstream}"
connect_timeout = "1s"
request_timeout = "5s"

[postgres]
url = "{db}"
layout = "strapi5"
schema = "{schema}"
pool_size = 4

[tokens]
salt = "{STRAPI_SALT}"
encryption_key = "{STRAPI_ENCRYPTION_KEY}"
last_used_interval = "1s"

[metrics]
listen = "127.0.0.1:0"

[management]
listen = "127.0.0.1:0"

{extra}
{more}
"#,
            upstream = self.upstream,
            db = self.db.url(),
            schema = self.db.schema,
            extra = self.extra,
        );
        std::fs::write(&self.config_path, text).expect("write config");
    }

    pub fn config(&self) -> authgate::config::Config {
        load_config(&self.config_path)
    }

    /// Run the real binary with this env's config.
    pub fn cli(&self, args: &[&str]) -> Output {
        run_cli(&self.config_path, args)
    }

    /// Run the CLI, assert success, return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        run_cli_ok(&self.config_path, args)
    }

    /// Start the gateway in this process.
    pub async fn gateway(&self) -> Gateway {
        Gateway::start(self.config()).await
    }

    /// Start the gateway with a config changed in code.
    pub async fn gateway_with(&self, cfg: authgate::config::Config) -> Gateway {
        Gateway::start(cfg).await
    }
}

impl Drop for StrapiEnv {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
