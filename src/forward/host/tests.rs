use super::*;

fn headers(hosts: &[&[u8]]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in hosts {
        h.append(header::HOST, HeaderValue::from_bytes(v).unwrap());
    }
    h
}

#[test]
fn authorities() {
    for ok in [
        &b"cms.example"[..],
        b"cms.example:8080",
        b"127.0.0.1",
        b"127.0.0.1:1",
        b"[::1]",
        b"[2001:db8::7]:443",
        b"xn--caf-dma.example",
        b"a%20b",
        b"localhost:",
    ] {
        assert!(is_authority(ok), "{}", String::from_utf8_lossy(ok));
    }
    for bad in [
        &b""[..],
        b"evil.example/admin?x=",
        b"a@evil.example",
        b"evil.example#x",
        b"evil.example:80:80",
        b"evil.example:123456",
        b"evil.example:8o",
        b"[::1",
        b"[evil]",
        b"[::1]x",
        b":80",
        b"a b",
        b"a%2",
        b"a\\b",
        b"caf\xc3\xa9.example",
    ] {
        assert!(!is_authority(bad), "{}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn requested_host() {
    let origin: Uri = "/api/x".parse().unwrap();
    let v11 = Version::HTTP_11;
    assert_eq!(
        requested(v11, &origin, &headers(&[b"cms.example"])).unwrap(),
        Some(HeaderValue::from_static("cms.example"))
    );
    assert_eq!(
        requested(v11, &origin, &headers(&[])),
        Err(HostError::Missing)
    );
    assert_eq!(
        requested(Version::HTTP_10, &origin, &headers(&[])),
        Ok(None)
    );
    assert_eq!(
        requested(v11, &origin, &headers(&[b"a", b"a"])),
        Err(HostError::Repeated)
    );
    assert_eq!(
        requested(v11, &origin, &headers(&[b"a@evil.example"])),
        Err(HostError::Invalid)
    );
    // The absolute form's authority wins over the header.
    let absolute: Uri = "http://cms.internal:8080/api/x".parse().unwrap();
    assert_eq!(
        requested(v11, &absolute, &headers(&[b"evil.example"])).unwrap(),
        Some(HeaderValue::from_static("cms.internal:8080"))
    );
    assert_eq!(
        requested(v11, &absolute, &headers(&[])).unwrap(),
        Some(HeaderValue::from_static("cms.internal:8080"))
    );
    let userinfo: Uri = "http://u@cms.internal/api/x".parse().unwrap();
    assert_eq!(
        requested(v11, &userinfo, &headers(&[b"cms.internal"])),
        Err(HostError::Invalid)
    );
}

use proptest::prelude::*;

/// Authorities valid by construction: a name, an IPv4 address or an
/// IPv6 literal, with an optional port.
fn authority() -> impl Strategy<Value = String> {
    let label = "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?";
    let name = proptest::collection::vec(label, 1..4).prop_map(|l| l.join("."));
    let v4 = any::<[u8; 4]>().prop_map(|o| format!("{}.{}.{}.{}", o[0], o[1], o[2], o[3]));
    let v6 = any::<[u16; 8]>().prop_map(|s| format!("[{}]", std::net::Ipv6Addr::from(s)));
    let host = prop_oneof![name, v4, v6];
    (host, proptest::option::of(0u32..65536)).prop_map(|(h, p)| match p {
        Some(p) => format!("{h}:{p}"),
        None => h,
    })
}

proptest! {
    /// Every valid authority is taken as it is; the same with one
    /// character no authority holds (user info, path, query,
    /// fragment, blanks, quotes, controls) put anywhere is refused.
    #[test]
    fn host_shapes(host in authority(), bad in prop::sample::select(
        vec!['@', '/', '?', '#', ' ', '"', '<', '>', '\\', '\t', '{', '}', '|', '^', '`']),
        at in any::<prop::sample::Index>()) {
        let origin: Uri = "/api/x".parse().unwrap();
        let h = headers(&[host.as_bytes()]);
        prop_assert_eq!(
            requested(Version::HTTP_11, &origin, &h),
            Ok(Some(HeaderValue::from_str(&host).unwrap()))
        );
        let mut bytes = host.clone().into_bytes();
        let i = at.index(bytes.len() + 1);
        bytes.insert(i, bad as u8);
        if let Ok(v) = HeaderValue::from_bytes(&bytes) {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, v);
            prop_assert_eq!(
                requested(Version::HTTP_11, &origin, &h),
                Err(HostError::Invalid),
                "{}", String::from_utf8_lossy(&bytes)
            );
        }
    }
}

#[test]
fn the_cms_host() {
    let asked = HeaderValue::from_static("cms.example");
    let upstream = Some(HeaderValue::from_static("127.0.0.1:1337"));
    let rule = HostRule {
        fixed: None,
        upstream: upstream.clone(),
    };
    assert_eq!(rule.upstream_host(Some(&asked)), "cms.example");
    assert_eq!(rule.upstream_host(None), "127.0.0.1:1337");
    let fixed = HostRule {
        fixed: Some(HeaderValue::from_static("cms.internal")),
        upstream,
    };
    assert_eq!(fixed.upstream_host(Some(&asked)), "cms.internal");
}
