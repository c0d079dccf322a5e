//! `authgate explain`: its account of a request is checked against what the
//! gateway actually answers for the same request.

mod support;

use serde_json::Value;
use support::*;

/// `authgate explain --json`, the key (if any) in a file.
fn explain(env: &Env, method: &str, target: &str, key: Option<&str>) -> Value {
    let mut args = vec!["explain", method, target];
    let key_path = env.dir.join("explain.key");
    let key_arg;
    if let Some(k) = key {
        std::fs::write(&key_path, k).expect("key file");
        key_arg = key_path.to_string_lossy().into_owned();
        args.extend(["--key-file", key_arg.as_str()]);
    }
    env.json(&args)
}

/// What the gateway answers for the same request.
async fn gateway_status(g: &Gateway, method: &str, target: &str, key: Option<&str>) -> Resp {
    let auth = key.map(|k| format!("Bearer {k}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    request(method, &g.url(target), None, &headers, b"").await
}

/// The explanation's decision agrees with the gateway's answer: its status
/// for a refusal; forwarded (the echo upstream's 200), with identity
/// exactly when it says allow.
fn agrees(e: &Value, r: &Resp) {
    let decision = e["decision"]["decision"].as_str().expect("decision");
    match decision {
        "deny" => assert_eq!(
            e["decision"]["status"].as_u64().expect("status"),
            u64::from(r.status),
            "{e}"
        ),
        "allow" | "pass" => {
            assert_eq!(r.status, 200, "{e}");
            assert_eq!(
                r.upstream_header("x-auth-token-id").is_some(),
                decision == "allow",
                "{e}"
            );
        }
        other => panic!("unexpected decision {other}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_says_what_the_gateway_does() {
    let env = Env::new().await;
    let g = env.gateway().await;
    let (reader_id, reader) = env.content_token("reader", "read-only", &[]);
    let (old_id, old) = env.content_token("old", "full-access", &[]);
    exec(
        &env.schema,
        &format!("UPDATE tokens SET expires_at = now() - interval '1 hour' WHERE id = {old_id}"),
    )
    .await;
    let unknown = "f".repeat(256);

    // Allowed: a read-only token reading articles.
    let e = explain(&env, "GET", "/api/articles?page=1", Some(&reader));
    assert_eq!(e["decision"]["decision"], "allow", "{e}");
    assert_eq!(e["route"]["class"], "content-api");
    assert_eq!(e["route"]["action"], "api::article.article.find");
    assert!(e["route"]["mapped_by"]
        .as_str()
        .unwrap()
        .contains("content type api::article.article"));
    assert_eq!(e["token"]["id"], reader_id);
    assert_eq!(e["token"]["type"], "read-only");
    assert!(!e.to_string().contains(&reader), "the key is never printed");
    agrees(
        &e,
        &gateway_status(&g, "GET", "/api/articles?page=1", Some(&reader)).await,
    );

    // Forbidden: the same token writing.
    let e = explain(&env, "POST", "/api/articles", Some(&reader));
    assert_eq!(e["decision"]["status"], 403, "{e}");
    assert_eq!(e["decision"]["reason"], "forbidden");
    assert_eq!(e["route"]["action"], "api::article.article.create");
    agrees(
        &e,
        &gateway_status(&g, "POST", "/api/articles", Some(&reader)).await,
    );

    // Expired.
    let e = explain(&env, "GET", "/api/articles", Some(&old));
    assert_eq!(e["decision"]["reason"], "token_expired", "{e}");
    assert_eq!(e["token"]["expired"], true);
    agrees(
        &e,
        &gateway_status(&g, "GET", "/api/articles", Some(&old)).await,
    );

    // A content-API key on an admin route: Strapi's 401, and the note that
    // says why.
    let e = explain(&env, "GET", "/admin/users", Some(&reader));
    assert_eq!(e["decision"]["status"], 401, "{e}");
    assert!(e["notes"][0]
        .as_str()
        .unwrap()
        .contains("admin routes take admin tokens only"));
    agrees(
        &e,
        &gateway_status(&g, "GET", "/admin/users", Some(&reader)).await,
    );

    // Unknown key.
    let e = explain(&env, "GET", "/api/articles", Some(&unknown));
    assert_eq!(e["decision"]["status"], 401, "{e}");
    assert_eq!(e["token"], Value::Null);
    agrees(
        &e,
        &gateway_status(&g, "GET", "/api/articles", Some(&unknown)).await,
    );

    // Anonymous on an unprotected path: passed on.
    let e = explain(&env, "GET", "/uploads/x.png", None);
    assert_eq!(e["decision"]["decision"], "pass", "{e}");
    agrees(&e, &gateway_status(&g, "GET", "/uploads/x.png", None).await);

    // A target whose readings disagree: the readings that differ are named.
    let target = "/%2561dmin/users";
    let e = explain(&env, "GET", target, Some(&reader));
    assert_eq!(e["readings"]["agree"], false, "{e}");
    let differing: Vec<&str> = e["readings"]["readings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["differs"] == true)
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    assert!(differing.contains(&"/admin/users"), "{e}");
    assert_eq!(e["decision"]["status"], 400);
    agrees(&e, &gateway_status(&g, "GET", target, Some(&reader)).await);
}

#[tokio::test]
async fn explain_as_text_names_route_token_and_decision() {
    let env = Env::new().await;
    let (_, reader) = env.content_token("reader", "read-only", &[]);
    let key = env.dir.join("k");
    std::fs::write(&key, &reader).unwrap();
    let out = env.ok(&[
        "explain",
        "DELETE",
        "/api/articles/7",
        "--key-file",
        key.to_str().unwrap(),
    ]);
    for want in [
        "route      content-api",
        "api::article.article.delete",
        "token      #",
        "\"reader\"",
        "decision   deny: 403 ForbiddenError \"Forbidden\" (forbidden)",
    ] {
        assert!(out.contains(want), "{want:?} in:\n{out}");
    }
    assert!(!out.contains(&reader));
}
