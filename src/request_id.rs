//! Request ids: the client's when it is sane, else a fresh one.
//!
//! Every answer carries `x-request-id`, and the CMS receives the same id,
//! so one request can be followed through authgate's log, the CMS's and
//! the audit trail. A client's id is taken only when it is short and
//! plain (letters, digits, `-_.:`); otherwise, and when there is none, the
//! id is `<12 hex digits random per process>-<counter in hex>`, made
//! without a clock read or a lock. The proxy takes the client's id; the
//! management listener always makes its own ([`RequestIds::fresh`]), since
//! that id is what the audit trail records, and keeps a sane client id only
//! apart, as the client's.

use std::sync::atomic::{AtomicU64, Ordering};

use http::header::{HeaderMap, HeaderName, HeaderValue};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The source of request ids of one listener.
pub struct RequestIds {
    /// 12 hex digits, random per process.
    prefix: [u8; 12],
    next: AtomicU64,
}

impl Default for RequestIds {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestIds {
    pub fn new() -> Self {
        let mut seed = [0u8; 6];
        // A weak prefix only costs uniqueness across restarts, not safety.
        let _ = getrandom::fill(&mut seed);
        let mut prefix = [0u8; 12];
        let _ = hex::encode_to_slice(seed, &mut prefix);
        Self {
            prefix,
            next: AtomicU64::new(1),
        }
    }

    /// The client's id when it is sane, else a fresh one.
    pub fn take(&self, h: &HeaderMap) -> HeaderValue {
        match h.get(X_REQUEST_ID) {
            Some(v) if is_sane(v.as_bytes()) => v.clone(),
            _ => self.fresh(),
        }
    }

    /// A new id, whatever the client sent.
    pub fn fresh(&self) -> HeaderValue {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // `prefix-hex(n)`, written in place: one allocation (the value's own).
        let mut buf = [0u8; 12 + 1 + 16];
        buf[..12].copy_from_slice(&self.prefix);
        buf[12] = b'-';
        let digits = (64 - n.leading_zeros()).div_ceil(4).max(1) as usize;
        for (i, slot) in buf[13..13 + digits].iter_mut().enumerate() {
            let shift = 4 * (digits - 1 - i);
            *slot = b"0123456789abcdef"[((n >> shift) & 0xf) as usize];
        }
        HeaderValue::from_bytes(&buf[..13 + digits]).unwrap_or(HeaderValue::from_static("-"))
    }
}

/// A client's id worth keeping: 1 to 128 of letters, digits and `-_.:`.
pub fn is_sane(b: &[u8]) -> bool {
    !b.is_empty()
        && b.len() <= 128
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        let ids = RequestIds::new();
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(ids.take(&h), "abc-123");
        h.insert(X_REQUEST_ID, HeaderValue::from_static("bad value!"));
        let fresh = ids.take(&h);
        assert_ne!(fresh, "bad value!");
        assert_ne!(ids.take(&HeaderMap::new()), fresh);
        // `prefix-n` in hex, n counting from 1.
        let ids = RequestIds::new();
        let prefix = String::from_utf8(ids.prefix.to_vec()).unwrap();
        for n in [1u64, 2, 15, 16, 255, 4096] {
            ids.next.store(n, Ordering::Relaxed);
            assert_eq!(
                ids.take(&HeaderMap::new()),
                format!("{prefix}-{n:x}").as_str()
            );
        }
        ids.next.store(u64::MAX, Ordering::Relaxed);
        assert_eq!(
            ids.take(&HeaderMap::new()),
            format!("{prefix}-ffffffffffffffff").as_str()
        );
    }
}
