//! The front proxies of tests/doors.rs: real nginx (`auth_request`) and
//! real Caddy (`forward_auth`) in front of authgate's decision listener,
//! run from the configs docs/front-doors.md gives (`nginx.conf`,
//! `Caddyfile` beside this file); and the request shapes of the proxies
//! that do not install here, sent exactly as they send them (Envoy's
//! ext_authz `http_service` and `grpc_service`, Traefik's `forward.go`).

#![allow(dead_code)]
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use authgate::decision::grpc::pb;

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

/// What a gRPC `Check` got: the call's `grpc-status` (from the headers or
/// the trailers) and, when it is 0, the `CheckResponse`.
#[derive(Debug)]
pub struct GrpcAnswer {
    pub grpc_status: String,
    pub check: Option<pb::CheckResponse>,
}

/// Envoy's ext_authz `grpc_service`: a `CheckRequest` as Envoy fills it
/// (the client's method, target and `Host`, its headers with the
/// pseudo-headers among them, the downstream address 127.0.0.1, and the
/// body when `with_request_body` sends one). The messages are authgate's
/// own prost structs; tests/grpc.rs checks them against Envoy's encoder
/// and a real gRPC client.
pub fn check_request(
    method: &str,
    path: &str,
    authorization: Option<&str>,
    extra: &[(&str, &str)],
    body: Option<&[u8]>,
) -> pb::CheckRequest {
    let mut headers = std::collections::BTreeMap::new();
    for (k, v) in [
        (":authority", CLIENT_HOST),
        (":method", method),
        (":path", path),
        (":scheme", "http"),
        ("x-forwarded-proto", "http"),
    ] {
        headers.insert(k.to_owned(), v.as_bytes().to_vec());
    }
    if let Some(a) = authorization {
        headers.insert("authorization".to_owned(), a.as_bytes().to_vec());
    }
    for (k, v) in extra {
        headers.insert(k.to_string(), v.as_bytes().to_vec());
    }
    let http = pb::HttpRequest {
        method: method.to_owned(),
        headers,
        path: path.as_bytes().to_vec(),
        host: CLIENT_HOST.to_owned(),
        body: body.map(bytes::Bytes::copy_from_slice).unwrap_or_default(),
        ..Default::default()
    };
    let source = pb::Peer {
        address: Some(pb::Address {
            socket_address: Some(pb::SocketAddress {
                address: "127.0.0.1".to_owned(),
                port_value: 50000,
            }),
        }),
    };
    pb::CheckRequest {
        attributes: Some(pb::AttributeContext {
            source: Some(source),
            request: Some(pb::Request { http: Some(http) }),
        }),
    }
}

/// Send one `CheckRequest` over HTTP/2 with prior knowledge.
pub async fn envoy_grpc(decision: SocketAddr, req: &pb::CheckRequest) -> GrpcAnswer {
    use prost::Message;
    let msg = req.encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&u32::try_from(msg.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(&msg);
    grpc_raw(decision, &framed).await
}

/// Send a gRPC `Check` body as it is (framed by the caller).
pub async fn grpc_raw(decision: SocketAddr, framed: &[u8]) -> GrpcAnswer {
    use http_body_util::BodyExt;
    use prost::Message;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let req = http::Request::builder()
        .method("POST")
        .uri(format!(
            "http://{decision}/envoy.service.auth.v3.Authorization/Check"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(bytes::Bytes::copy_from_slice(
            framed,
        )))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200, "a gRPC answer is HTTP 200");
    let in_headers = resp
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_owned());
    let collected = resp.into_body().collect().await.unwrap();
    let in_trailers = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .map(|v| v.to_str().unwrap().to_owned());
    let body = collected.to_bytes();
    let grpc_status = in_headers.or(in_trailers).expect("grpc-status");
    let check = (grpc_status == "0").then(|| {
        assert_eq!(body[0], 0, "uncompressed");
        let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        assert_eq!(body.len(), 5 + len, "one message");
        pb::CheckResponse::decode(&body[5..]).unwrap()
    });
    GrpcAnswer { grpc_status, check }
}
