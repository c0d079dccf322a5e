use super::*;
use crate::model::{ContentApiType, Owner, PermissionSet, TokenKind};
use http::header::{HeaderMap, HeaderValue};

#[test]
fn strips_every_spelling_of_the_namespace() {
    let n = IdentityNames::new("x-auth-").unwrap();
    let mut h = HeaderMap::new();
    for name in [
        "x-auth-token-id",
        "X-Auth-Owner-Email",
        "x_auth_token_id",
        "x-auth_token-kind",
        "x-auth-",
        "x-authx",
        "authorization",
        "x-forwarded-for",
    ] {
        h.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_static("v"),
        );
    }
    h.append("x-auth-token-id", HeaderValue::from_static("again"));
    // What the proxy's pass over the headers keeps.
    let mut left: Vec<&str> = h
        .keys()
        .map(|k| k.as_str())
        .filter(|k| !n.is_identity(k))
        .collect();
    left.sort_unstable();
    assert_eq!(left, vec!["authorization", "x-authx", "x-forwarded-for"]);
}

#[test]
fn headers_for_both_kinds() {
    let n = IdentityNames::new("x-auth-").unwrap();
    let content = TokenRecord::content_api(12, "Café build\n", ContentApiType::Custom);
    let headers_for = |r: &TokenRecord| {
        let mut h = AddedHeaders::new();
        n.write(&mut h, r, None);
        h
    };
    let h = headers_for(&content);
    let get = |h: &AddedHeaders, k: &str| h.get(k).map(|v| String::from_utf8(v.to_vec()).unwrap());
    assert_eq!(get(&h, "x-auth-token-id").as_deref(), Some("12"));
    assert_eq!(get(&h, "x-auth-token-kind").as_deref(), Some("content-api"));
    assert_eq!(
        get(&h, "x-auth-token-name").as_deref(),
        Some("Caf%C3%A9 build%0A")
    );
    assert_eq!(get(&h, "x-auth-token-type").as_deref(), Some("custom"));
    assert_eq!(get(&h, "x-auth-owner-id"), None);
    let mut admin = content.clone();
    admin.kind = TokenKind::Admin;
    admin.token_type = None;
    admin.ownership = Ownership::owner(Owner {
        id: 3,
        email: "ops@example.com".into(),
        is_active: true,
        blocked: false,
        super_admin: false,
        permissions: PermissionSet::default(),
        role_ids: vec![],
    });
    let h = headers_for(&admin);
    assert_eq!(get(&h, "x-auth-token-kind").as_deref(), Some("admin"));
    assert_eq!(get(&h, "x-auth-token-type"), None);
    assert_eq!(get(&h, "x-auth-owner-id").as_deref(), Some("3"));
    assert_eq!(
        get(&h, "x-auth-owner-email").as_deref(),
        Some("ops@example.com")
    );
}

#[test]
fn signature_is_hmac_over_the_canonical_string() {
    let n = IdentityNames::new("x-auth-").unwrap();
    let mut h = AddedHeaders::new();
    h.push(&HeaderName::from_static("accept"), b"*/*");
    let r = TokenRecord::content_api(5, "ci", ContentApiType::ReadOnly);
    let lines = n.write(&mut h, &r, Some("api::a.a.find"));
    Signer::new("k").sign(&n, "GET", "/admin/users?x=1", 1700000000, &mut h, &lines);
    // Sorted by name; the line the identity writer did not write is not signed.
    let canonical = "GET\n/admin/users?x=1\n1700000000\nx-auth-action:api::a.a.find\n\
                     x-auth-token-id:5\nx-auth-token-kind:content-api\n\
                     x-auth-token-name:ci\nx-auth-token-type:read-only";
    let out = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", "k", "-r"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .expect("stdin")
                .write_all(canonical.as_bytes())?;
            c.wait_with_output()
        })
        .expect("openssl must be installed for this test");
    let expected = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        h.get("x-auth-signature").unwrap(),
        expected.split_whitespace().next().unwrap().as_bytes()
    );
    assert_eq!(h.get("x-auth-timestamp").unwrap(), b"1700000000");
}
