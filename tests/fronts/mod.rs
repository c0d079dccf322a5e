//! The front proxies of tests/doors.rs: real nginx (`auth_request`) and
//! real Caddy (`forward_auth`) in front of authgate's decision listener,
//! run from the configs docs/front-doors.md gives (`nginx.conf`,
//! `Caddyfile` beside this file); and the request shapes of the proxies
//! that do not install here, sent exactly as they send them (Envoy's
//! ext_authz `http_service`, Traefik's `forward.go`).

#![allow(dead_code)]
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{request, Resp};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fronts");

/// A real front proxy, killed (and its temp dir removed) on drop.
pub struct Front {
    pub name: &'static str,
    pub addr: SocketAddr,
    child: Child,
    dir: PathBuf,
}

impl Drop for Front {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Front {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// nginx with `tests/fronts/nginx.conf`.
    pub fn nginx(decision: SocketAddr, cms: SocketAddr) -> Front {
        let nginx = binary("nginx", "Debian's `nginx` (scripts/test.sh installs it)");
        Self::start("nginx", "nginx.conf", decision, cms, |dir, conf| {
            let mut c = Command::new(nginx);
            c.arg("-p")
                .arg(dir)
                .arg("-e")
                .arg(dir.join("error.log"))
                .arg("-c")
                .arg(conf);
            c
        })
    }

    /// Caddy with `tests/fronts/Caddyfile`.
    pub fn caddy(decision: SocketAddr, cms: SocketAddr) -> Front {
        let caddy = binary("caddy", "Debian's `caddy` (scripts/test.sh installs it)");
        Self::start("caddy", "Caddyfile", decision, cms, |dir, conf| {
            let mut c = Command::new(caddy);
            c.args(["run", "--adapter", "caddyfile", "--config"])
                .arg(conf)
                // Caddy keeps state under these; never the user's.
                .env("XDG_CONFIG_HOME", dir)
                .env("XDG_DATA_HOME", dir)
                .env("HOME", dir);
            c
        })
    }

    fn start(
        name: &'static str,
        template: &str,
        decision: SocketAddr,
        cms: SocketAddr,
        command: impl FnOnce(&Path, &Path) -> Command,
    ) -> Front {
        let mut r = [0u8; 4];
        getrandom::fill(&mut r).unwrap();
        let dir = std::env::temp_dir().join(format!(
            "authgate-{name}-{}-{}",
            std::process::id(),
            hex::encode(r)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let text = std::fs::read_to_string(Path::new(DIR).join(template)).unwrap();
        let conf = dir.join(template);
        std::fs::write(
            &conf,
            text.replace("@DIR@", dir.to_str().unwrap())
                .replace("@PORT@", &port.to_string())
                .replace("@DECISION@", &decision.to_string())
                .replace("@CMS@", &cms.to_string()),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("stderr.log")).unwrap();
        let child = command(&dir, &conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {name}: {e}"));
        let mut front = Front {
            name,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(front.addr).is_err() {
            if let Ok(Some(status)) = front.child.try_wait() {
                panic!("{name} exited ({status}): {}", front.logs());
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not start: {}",
                front.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        front
    }

    /// What the proxy logged (for failure messages).
    pub fn logs(&self) -> String {
        ["stderr.log", "error.log"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(self.dir.join(f)).ok())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn binary(name: &str, install: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed: install {install}"))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

/// The `Host` the shapes' clients asked for.
pub const CLIENT_HOST: &str = "cms.example";

/// Envoy's ext_authz `http_service` with `path_prefix: "/ext-authz"`: the
/// client's method, the prefix and the client's path with its query, and
/// the client's `Host`, `Authorization` and `Content-Length` (Envoy's
/// default allowed headers; no body without `with_request_body`).
pub async fn envoy_http(
    decision: SocketAddr,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    extra: &[(&str, &str)],
) -> Resp {
    let mut headers: Vec<(&str, &str)> = vec![("host", CLIENT_HOST), ("content-length", "0")];
    if let Some(a) = authorization {
        headers.push(("authorization", a));
    }
    headers.extend_from_slice(extra);
    let url = format!("http://{decision}/ext-authz{path}");
    request(method, &url, None, &headers, b"").await
}

/// Traefik's `forwardAuth` (`pkg/middlewares/auth/forward.go`, without
/// `trustForwardHeader`): a `GET` to the address with the client's headers
/// (hop-by-hop ones removed), `X-Forwarded-For` set to the client's
/// address, `X-Forwarded-Method`, `-Proto`, `-Host` (the client's `Host`)
/// and `-Uri` (the request URI as Go prints it).
pub async fn traefik(
    decision: SocketAddr,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    extra: &[(&str, &str)],
) -> Resp {
    let mut headers: Vec<(&str, &str)> = vec![
        ("user-agent", "curl/8.0"),
        ("accept", "*/*"),
        ("accept-encoding", "gzip"),
    ];
    if let Some(a) = authorization {
        headers.push(("authorization", a));
    }
    headers.extend_from_slice(extra);
    headers.extend_from_slice(&[
        ("x-forwarded-for", "127.0.0.1"),
        ("x-forwarded-method", method),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", CLIENT_HOST),
        ("x-forwarded-uri", path),
    ]);
    let url = format!("http://{decision}/forward-auth");
    request("GET", &url, None, &headers, b"").await
}
