//! authgate's own cookies and the management listener's Host (issue 24,
//! item 7 and the DNS-rebinding note): the session cookie never reaches the
//! CMS, is `__Host-` prefixed and `Secure` when the page is HTTPS (also
//! behind a TLS-terminating proxy it trusts), and the listener answers only
//! to the names it is meant for.

mod support;

use support::*;

fn set_cookies(r: &Resp) -> Vec<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("text").to_owned())
        .collect()
}

#[tokio::test]
async fn own_cookies_never_reach_the_cms() {
    let env = Env::new().await;
    let g = env.gateway().await;
    let r = request(
        "GET",
        &g.url("/uploads/a.png"),
        None,
        &[(
            "cookie",
            "theme=dark; authgate_session=s1; __Host-authgate_session=s2; __Host-authgate_login=l",
        )],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_header("cookie").as_deref(), Some("theme=dark"));
}

#[tokio::test]
async fn https_behind_a_trusted_proxy_gets_host_prefixed_secure_cookies() {
    let env = Env::with_config(
        "[management]\nlisten = \"127.0.0.1:0\"\ntrusted_proxies = [\"127.0.0.1\"]\n",
    )
    .await;
    let g = env.gateway().await;
    let plain = get(&g.mgmt("/"), None).await;
    let cookies = set_cookies(&plain);
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("authgate_login=") && !c.contains("Secure")),
        "{cookies:?}"
    );
    let https = request(
        "GET",
        &g.mgmt("/"),
        None,
        &[("x-forwarded-proto", "https")],
        b"",
    )
    .await;
    let cookies = set_cookies(&https);
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("__Host-authgate_login=")
                && c.contains("; Path=/;")
                && c.ends_with("; Secure")),
        "{cookies:?}"
    );
}

#[tokio::test]
async fn an_untrusted_peer_cannot_claim_https() {
    let env = Env::new().await;
    let g = env.gateway().await;
    let r = request(
        "GET",
        &g.mgmt("/"),
        None,
        &[("x-forwarded-proto", "https")],
        b"",
    )
    .await;
    assert!(set_cookies(&r)
        .iter()
        .all(|c| c.starts_with("authgate_login=") && !c.contains("Secure")));
}

#[tokio::test]
async fn a_loopback_management_listener_answers_only_to_loopback_names() {
    let env = Env::new().await;
    let g = env.gateway().await;
    let url = g.mgmt("/admin/api-tokens");
    for (host, status) in [
        ("rebind.attacker.example", 421),
        ("rebind.attacker.example:9091", 421),
        ("localhost", 401),
        ("127.0.0.1", 401),
    ] {
        let r = request("GET", &url, None, &[("host", host)], b"").await;
        assert_eq!(r.status, status, "Host {host}");
    }
}

#[tokio::test]
async fn allowed_hosts_names_them() {
    let env = Env::with_config(
        "[management]\nlisten = \"127.0.0.1:0\"\nallowed_hosts = [\"authgate.internal\"]\n",
    )
    .await;
    let g = env.gateway().await;
    let url = g.mgmt("/admin/api-tokens");
    for (host, status) in [
        ("authgate.internal", 401),
        ("authgate.internal:9091", 401),
        ("localhost", 421),
    ] {
        let r = request("GET", &url, None, &[("host", host)], b"").await;
        assert_eq!(r.status, status, "Host {host}");
    }
}
