//! The gRPC door from the outside (issue 28): Envoy's own compiled protos
//! (PyPI `xds-protos`) and a real gRPC client (`grpcio`), both written
//! apart from authgate's prost messages, through `tests/grpc/check.py` in
//! the venv `tests/grpc/venv.sh` makes. The golden bytes that
//! `src/decision/grpc/tests.rs` checks prost against are what that encoder
//! writes; and `Check` over h2c and over TLS answers allow, the identity
//! and `headers_to_remove`, and each denial's status, code and envelope.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::{json, Value};
use support::*;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/grpc")
}

/// The venv's python (made on first use; a failure fails the test).
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| venv_python(&dir().join("venv.sh")))
}

/// `check.py call`: each case sent by grpcio; the answers.
fn call(cases: &Value) -> Vec<Value> {
    use std::io::Write;
    let mut child = Command::new(python())
        .arg(dir().join("check.py"))
        .arg("call")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run check.py");
    let input = serde_json::to_vec(cases).unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "check.py call: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_golden_bytes_are_what_envoys_encoder_writes() {
    let out = std::env::temp_dir().join(format!("authgate-grpc-golden-{}", std::process::id()));
    let status = Command::new(python())
        .arg(dir().join("check.py"))
        .arg("golden")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/grpc");
    let mut names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names.len(), 6, "{names:?}");
    for name in names {
        let fresh = std::fs::read_to_string(out.join(&name)).unwrap();
        let kept = std::fs::read_to_string(committed.join(&name)).unwrap();
        assert_eq!(fresh, kept, "{name:?}: regenerate with check.py golden");
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// The case for one request: `path` as the client sent it, with `key`.
fn case(target: &str, method: &str, path: &str, key: Option<&str>) -> Value {
    let mut headers = json!({":authority": "cms.example", ":method": method, ":path": path});
    if let Some(k) = key {
        headers["authorization"] = json!(format!("Bearer {k}"));
    }
    json!({"target": target, "method": method, "path": path, "host": "cms.example",
           "headers": headers, "source": "127.0.0.1"})
}

/// The ok_response's headers as a map, checking each overwrites.
fn set_headers(answer: &Value) -> serde_json::Map<String, Value> {
    answer["ok"]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            assert_eq!(h[2], 2, "OVERWRITE_IF_EXISTS_OR_ADD: {h}");
            (h[0].as_str().unwrap().to_owned(), h[1].clone())
        })
        .collect()
}

fn denied(answer: &Value, status: u16, code: u32, message: &str) {
    assert_eq!(answer["grpc"], 0, "{answer}");
    assert_eq!(answer["status_code"], code, "{answer}");
    let d = &answer["denied"];
    assert_eq!(d["status"], status, "{answer}");
    let body: Value = serde_json::from_str(d["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["error"]["status"], status);
    assert_eq!(body["error"]["message"], message);
    let names: Vec<&str> = d["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h[0].as_str().unwrap())
        .collect();
    assert!(names.contains(&"content-type"), "{names:?}");
    assert!(names.contains(&"x-request-id"), "{names:?}");
    assert_eq!(names.contains(&"retry-after"), status == 429, "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_grpc_client_over_h2c_and_tls() {
    let tls = std::env::temp_dir().join(format!("authgate-grpc-tls-{}", std::process::id()));
    std::fs::create_dir_all(&tls).unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (tls.join("d.crt"), tls.join("d.key"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let env = Env::with_config(
        "[decision]\nlisten = \"127.0.0.1:0\"\n\n[rate_limit]\nper_token = 1\nwindow = \"60s\"\n",
    )
    .await;
    let (full_id, full) = env.content_token("full", "full-access", &[]);
    let (_, ro) = env.content_token("ro", "read-only", &[]);
    let (_, limited) = env.content_token("limited", "full-access", &[]);
    let g = env.gateway().await;
    let target = g.decision.unwrap().to_string();
    let t = target.as_str();

    let mut allow = case(t, "GET", "/api/articles?x=1", Some(&full));
    allow["headers"]["x-auth-token-id"] = json!("999");
    allow["headers"]["x_auth_token_kind"] = json!("admin");
    allow["headers"]["x-http-method-override"] = json!("DELETE");
    let mut graphql = case(t, "POST", "/graphql", Some(&ro));
    graphql["headers"]["content-type"] = json!("application/json");
    graphql["raw_body"] = json!(r#"{"query":"mutation { deleteArticle(id: 1) { id } }"}"#);
    let answers = call(&json!([
        allow,
        case(t, "GET", "/api/articles", Some(&"0".repeat(256))),
        case(t, "POST", "/api/articles", Some(&ro)),
        graphql,
        case(t, "GET", "/admin/..%2fapi/x", Some(&full)),
        case(t, "GET", "/api/articles", Some(&limited)),
        case(t, "GET", "/api/articles", Some(&limited)),
    ]));
    let a = &answers[0];
    assert_eq!(
        (&a["grpc"], &a["status_code"]),
        (&json!(0), &json!(0)),
        "{a}"
    );
    let set = set_headers(a);
    assert_eq!(set["x-auth-token-id"], full_id.to_string());
    assert_eq!(set["x-auth-token-type"], "full-access");
    assert_eq!(set["x-auth-action"], "api::article.article.find");
    assert!(set.contains_key("x-request-id"), "{a}");
    let removed: Vec<&str> = a["ok"]["headers_to_remove"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for name in [
        "x_auth_token_kind",
        "x-http-method-override",
        "x-auth-owner-id",
        "x-auth-signature",
    ] {
        assert!(removed.contains(&name), "{name}: {removed:?}");
    }
    for name in set.keys() {
        assert!(!removed.contains(&name.as_str()), "{name} set and removed");
    }
    denied(&answers[1], 401, 16, "Missing or invalid credentials");
    denied(&answers[2], 403, 7, "Forbidden");
    denied(&answers[3], 403, 7, "Forbidden");
    denied(&answers[4], 400, 3, "Invalid request path");
    assert_eq!(answers[5]["status_code"], 0, "{}", answers[5]);
    denied(&answers[6], 429, 8, "Too many requests");
    g.stop().await;

    // TLS with ALPN h2: grpcio's own TLS client, the listener's cert as root.
    let env = Env::with_config(&format!(
        "[decision]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert.display(),
        key.display()
    ))
    .await;
    let (full_id, full) = env.content_token("full", "full-access", &[]);
    let g = env.gateway().await;
    let target = g.decision.unwrap().to_string();
    let mut allow = case(&target, "GET", "/api/articles", Some(&full));
    allow["tls_root"] = json!(cert.display().to_string());
    let mut deny = case(&target, "GET", "/admin/users", Some(&full));
    deny["tls_root"] = json!(cert.display().to_string());
    let answers = call(&json!([allow, deny]));
    assert_eq!(
        set_headers(&answers[0])["x-auth-token-id"],
        full_id.to_string()
    );
    denied(&answers[1], 401, 16, "Missing or invalid credentials");
    let _ = std::fs::remove_dir_all(&tls);
}
