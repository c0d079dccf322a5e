//! Differential test: the readings corpus (tests/attacks/readings.jsonl)
//! through the real gateway to real programs behind it, each reporting
//! which route it matched, the method it routed by and the headers that
//! arrived:
//!
//! * Koa + @koa/router at the versions Strapi 5.54 runs (`koa_app.js`),
//! * Express 4 + method-override (`express_app.js`),
//! * nginx with its default path handling (`nginx.conf`).
//!
//! Per request, on what the program reports (whatever the gateway
//! answered), three properties:
//!
//! 1. a request carrying a content-API key is not matched by an admin route,
//!    nor one carrying an admin key by a content-API route;
//! 2. no method the gateway refuses arrives: lowercase letters and CONNECT
//!    never; a method the program routes by, when it is not the one sent
//!    (an override), must be one the gateway allows for that key on that
//!    path; an unknown method arrives only where every standard method would
//!    be allowed (it is judged as the most demanding);
//! 3. no route-, method- or client-overriding header arrives (the test
//!    gateway trusts no proxy), forwarding headers are the gateway's own,
//!    and `x-auth-*` headers are only the gateway's identity of the key
//!    carried.
//!
//! "Allowed" is asked of the gateway itself: the same key, method and path,
//! sent plainly, reaches the program. Node packages come from
//! tests/differential/package-lock.json (`npm ci`, which scripts/test.sh
//! runs); without node, nginx or the packages the test fails, never skips.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/differential");
const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/attacks/readings.jsonl");

/// Headers that re-route a request, override its method or re-identify the
/// client for some upstream; the gateway removes them (no trusted proxies
/// here).
const OVERRIDING: &[&str] = &[
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "x-forwarded-prefix",
    "x-forwarded-port",
    "x-forwarded-server",
    "x-forwarded-ssl",
    "x-forwarded-uri",
    "x-cluster-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
];
/// The identity the gateway adds (no signing key in this test).
const IDENTITY: &[&str] = &[
    "x-auth-token-id",
    "x-auth-token-kind",
    "x-auth-token-name",
    "x-auth-token-type",
    "x-auth-owner-id",
    "x-auth-owner-email",
    "x-auth-action",
];
/// What the corpus puts in spoofed client, host and identity headers.
const SPOOF_MARKERS: &[&str] = &["203.0.113.66", "evil.example"];
const STANDARD_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
/// What an unknown method must be allowed as, to be forwarded.
const DEMANDING_METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

// --- The programs -----------------------------------------------------------

/// A real program behind the gateway, killed on drop.
struct Program {
    name: &'static str,
    addr: SocketAddr,
    child: Child,
    dir: Option<PathBuf>,
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn node_program(name: &'static str, script: &str) -> Program {
    assert!(
        Path::new(DIR).join("node_modules/@koa/router").is_dir()
            && Path::new(DIR).join("node_modules/method-override").is_dir(),
        "tests/differential/node_modules is missing: run `npm ci` in tests/differential \
         (scripts/test.sh does)"
    );
    let mut child = Command::new("node")
        .arg(script)
        .arg("0")
        .current_dir(DIR)
        // The app exits when its stdin closes, so it cannot outlive us.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run `node` ({e}): install Node.js 18+ (scripts/test.sh does)")
        });
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("{script} did not print its port"));
    let port: u16 = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{script} printed {line:?}, not a port"));
    Program {
        name,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        child,
        dir: None,
    }
}

fn nginx_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
        .expect("nginx is not installed: install Debian's `nginx` (scripts/test.sh does)")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn nginx_program() -> Program {
    let nginx = nginx_binary();
    let mut r = [0u8; 4];
    getrandom::fill(&mut r).expect("random");
    let dir = std::env::temp_dir().join(format!(
        "authgate-nginx-{}-{}",
        std::process::id(),
        hex::encode(r)
    ));
    std::fs::create_dir_all(&dir).expect("nginx prefix dir");
    let port = free_port();
    let template = std::fs::read_to_string(Path::new(DIR).join("nginx.conf")).expect("nginx.conf");
    let conf = template
        .replace("@DIR@", dir.to_str().expect("utf-8 temp dir"))
        .replace("@PORT@", &port.to_string());
    std::fs::write(dir.join("nginx.conf"), conf).expect("write nginx.conf");
    let child = Command::new(&nginx)
        .arg("-p")
        .arg(&dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {} ({e})", nginx.display()));
    let mut p = Program {
        name: "nginx",
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        child,
        dir: Some(dir.clone()),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(p.addr).is_err() {
        let log = || std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
        if let Ok(Some(status)) = p.child.try_wait() {
            let log = log();
            assert!(
                !log.contains("Address already in use"),
                "nginx: port {port} is busy"
            );
            panic!("nginx exited ({status}): {log}");
        }
        assert!(Instant::now() < deadline, "nginx did not start: {}", log());
        std::thread::sleep(Duration::from_millis(20));
    }
    p.dir = Some(dir);
    p
}

// --- Raw HTTP ---------------------------------------------------------------

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parse a response once it is complete (None: read more).
fn parse_response(buf: &[u8], eof: bool) -> Option<Response> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &buf[end + 4..];
    let find = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let body = if let Some(len) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        if rest.len() < len {
            return None;
        }
        rest[..len].to_vec()
    } else if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        let mut at = 0;
        loop {
            let line_end = rest[at..].windows(2).position(|w| w == b"\r\n")? + at;
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&rest[at..line_end])
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim(),
                16,
            )
            .ok()?;
            at = line_end + 2;
            if size == 0 {
                break;
            }
            body.extend_from_slice(rest.get(at..at + size)?);
            at += size + 2;
        }
        body
    } else if eof || status == 204 || status == 304 {
        rest.to_vec()
    } else {
        return None;
    };
    Some(Response {
        status,
        headers,
        body,
    })
}

/// Send raw bytes, read one response (status 0: none came).
async fn send_raw(addr: SocketAddr, bytes: &[u8]) -> Response {
    let none = Response {
        status: 0,
        headers: Vec::new(),
        body: Vec::new(),
    };
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return none;
    };
    if s.write_all(bytes).await.is_err() {
        return none;
    }
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut chunk = [0u8; 16384];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return parse_response(&buf, true).unwrap_or(none),
            Ok(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                if let Some(r) = parse_response(&buf, false) {
                    return r;
                }
            }
        }
    }
}

/// A corpus request: each character is one byte.
fn latin1(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| u8::try_from(u32::from(c)).expect("corpus requests are Latin-1"))
        .collect()
}

// --- What a program reports ---------------------------------------------------

/// What the program behind the gateway saw.
#[derive(Debug)]
struct Report {
    /// `admin`, `content-api`, `other`, or "" when no route matched.
    class: String,
    route: String,
    /// The method the program routed by (Express: after method-override).
    method: String,
    /// The request-target as it arrived.
    url: String,
    /// lower-case name -> values, as they arrived.
    headers: BTreeMap<String, Vec<String>>,
}

fn report(r: &Response) -> Option<Report> {
    let program = r.header("x-diff-program")?;
    if program == "nginx" {
        let h = |n: &str| r.header(n).unwrap_or("").to_owned();
        let mut headers = BTreeMap::new();
        for (n, v) in &r.headers {
            if let Some(name) = n.strip_prefix("x-diff-h-") {
                headers.insert(name.to_owned(), vec![v.clone()]);
            }
        }
        return Some(Report {
            class: h("x-diff-class"),
            route: h("x-diff-route"),
            method: h("x-diff-method"),
            url: h("x-diff-request-uri"),
            headers,
        });
    }
    let v: Value = serde_json::from_slice(&r.body).ok()?;
    let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
    let headers = v["headers"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, vals)| {
                    let vals = vals
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_owned)
                                .collect()
                        })
                        .unwrap_or_default();
                    (k.clone(), vals)
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Report {
        class: s("class"),
        route: s("route"),
        method: s("method"),
        url: s("url"),
        headers,
    })
}

/// How the exchange ended, for the counts.
fn outcome(r: &Response) -> &'static str {
    if r.header("x-diff-program").is_some() {
        return "reached the program";
    }
    if r.status == 0 {
        return "no answer";
    }
    let envelope = serde_json::from_slice::<Value>(&r.body)
        .ok()
        .filter(|v| v["data"].is_null() && v["error"]["status"].is_u64());
    match (envelope, r.status) {
        (Some(_), 502 | 504) => "gateway could not deliver",
        (Some(_), _) => "refused by the gateway",
        (None, _) => "refused by the gateway's HTTP parser",
    }
}

// --- The keys -------------------------------------------------------------------

struct Key {
    placeholder: &'static str,
    key: String,
    id: i64,
    kind: &'static str,
}

// --- The properties -------------------------------------------------------------

struct Checker<'a> {
    gateway: SocketAddr,
    keys: &'a [Key],
}

impl Checker<'_> {
    /// Does the gateway let `method url` with `key` through to the program?
    async fn allows(&self, method: &str, url: &str, key: Option<&Key>) -> bool {
        let auth = key
            .map(|k| format!("Authorization: Bearer {}\r\n", k.key))
            .unwrap_or_default();
        let raw = format!(
            "{method} {url} HTTP/1.1\r\nHost: cms.example\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        report(&send_raw(self.gateway, raw.as_bytes()).await).is_some()
    }

    /// Every property `seen` breaks, for the request `raw` carrying `key`.
    async fn violations(&self, raw: &str, key: Option<&Key>, seen: &Report) -> Vec<String> {
        let mut out = Vec::new();
        // 1. route class against the kind of key carried.
        match (key.map(|k| k.kind), seen.class.as_str()) {
            (Some("content-api"), "admin") => out.push(format!(
                "a content-API key reached admin route {} as {}",
                seen.route, seen.url
            )),
            (Some("admin"), "content-api") => out.push(format!(
                "an admin key reached content-API route {} as {}",
                seen.route, seen.url
            )),
            _ => {}
        }
        // 2. methods.
        let sent = raw.split(' ').next().unwrap_or("");
        if sent.bytes().any(|b| b.is_ascii_lowercase()) || sent == "CONNECT" {
            out.push(format!(
                "refused method {sent} reached the program (its route: {:?})",
                seen.route
            ));
        } else if seen.method.is_empty() {
            // The program did not get as far as the method: nothing routed.
        } else if seen.method != sent {
            if !self.allows(&seen.method, &seen.url, key).await {
                out.push(format!(
                    "{sent} arrived as {} {}, which the gateway refuses",
                    seen.method, seen.url
                ));
            }
        } else if !STANDARD_METHODS.contains(&sent) && key.is_some() {
            for m in DEMANDING_METHODS {
                if !self.allows(m, &seen.url, key).await {
                    out.push(format!(
                        "unknown method {sent} arrived at {} where {m} is refused",
                        seen.url
                    ));
                    break;
                }
            }
        }
        // 3. headers.
        for (name, values) in &seen.headers {
            let n = name.to_ascii_lowercase().replace('_', "-");
            if OVERRIDING.contains(&n.as_str()) {
                out.push(format!("{name}: {values:?} arrived"));
            }
            if n.starts_with("x-auth-") {
                match key {
                    None => out.push(format!("{name}: {values:?} arrived without a key")),
                    Some(k) => {
                        if !IDENTITY.contains(&name.as_str()) || values.len() != 1 {
                            out.push(format!("{name}: {values:?} is not the gateway's identity"));
                        } else if (n == "x-auth-token-id" && values[0] != k.id.to_string())
                            || (n == "x-auth-token-kind" && values[0] != k.kind)
                        {
                            out.push(format!(
                                "{name}: {values:?} is not the identity of the key carried"
                            ));
                        }
                    }
                }
            }
            let expect: Option<&str> = match n.as_str() {
                "x-forwarded-for" => Some("127.0.0.1"),
                "x-forwarded-proto" => Some("http"),
                "x-forwarded-host" => Some("cms.example"),
                _ => None,
            };
            if let Some(e) = expect {
                if values.len() != 1 || values[0] != e {
                    out.push(format!("{name}: {values:?}, not the gateway's {e:?}"));
                }
            }
            if n == "forwarded" && values.len() != 1 {
                out.push(format!("{name}: {values:?} is not the gateway's one value"));
            }
            for v in values {
                if let Some(m) = SPOOF_MARKERS.iter().find(|m| v.contains(**m)) {
                    out.push(format!("{name}: {v:?} carries the client's {m}"));
                }
            }
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_through_the_gateway_to_real_programs() {
    let mut env = Env::new().await;
    env.super_admin("root@example.com");
    let (full_id, full) = env.content_token("diff-full", "full-access", &[]);
    let (create_id, create) =
        env.content_token("diff-create", "custom", &["api::article.article.create"]);
    // Broad, yet short of update and delete, so an override to them is an
    // escalation.
    let (admin_id, admin) = env.admin_token(
        "diff-admin",
        "root@example.com",
        &[
            "admin::users.read",
            "admin::users.create",
            "plugin::content-manager.explorer.read@api::article.article",
            "plugin::content-manager.explorer.create@api::article.article",
            "plugin::upload.read",
            "plugin::email.settings.read",
            "plugin::users-permissions.roles.read",
            "plugin::content-type-builder.read",
            "plugin::i18n.locale.read",
        ],
    );
    let (noperm_id, noperm) = env.admin_token("diff-noperm", "root@example.com", &[]);
    let keys = [
        Key {
            placeholder: "{FULL}",
            key: full,
            id: full_id,
            kind: "content-api",
        },
        Key {
            placeholder: "{CREATE}",
            key: create,
            id: create_id,
            kind: "content-api",
        },
        Key {
            placeholder: "{ADMIN}",
            key: admin,
            id: admin_id,
            kind: "admin",
        },
        Key {
            placeholder: "{NOPERM}",
            key: noperm,
            id: noperm_id,
            kind: "admin",
        },
    ];

    let corpus: Vec<Value> = std::fs::read_to_string(CORPUS)
        .expect("tests/attacks/readings.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("case is JSON"))
        .collect();
    assert!(
        corpus.len() >= 150,
        "the readings corpus has {} cases",
        corpus.len()
    );

    let programs = [
        node_program("koa", "koa_app.js"),
        node_program("express", "express_app.js"),
        nginx_program(),
    ];
    let mut failures = Vec::new();
    let mut gaps = Vec::new();
    let mut summary = Vec::new();
    for program in &programs {
        env.upstream = program.addr;
        env.write_config("");
        let g = env.gateway().await;
        let checker = Checker {
            gateway: g.addr,
            keys: &keys,
        };
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        let mut by_class: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
        let mut broken = 0;
        for case in &corpus {
            let name = case["name"].as_str().unwrap_or("?");
            let mut raw = case["req"].as_str().expect("req").to_owned();
            for k in checker.keys {
                raw = raw.replace(k.placeholder, &k.key);
            }
            let key = checker.keys.iter().find(|k| raw.contains(&k.key));
            let resp = send_raw(g.addr, &latin1(&raw)).await;
            *counts.entry(outcome(&resp)).or_default() += 1;
            *by_class
                .entry(case["class"].as_str().unwrap_or("?"))
                .or_default()
                .entry(outcome(&resp))
                .or_default() += 1;
            let Some(seen) = report(&resp) else { continue };
            let v = checker.violations(&raw, key, &seen).await;
            if v.is_empty() {
                continue;
            }
            let line = format!(
                "{}: [{}] {name} (gateway answered {}): {}",
                program.name,
                case["class"].as_str().unwrap_or("?"),
                resp.status,
                v.join("; ")
            );
            match case["gap"].as_str() {
                Some(gap) => gaps.push(format!("{line} [known gap: {gap}]")),
                None => {
                    broken += 1;
                    failures.push(line);
                }
            }
        }
        g.stop().await;
        let list = |m: &BTreeMap<&str, usize>| {
            m.iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        summary.push(format!(
            "{}: {} cases: {}; {broken} broke a property",
            program.name,
            corpus.len(),
            list(&counts)
        ));
        for (class, m) in &by_class {
            summary.push(format!("    {class}: {}", list(m)));
        }
    }
    eprintln!("differential readings:\n  {}", summary.join("\n  "));
    if !gaps.is_empty() {
        eprintln!(
            "readings outside the gateway's contract ({}), not failures:\n  {}",
            gaps.len(),
            gaps.join("\n  ")
        );
    }
    assert!(
        failures.is_empty(),
        "{} requests broke a property:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
