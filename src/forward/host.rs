//! `Host`: which authority the client asked for, and which the CMS is told.
//!
//! RFC 9112 §3.2: an HTTP/1.1 request carries exactly one `Host`, and it
//! is an authority (`uri-host [":" port]`, RFC 3986), nothing more; a
//! request in absolute form names its authority in the target, which then
//! wins over the header. A request that breaks this is refused with 400
//! before it is judged ([`requested`]), so a CMS (or a framework behind
//! it) never builds URLs, tenants or redirects from `evil.example/admin?x=`
//! or `a@evil.example`, and `X-Forwarded-Host` only ever carries a plain
//! authority. HTTP/1.0 may omit `Host`.
//!
//! What the CMS receives is decided here alone ([`HostRule`]):
//! `upstream.host` when set, else the authority the client asked for,
//! else (HTTP/1.0 without one) the upstream URL's.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Uri, Version};

/// Why the client's `Host` cannot be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("an HTTP/1.1 request without Host")]
    Missing,
    #[error("more than one Host")]
    Repeated,
    #[error("a Host that is not an authority (host[:port])")]
    Invalid,
}

/// The authority the client asked for: the absolute-form target's, else
/// its one `Host`. `Ok(None)`: an HTTP/1.0 request that names none.
pub fn requested(
    version: Version,
    uri: &Uri,
    h: &HeaderMap,
) -> Result<Option<HeaderValue>, HostError> {
    let mut hosts = h.get_all(header::HOST).iter();
    let (first, second) = (hosts.next(), hosts.next());
    if second.is_some() {
        return Err(HostError::Repeated);
    }
    if let Some(a) = uri.authority() {
        return match is_authority(a.as_str().as_bytes()) {
            true => HeaderValue::from_str(a.as_str())
                .map(Some)
                .map_err(|_| HostError::Invalid),
            false => Err(HostError::Invalid),
        };
    }
    match first {
        Some(v) if is_authority(v.as_bytes()) => Ok(Some(v.clone())),
        Some(_) => Err(HostError::Invalid),
        None if version == Version::HTTP_10 || version == Version::HTTP_09 => Ok(None),
        None => Err(HostError::Missing),
    }
}

/// `uri-host [":" port]` (RFC 3986 §3.2.2-3): an IP literal in brackets,
/// or a non-empty reg-name of unreserved, sub-delims and percent-encoded
/// octets; a port of at most five digits. No user info, path, query or
/// fragment.
pub fn is_authority(b: &[u8]) -> bool {
    let (host, port) = match b.first() {
        Some(b'[') => match b.iter().position(|c| *c == b']') {
            Some(end) => {
                let literal = std::str::from_utf8(&b[1..end]).ok();
                if !literal.is_some_and(|l| l.parse::<std::net::Ipv6Addr>().is_ok()) {
                    return false;
                }
                (&b[..=end], &b[end + 1..])
            }
            None => return false,
        },
        _ => match b.iter().position(|c| *c == b':') {
            Some(i) => (&b[..i], &b[i..]),
            None => (b, &b[b.len()..]),
        },
    };
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    port_ok && !host.is_empty() && (host[0] == b'[' || is_reg_name(host))
}

fn is_reg_name(b: &[u8]) -> bool {
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            let hex = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
            continue;
        }
        let unreserved = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~');
        let sub_delim = matches!(
            c,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
        );
        if !(unreserved || sub_delim) {
            return false;
        }
        i += 1;
    }
    true
}

/// Which `Host` the CMS receives.
#[derive(Debug, Clone, Default)]
pub struct HostRule {
    /// `upstream.host`: always this one.
    pub fixed: Option<HeaderValue>,
    /// The upstream URL's authority, for a request that named none.
    pub upstream: Option<HeaderValue>,
}

impl HostRule {
    /// The `Host` for a request that asked for `requested`.
    pub fn upstream_host(&self, requested: Option<&HeaderValue>) -> HeaderValue {
        self.fixed
            .as_ref()
            .or(requested)
            .or(self.upstream.as_ref())
            .cloned()
            .unwrap_or(HeaderValue::from_static("localhost"))
    }
}

#[cfg(test)]
mod tests {
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
}
