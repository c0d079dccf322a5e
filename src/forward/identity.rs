//! Identity headers: what the CMS learns about an authenticated request.
//!
//! Every incoming header in the identity namespace (default `x-auth-`) is
//! removed, whatever the decision, including spellings some upstream
//! frameworks fold into the same name (`x_auth_token_id`; CGI-style stacks
//! map `_` and `-` alike). Only then are the gateway's own headers added, so
//! a client can never supply or shadow one.
//!
//! The per-token header values are built per allowed request (a few small
//! copies) rather than kept for every cached token. Values are
//! printable ASCII: any other byte of a token name or email, and `%`
//! itself, is percent-encoded (UTF-8).
//!
//! With `identity.signing_key`, `x-auth-timestamp` and `x-auth-signature`
//! are added: hex HMAC-SHA256 over the canonical string
//! `METHOD \n PATH?QUERY \n TIMESTAMP \n name:value \n ...` where the
//! name:value lines are every other `x-auth-*` header the gateway set,
//! sorted by name. The CMS recomputes it to prove the request came through
//! the gateway (see the README's "Security model").

use hmac::{Hmac, Mac};
use http::header::HeaderName;
use sha2::Sha256;

use super::lines::{AddedHeaders, Span};
use crate::model::{Ownership, TokenRecord};

/// The gateway's identity header names under the configured prefix.
#[derive(Debug, Clone)]
pub struct IdentityNames {
    prefix: String,
    /// The prefix with `-` replaced by `_`, to catch underscore spellings.
    prefix_underscored: String,
    pub token_id: HeaderName,
    pub token_kind: HeaderName,
    pub token_name: HeaderName,
    pub token_type: HeaderName,
    pub owner_id: HeaderName,
    pub owner_email: HeaderName,
    pub action: HeaderName,
    pub timestamp: HeaderName,
    pub signature: HeaderName,
}

impl IdentityNames {
    /// The names under `prefix` (config checks it: lower-case letters,
    /// digits, `-`); an error when the prefix makes no header name.
    pub fn new(prefix: &str) -> Result<Self, http::header::InvalidHeaderName> {
        let name = |suffix: &str| HeaderName::from_bytes(format!("{prefix}{suffix}").as_bytes());
        Ok(Self {
            prefix: prefix.to_owned(),
            prefix_underscored: prefix.replace('-', "_"),
            token_id: name("token-id")?,
            token_kind: name("token-kind")?,
            token_name: name("token-name")?,
            token_type: name("token-type")?,
            owner_id: name("owner-id")?,
            owner_email: name("owner-email")?,
            action: name("action")?,
            timestamp: name("timestamp")?,
            signature: name("signature")?,
        })
    }

    /// Is this (lower-case) header name in the identity namespace? Every
    /// such header a client sends is removed (`forward::Forwarder::prepare`).
    pub fn is_identity(&self, name: &str) -> bool {
        let n = name.as_bytes();
        let p = self.prefix.as_bytes();
        n.len() >= p.len()
            && n[..p.len()]
                .iter()
                .zip(p)
                .all(|(a, b)| a == b || (*b == b'-' && *a == b'_'))
            || name.starts_with(&self.prefix_underscored)
    }

    /// Add the per-token headers of a record, and the action the route
    /// asked for. Written per request rather than kept in the cache: a few
    /// small copies cost far less than holding ready-made values for every
    /// cached token.
    /// Returns where the lines went, for the signer.
    pub fn write(
        &self,
        out: &mut AddedHeaders,
        r: &TokenRecord,
        action: Option<&str>,
    ) -> IdentityLines {
        let mut lines = IdentityLines::default();
        lines.add(out.push_decimal(&self.token_id, r.id));
        lines.add(out.push_with(&self.token_kind, |v| {
            v.extend_from_slice(r.kind.as_str().as_bytes())
        }));
        lines.add(out.push_with(&self.token_name, |v| percent_encode(&r.name, v)));
        if let Some(t) = r.token_type {
            lines.add(out.push_with(&self.token_type, |v| {
                v.extend_from_slice(t.as_str().as_bytes())
            }));
        }
        if let Ownership::Owner(o) = &r.ownership {
            lines.add(out.push_decimal(&self.owner_id, o.id));
            lines.add(out.push_with(&self.owner_email, |v| percent_encode(&o.email, v)));
        }
        if let Some(span) = action.and_then(|a| out.push(&self.action, a.as_bytes())) {
            lines.add(span);
        }
        lines
    }

    /// Every identity header name authgate can set (the per-token ones,
    /// the action, the timestamp and the signature).
    pub fn all(&self) -> [&HeaderName; 9] {
        [
            &self.token_id,
            &self.token_kind,
            &self.token_name,
            &self.token_type,
            &self.owner_id,
            &self.owner_email,
            &self.action,
            &self.timestamp,
            &self.signature,
        ]
    }
}

/// The identity lines one request got, as [`IdentityNames::write`] wrote
/// them: what the signer signs.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdentityLines {
    /// At most the seven per-token lines.
    spans: [Span; 7],
    n: usize,
}

impl IdentityLines {
    fn add(&mut self, s: Span) {
        if let Some(slot) = self.spans.get_mut(self.n) {
            *slot = s;
            self.n += 1;
        }
    }

    /// The (name, value) pairs, in the order written.
    pub fn pairs<'a>(&self, out: &'a AddedHeaders) -> impl Iterator<Item = (&'a str, &'a [u8])> {
        let spans = self.spans;
        (0..self.n).map(move |i| out.line(spans[i]))
    }
}

/// Percent-encode everything but printable ASCII (and `%` itself).
fn percent_encode(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        }
    }
}

/// Signs identity headers with `identity.signing_key`.
#[derive(Clone)]
pub struct Signer {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

impl Signer {
    pub fn new(key: &str) -> Self {
        Self {
            mac: crate::token::hmac_sha256(key.as_bytes()),
        }
    }

    /// The canonical string (see the module docs).
    pub fn canonical(
        method: &str,
        path_and_query: &str,
        timestamp: &str,
        identity: &[(&str, &[u8])],
    ) -> Vec<u8> {
        let mut lines: Vec<(&str, &[u8])> = identity.to_vec();
        lines.sort_by(|a, b| a.0.cmp(b.0));
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(method.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(path_and_query.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(timestamp.as_bytes());
        for (name, value) in lines {
            out.push(b'\n');
            out.extend_from_slice(name.as_bytes());
            out.push(b':');
            out.extend_from_slice(value);
        }
        out
    }

    /// Add the timestamp and signature headers over the identity lines
    /// the identity writer put in `added`.
    pub fn sign(
        &self,
        names: &IdentityNames,
        method: &str,
        path_and_query: &str,
        now_secs: u64,
        added: &mut AddedHeaders,
        identity: &IdentityLines,
    ) {
        let ts = now_secs.to_string();
        let pairs: Vec<(&str, &[u8])> = identity.pairs(added).collect();
        let canonical = Self::canonical(method, path_and_query, &ts, &pairs);
        let mut mac = self.mac.clone();
        mac.update(&canonical);
        let sig = hex::encode(mac.finalize().into_bytes());
        added.push(&names.timestamp, ts.as_bytes());
        added.push(&names.signature, sig.as_bytes());
    }
}

#[cfg(test)]
mod tests {
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
        let get =
            |h: &AddedHeaders, k: &str| h.get(k).map(|v| String::from_utf8(v.to_vec()).unwrap());
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
}
