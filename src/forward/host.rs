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
mod tests;
