//! Test harness: a real Postgres schema per test, a real echo upstream, the
//! real gateway on an ephemeral port, and the real `authgate` binary for the
//! CLI. Each test reads as the scenario it checks.
//!
//! Postgres: `AUTHGATE_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). Every test gets its own
//! schema, dropped when the test ends (pass or fail).

#![allow(dead_code)]
// Set-up code: a failure here is the test failing, so it may unwrap.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// The python of a test's venv: runs its `venv.sh` (which makes the venv
/// on first use, `tests/support/pyvenv.sh`); a failure fails the test.
pub fn venv_python(venv_sh: &Path) -> PathBuf {
    let out = Command::new("bash")
        .arg(venv_sh)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", venv_sh.display()));
    assert!(out.status.success(), "{} failed", venv_sh.display());
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

#[path = "../../examples/echo_upstream.rs"]
mod echo_upstream;

/// A real Strapi 5 database per test (the `strapi5` layout).
pub mod strapi5;

/// A Postgres proxy that cuts one replica's LISTEN connection.
pub mod listen_cut;
/// An OTLP/HTTP receiver (Python's `opentelemetry-proto`) for the traces.
pub mod otlp;
/// A primary with a streaming standby, and PgBouncer, started by the test.
pub mod pg;
/// Redis over TLS, as a cluster, behind sentinels.
pub mod redis_servers;

pub const SALT: &str = "integration-test-salt";

pub fn database_url() -> String {
    std::env::var("AUTHGATE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique(prefix: &str) -> String {
    let mut r = [0u8; 4];
    getrandom::fill(&mut r).expect("random");
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst),
        hex::encode(r)
    )
}

/// A connection to the test database with `schema` as its search path.
pub async fn connect_in(schema: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
        .await
        .expect("test database reachable");
    tokio::spawn(conn);
    client
        .batch_execute(&format!("SET search_path = {schema}"))
        .await
        .expect("search_path");
    client
}

/// Run SQL on the test database (outside any schema).
pub async fn sql(schema: &str, query: &str) -> Vec<tokio_postgres::Row> {
    let client = connect_in(schema).await;
    client
        .query(query, &[])
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"))
}

/// Run SQL statements (no results) on the test database.
pub async fn exec(schema: &str, statements: &str) {
    exec_on(&database_url(), schema, statements).await
}

/// Run SQL statements (no results) on the database at `db`.
pub async fn exec_on(db: &str, schema: &str, statements: &str) {
    let (client, conn) = tokio_postgres::connect(db, tokio_postgres::NoTls)
        .await
        .expect("test database reachable");
    tokio::spawn(conn);
    client
        .batch_execute(&format!("SET search_path = {schema}; {statements}"))
        .await
        .unwrap_or_else(|e| panic!("{statements}: {e}"));
}

/// A per-test environment: schema, config file, temp dir.
pub struct Env {
    pub schema: String,
    /// The database URL the config names (`postgres.url`).
    pub db: String,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub upstream: SocketAddr,
    /// More keys of `[postgres]`.
    pg_keys: String,
    extra: String,
}

impl Env {
    /// A fresh migrated schema, an echo upstream, and a config file.
    pub async fn new() -> Env {
        Self::with_config("").await
    }

    /// Like [`Env::new`], with extra TOML appended to the config (sections
    /// the base config does not set).
    pub async fn with_config(extra: &str) -> Env {
        Self::on(&database_url(), "", extra).await
    }

    /// Like [`Env::with_config`], on the database at `db` (`postgres.url`),
    /// with more `[postgres]` keys (`pg_keys`, TOML lines).
    pub async fn on(db: &str, pg_keys: &str, extra: &str) -> Env {
        let schema = unique("t");
        let dir = std::env::temp_dir().join(unique("authgate-test"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let upstream = start_echo().await;
        let env = Env {
            config_path: dir.join("config.toml"),
            schema,
            db: db.to_owned(),
            dir,
            upstream,
            pg_keys: pg_keys.to_owned(),
            extra: extra.to_owned(),
        };
        env.write_config("");
        let out = env.cli(&["migrate"]);
        assert!(out.status.success(), "migrate failed: {}", stderr(&out));
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
schema = "{schema}"
pool_size = 4
{pg_keys}

[tokens]
salt = "{SALT}"
last_used_interval = "1s"
stats_interval = "1s"

[metrics]
listen = "127.0.0.1:0"
{management}
[[content_types]]
uid = "api::article.article"
plural = "articles"

[[content_types]]
uid = "api::homepage.homepage"
kind = "single"

{extra}
{more}
"#,
            upstream = self.upstream,
            db = self.db,
            schema = self.schema,
            pg_keys = self.pg_keys,
            extra = self.extra,
            // An ephemeral port, unless the test configures its own.
            management = if self.extra.contains("[management]") || more.contains("[management]") {
                ""
            } else {
                "\n[management]\nlisten = \"127.0.0.1:0\"\n"
            },
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

    /// `user create --email EMAIL --role ROLE`: an owner for admin tokens.
    pub fn user(&self, email: &str, role: &str) {
        self.ok(&["user", "create", "--email", email, "--role", role]);
    }

    /// [`Env::user`] with `super-admin` (an owner that may do everything).
    pub fn super_admin(&self, email: &str) {
        self.user(email, "super-admin");
    }

    /// Run the CLI with `input` on its standard input.
    pub fn cli_stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = cli_command(&self.config_path, args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run authgate");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("authgate output")
    }

    /// Run the CLI with `--json`, parse the single JSON line.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.ok(&a);
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{out}: {e}"))
    }

    /// Create a content-API token; returns (id, key).
    pub fn content_token(&self, name: &str, ty: &str, perms: &[&str]) -> (i64, String) {
        let options: Vec<&str> = perms.iter().flat_map(|p| ["--permission", p]).collect();
        self.content_token_with(name, ty, &options)
    }

    /// Create a content-API token with more `token create` options
    /// (`--duration 7d`, `--allow-cidr 10.0.0.0/8`); returns (id, key).
    pub fn content_token_with(&self, name: &str, ty: &str, options: &[&str]) -> (i64, String) {
        let mut args = vec![
            "token",
            "create",
            "--kind",
            "content-api",
            "--name",
            name,
            "--type",
            ty,
        ];
        args.extend(options);
        let v = self.json(&args);
        (
            v["id"].as_i64().expect("id"),
            v["key"].as_str().expect("key").to_owned(),
        )
    }

    /// Create an admin token for `owner`; returns (id, key).
    pub fn admin_token(&self, name: &str, owner: &str, perms: &[&str]) -> (i64, String) {
        let mut args = vec![
            "token", "create", "--kind", "admin", "--name", name, "--owner", owner,
        ];
        for p in perms {
            args.extend(["--permission", p]);
        }
        let v = self.json(&args);
        (
            v["id"].as_i64().expect("id"),
            v["key"].as_str().expect("key").to_owned(),
        )
    }

    /// A super admin `email` and an admin token of theirs holding every
    /// token-management permission; returns its key.
    pub fn token_manager(&self, email: &str) -> String {
        self.ok(&["user", "create", "--email", email, "--role", "super-admin"]);
        let perms = management_perms();
        let refs: Vec<&str> = perms.iter().map(String::as_str).collect();
        self.admin_token("manager", email, &refs).1
    }

    /// Start the gateway in this process.
    pub async fn gateway(&self) -> Gateway {
        Gateway::start(self.config()).await
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let (schema, db) = (self.schema.clone(), self.db.clone());
        let _ = std::fs::remove_dir_all(&self.dir);
        // Drop the schema on a thread of its own: Drop cannot await, and the
        // test's runtime may be shutting down.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&db, tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .await;
                }
            });
        })
        .join();
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Start an echo upstream on an ephemeral port.
/// A raw upstream on a free port: each connection it accepts is handed to
/// `serve`. Returns its address and the count of connections accepted.
pub async fn raw_upstream<F, Fut>(serve: F) -> (SocketAddr, std::sync::Arc<AtomicUsize>)
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(s));
        }
    });
    (addr, accepted)
}

/// The `Content-Length` a raw message head states (0 when it states none).
pub fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0)
}

pub async fn start_echo() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind echo");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(echo_upstream::serve(l));
    addr
}

/// A running in-process gateway.
pub struct Gateway {
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    /// The management listener (API and web page), when it is on.
    pub management: Option<SocketAddr>,
    /// The decision listener (front proxies' doors), when it is on.
    pub decision: Option<SocketAddr>,
    pub listener: authgate::invalidation::ListenerStatus,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Gateway {
    /// Start, and wait until the invalidation listener is trusted.
    pub async fn start(cfg: authgate::config::Config) -> Gateway {
        let g = Self::start_unready(cfg).await;
        g.wait_listening().await;
        g
    }

    /// Start without waiting for the invalidation listener.
    pub async fn start_unready(cfg: authgate::config::Config) -> Gateway {
        let server = authgate::server::Server::bind(cfg)
            .await
            .expect("bind gateway");
        let addr = server.local_addr();
        let metrics = server.metrics_addr().expect("metrics listener");
        let management = server.management_addr();
        let decision = server.decision_addr();
        let listener = server.listener_status();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = rx.await;
                })
                .await
                .expect("gateway run");
        });
        Gateway {
            addr,
            metrics,
            management,
            decision,
            listener,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Wait until the invalidation listener is connected, so revocations
    /// made from now on reach this gateway.
    pub async fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.listener.is_listening() {
            assert!(
                Instant::now() < deadline,
                "invalidation listener did not connect"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A URL on the management listener.
    pub fn mgmt(&self, path: &str) -> String {
        format!(
            "http://{}{path}",
            self.management.expect("management listener is on")
        )
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The headers the echo upstream received (lower-case name -> values).
    pub fn upstream_headers(&self) -> HashMap<String, Vec<String>> {
        let v = self.json();
        let mut out = HashMap::new();
        for (k, vals) in v["headers"].as_object().expect("echo body") {
            out.insert(
                k.clone(),
                vals.as_array()
                    .expect("values")
                    .iter()
                    .map(|x| x.as_str().unwrap_or("").to_owned())
                    .collect(),
            );
        }
        out
    }

    pub fn upstream_header(&self, name: &str) -> Option<String> {
        self.upstream_headers().get(name).map(|v| v.join(","))
    }
}

/// Send a request with optional bearer token and extra headers.
pub async fn request(
    method: &str,
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut b = http::Request::builder().method(method).uri(url);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b
        .body(Full::new(Bytes::copy_from_slice(body)))
        .expect("request");
    let resp = client.request(req).await.expect("response");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Resp {
        status,
        headers,
        body,
    }
}

pub async fn get(url: &str, token: Option<&str>) -> Resp {
    request("GET", url, token, &[], b"").await
}

/// The Strapi envelope a denial must carry.
pub fn envelope(status: u16, name: &str, message: &str) -> Value {
    serde_json::json!({"data": null, "error": {"status": status, "name": name, "message": message, "details": {}}})
}

/// Every token-management permission.
pub fn management_perms() -> Vec<String> {
    let mut v = Vec::new();
    for area in ["api-tokens", "admin-tokens"] {
        for op in ["read", "create", "update", "delete", "regenerate"] {
            v.push(format!("admin::{area}.{op}"));
        }
    }
    v
}

/// The value of the series `series` (name and labels, as rendered) in a
/// Prometheus text page; 0 when absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Token lookups that reached the store, in a metrics page.
pub fn store_queries(text: &str) -> f64 {
    metric(
        text,
        "authgate_store_query_duration_seconds_count{op=\"find_token\"}",
    )
}

impl Gateway {
    /// POST a JSON body to the management API with an admin key.
    pub async fn mgmt_post(&self, path: &str, key: &str, body: &str) -> Resp {
        request(
            "POST",
            &self.mgmt(path),
            Some(key),
            &[("content-type", "application/json")],
            body.as_bytes(),
        )
        .await
    }

    /// `key` is accepted on `path` and forwarded as token `id`.
    pub async fn accepts_as(&self, path: &str, key: &str, id: i64) {
        let r = get(&self.url(path), Some(key)).await;
        assert_eq!(r.status, 200, "{key}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(
            r.upstream_header("x-auth-token-id"),
            Some(id.to_string()),
            "{key}: forwarded as token {id}"
        );
    }

    /// This gateway's `/metrics` page.
    pub async fn metrics_text(&self) -> String {
        let r = get(&format!("http://{}/metrics", self.metrics), None).await;
        String::from_utf8_lossy(&r.body).into_owned()
    }
}

/// Poll `f` until it returns true, or fail after `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn path_exists(p: &Path) -> bool {
    p.exists()
}

/// What a [`CutProxy`] does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    Pass,
    /// Close every connection at once (the server is gone).
    Refuse,
    /// Accept and never answer (the network is gone).
    Blackhole,
}

/// A TCP proxy the test controls, to cut a dependency mid-test.
pub struct CutProxy {
    pub addr: SocketAddr,
    mode: std::sync::Arc<std::sync::Mutex<ProxyMode>>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    task: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    pub async fn start(target: SocketAddr) -> CutProxy {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = l.local_addr().expect("addr");
        let mode = std::sync::Arc::new(std::sync::Mutex::new(ProxyMode::Pass));
        let conns =
            std::sync::Arc::new(std::sync::Mutex::new(Vec::<tokio::task::AbortHandle>::new()));
        let (m, c) = (mode.clone(), conns.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = l.accept().await else {
                    continue;
                };
                let current = *m.lock().unwrap();
                match current {
                    ProxyMode::Refuse => drop(client),
                    ProxyMode::Blackhole => {
                        let h = tokio::spawn(async move {
                            let _keep = client;
                            std::future::pending::<()>().await;
                        });
                        c.lock().unwrap().push(h.abort_handle());
                    }
                    ProxyMode::Pass => {
                        let h = tokio::spawn(async move {
                            if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                                let _ =
                                    tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            }
                        });
                        c.lock().unwrap().push(h.abort_handle());
                    }
                }
            }
        });
        CutProxy {
            addr,
            mode,
            conns,
            task,
        }
    }

    /// Switch mode; leaving `Pass` kills every open connection.
    pub fn set(&self, mode: ProxyMode) {
        *self.mode.lock().unwrap() = mode;
        if mode != ProxyMode::Pass {
            for h in self.conns.lock().unwrap().drain(..) {
                h.abort();
            }
        }
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }
}

/// A real `authgate serve` process.
pub struct Replica {
    pub addr: SocketAddr,
    child: std::process::Child,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// The real binary, with none of the caller's `AUTHGATE_*` variables (the
/// binary reads those as config: the test knobs such as
/// `AUTHGATE_TEST_DATABASE_URL` would be refused as unknown sections).
pub fn authgate_command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_authgate"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AUTHGATE_") {
            c.env_remove(k);
        }
    }
    c
}

impl Replica {
    /// Start `authgate serve` with `config`; wait until it serves and listens
    /// for invalidations.
    pub fn start(config: &Path, env: &[(&str, &str)]) -> Replica {
        use std::io::BufRead;
        let mut cmd = authgate_command();
        cmd.arg("--config")
            .arg(config)
            .arg("serve")
            .env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn authgate serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                log2.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let (mut addr, mut listening) = (None, false);
        while addr.is_none() || !listening {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("replica did not start: {:?}", log.lock().unwrap()));
            // Text (`listen=ADDR`) or JSON (`"listen":"ADDR"`) logs.
            if let Some(rest) = line.split("listen=").nth(1) {
                addr = rest.split_whitespace().next().and_then(|a| a.parse().ok());
            } else if let Some(rest) = line.split("\"listen\":\"").nth(1) {
                addr = rest.split('"').next().and_then(|a| a.parse().ok());
            }
            if line.contains("listening for cache invalidations") {
                listening = true;
            }
        }
        Replica {
            addr: addr.expect("listen address"),
            child,
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait for exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().ok().and_then(|s| s.code())
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A private redis-server on an ephemeral port, killed on drop.
pub struct TestRedis {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl TestRedis {
    pub fn start() -> TestRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        TestRedis {
            port,
            child: Some(child),
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A test's config file, loaded as `serve` loads it (without the process's
/// environment overrides).
pub fn load_config(path: &Path) -> authgate::config::Config {
    authgate::config::load_raw_with_env(path, Vec::new())
        .and_then(|r| r.compile())
        .expect("test config is valid")
}

/// The real binary with a config file, ignoring the caller's secrets.
fn cli_command(config: &Path, args: &[&str]) -> Command {
    let mut c = authgate_command();
    c.arg("--config")
        .arg(config)
        .args(args)
        .env_remove("API_TOKEN_SALT")
        .env_remove("ENCRYPTION_KEY");
    c
}

/// Run the real binary with a config file, ignoring the caller's secrets.
pub fn run_cli(config: &Path, args: &[&str]) -> Output {
    cli_command(config, args).output().expect("run authgate")
}

/// Run the CLI, assert success, return stdout.
pub fn run_cli_ok(config: &Path, args: &[&str]) -> String {
    let out = run_cli(config, args);
    assert!(
        out.status.success(),
        "authgate {args:?} failed ({:?}): {}",
        out.status.code(),
        stderr(&out)
    );
    String::from_utf8(out.stdout).expect("utf8 stdout")
}
