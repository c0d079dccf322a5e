//! Report-only mode (`server.enforcement = "report"`): what authorization
//! would refuse is forwarded without identity, logged and counted; what it
//! allows gets identity as usual; a reload back to "enforce" refuses again,
//! without a restart.

mod support;

use std::time::Duration;

use support::*;

/// The running replica's metrics address, from its start line.
fn metrics_url(replica: &Replica) -> String {
    let log = replica.log.lock().expect("log");
    let addr = log
        .iter()
        .find_map(|l| l.split("metrics=Some(").nth(1)?.split(')').next())
        .expect("metrics address in the start line")
        .to_owned();
    format!("http://{addr}")
}

async fn body_of(url: &str) -> String {
    String::from_utf8(get(url, None).await.body.to_vec()).expect("text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_mode_forwards_denials_without_identity_and_counts_them() {
    let env = Env::new().await;
    let (content_id, content) = env.content_token("reader", "read-only", &[]);
    let enforcing = std::fs::read_to_string(&env.config_path).unwrap();
    let reporting = enforcing.replace("[server]\n", "[server]\nenforcement = \"report\"\n");
    assert_ne!(enforcing, reporting);
    std::fs::write(&env.config_path, &reporting).unwrap();
    let replica = Replica::start(&env.config_path, &[]);
    let metrics = metrics_url(&replica);
    assert!(replica
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("REPORT MODE")));

    // A content-API token on an admin route: enforcement answers 401; in
    // report mode the CMS gets the request unchanged, without identity,
    // and a forged identity header is still stripped.
    let wrong_kind = request(
        "GET",
        &replica.url("/admin/users"),
        Some(&content),
        &[("x-auth-token-id", "99")],
        b"",
    )
    .await;
    assert_eq!(wrong_kind.status, 200, "{:?}", wrong_kind.body);
    let seen = wrong_kind.upstream_headers();
    assert!(
        !seen.keys().any(|k| k.starts_with("x-auth-")),
        "no identity in report mode: {seen:?}"
    );
    assert_eq!(
        wrong_kind.upstream_header("authorization").as_deref(),
        Some(format!("Bearer {content}").as_str()),
        "the request is forwarded unchanged"
    );
    // An unknown key: the same.
    let unknown = get(&replica.url("/api/articles"), Some(&"f".repeat(256))).await;
    assert_eq!(unknown.status, 200);
    assert_eq!(unknown.upstream_header("x-auth-token-id"), None);

    // An allowed request gets its identity as usual.
    let allowed = get(&replica.url("/api/articles"), Some(&content)).await;
    assert_eq!(allowed.status, 200);
    assert_eq!(
        allowed.upstream_header("x-auth-token-id"),
        Some(content_id.to_string())
    );

    // Counted by reason, logged with the status it would have had, and
    // said by the gauge and /readyz.
    let text = body_of(&format!("{metrics}/metrics")).await;
    assert_eq!(
        metric(
            &text,
            "authgate_would_deny_total{reason=\"invalid_credentials\"}"
        ),
        2.0,
        "{text}"
    );
    assert_eq!(metric(&text, "authgate_enforcing"), 0.0);
    assert!(body_of(&format!("{metrics}/readyz"))
        .await
        .contains("report mode"));
    assert!(replica
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("report mode: forwarded without identity")
            && l.contains("would_status=401")
            && l.contains("/admin/users")));

    // Back to enforce by reload, no restart.
    std::fs::write(&env.config_path, &enforcing).unwrap();
    let url = replica.url("/admin/users");
    eventually(Duration::from_secs(6), "enforced after reload", || async {
        get(&url, Some(&content)).await.status == 401
    })
    .await;
    let text = body_of(&format!("{metrics}/metrics")).await;
    assert_eq!(metric(&text, "authgate_enforcing"), 1.0);
    assert_eq!(body_of(&format!("{metrics}/readyz")).await, "ready\n");
}

#[tokio::test]
async fn an_unknown_enforcement_is_a_config_error() {
    let env = Env::new().await;
    let text = std::fs::read_to_string(&env.config_path)
        .unwrap()
        .replace("[server]\n", "[server]\nenforcement = \"audit\"\n");
    std::fs::write(&env.config_path, text).unwrap();
    let out = env.cli(&["check-config"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("server.enforcement") && err.contains("\"enforce\" or \"report\""),
        "{err}"
    );
}
