//! authgate's own cookies never leave authgate.
//!
//! The management page signs in with cookies (`authgate_session`,
//! `authgate_login`). Cookies are scoped by host, not port (RFC 6265
//! §8.5), so a browser that signed in on the management port sends them to
//! the proxy port too, and the proxy would hand the session to the CMS.
//! So on the proxy path every cookie whose name is authgate's (with or
//! without the `__Host-` or `__Secure-` prefix) is cut out of `Cookie`;
//! the others pass unchanged, in order.

/// The prefix of every cookie authgate sets.
pub const OWN_PREFIX: &[u8] = b"authgate_";

/// Is this cookie name one of authgate's?
pub fn is_own(name: &[u8]) -> bool {
    let name = name
        .strip_prefix(b"__Host-")
        .or_else(|| name.strip_prefix(b"__Secure-"))
        .unwrap_or(name);
    name.starts_with(OWN_PREFIX)
}

/// Does a `Cookie` value perhaps carry one of authgate's cookies? Cheap:
/// most values do not hold the prefix at all.
pub fn may_hold_own(value: &[u8]) -> bool {
    value.windows(OWN_PREFIX.len()).any(|w| w == OWN_PREFIX)
}

/// The `Cookie` value without authgate's cookies (`;`-separated pairs,
/// RFC 6265 §5.4), or `None` when nothing else is left.
pub fn without_own(value: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(value.len());
    for pair in value.split(|b| *b == b';') {
        let pair = pair.trim_ascii();
        if pair.is_empty() {
            continue;
        }
        let name = pair.split(|b| *b == b'=').next().unwrap_or_default();
        if is_own(name.trim_ascii()) {
            continue;
        }
        if !out.is_empty() {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(pair);
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cookies_are_cut_out() {
        let rows: &[(&[u8], Option<&[u8]>)] = &[
            (b"a=1; authgate_session=abc; b=2", Some(b"a=1; b=2")),
            (b"authgate_session=abc", None),
            (b"__Host-authgate_session=abc;authgate_login=x", None),
            (b"__Secure-authgate_session=abc; c=3", Some(b"c=3")),
            (b"a=authgate_session; b=2", Some(b"a=authgate_session; b=2")),
            (b"xauthgate_session=1", Some(b"xauthgate_session=1")),
            (b" a=1 ;; b=2 ", Some(b"a=1; b=2")),
        ];
        for (value, want) in rows {
            assert!(may_hold_own(value) || want.is_some());
            assert_eq!(
                without_own(value).as_deref(),
                *want,
                "{}",
                String::from_utf8_lossy(value)
            );
        }
        assert!(!may_hold_own(b"a=1; b=2"));
    }
}
