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
mod tests;
