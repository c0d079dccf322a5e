//! The answers a decision door gives a front proxy over HTTP.
//!
//! * **Allow**: `200`, no body, and as response headers the identity the
//!   proxy door would have forwarded (`forward::Forwarder::write_identity`:
//!   the `x-auth-*` lines, signed when `identity.signing_key` is set, over
//!   the target the front proxy forwards), and `x-request-id`. Every
//!   identity header name authgate can set is present, empty when it does
//!   not apply (an anonymous request, a content-API token's owner): a front
//!   proxy told to copy a header the answer lacks may invent a value for it
//!   (Caddy 2.6's `copy_headers` copies its own unexpanded placeholder), and
//!   copying an empty one overwrites whatever the client sent.
//! * **Deny**: the proxy's refusal as it is (status, Strapi envelope,
//!   `Retry-After`, `x-request-id`), plus the envelope once more in
//!   `x-authgate-envelope`, for nginx, whose `auth_request` keeps only the
//!   status (`docs/front-doors.md` shows the `error_page` that answers with
//!   it).

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::Full;

use crate::answer::{self, Refusal};
use crate::forward::{AddedHeaders, Allowed, Forwarder};
use crate::request_id::X_REQUEST_ID;

/// The deny answer's copy of the envelope, for nginx's `error_page`.
pub const X_AUTHGATE_ENVELOPE: HeaderName = HeaderName::from_static("x-authgate-envelope");

/// Allow, with the identity (when a token allowed the request) for the
/// front proxy to copy upstream. `path_and_query`: the target it forwards.
pub fn allow(
    forwarder: &Forwarder,
    method: &Method,
    path_and_query: &str,
    allowed: Option<Allowed<'_>>,
    request_id: &HeaderValue,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    if let Some(a) = allowed {
        let mut lines = AddedHeaders::new();
        forwarder.write_identity(&mut lines, method, path_and_query, a);
        lines.to_header_map(h);
    }
    for name in forwarder.names().all() {
        if !h.contains_key(name) {
            h.insert(name.clone(), HeaderValue::from_static(""));
        }
    }
    h.insert(X_REQUEST_ID, request_id.clone());
    resp
}

/// Deny, as the proxy would.
pub fn deny(
    refusal: Refusal,
    retry_after: Option<u64>,
    request_id: &HeaderValue,
) -> Response<Full<Bytes>> {
    let mut resp = answer::response(refusal, request_id, retry_after);
    if let Ok(v) = HeaderValue::from_maybe_shared(refusal.body()) {
        resp.headers_mut().insert(X_AUTHGATE_ENVELOPE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::Denial;
    use crate::forward::{Forwarding, IdentityNames, Signer};
    use crate::model::{ContentApiType, TokenRecord};

    fn forwarder(signing: bool) -> Forwarder {
        Forwarder::new(
            IdentityNames::new("x-auth-").unwrap(),
            signing.then(|| Signer::new("k")),
            true,
            &Forwarding::default(),
            None,
        )
    }

    #[test]
    fn every_identity_name_is_present() {
        let rid = HeaderValue::from_static("rid-1");
        let anonymous = allow(&forwarder(true), &Method::GET, "/api/a", None, &rid);
        assert_eq!(anonymous.status(), 200);
        let h = anonymous.headers();
        for name in forwarder(true).names().all() {
            assert_eq!(
                h.get(name).map(HeaderValue::as_bytes),
                Some(&b""[..]),
                "{name}"
            );
        }
        assert_eq!(h[X_REQUEST_ID], "rid-1");

        let r = TokenRecord::content_api(7, "ci", ContentApiType::ReadOnly);
        let a = Allowed {
            record: &r,
            action: Some("api::a.a.find"),
        };
        let allowed = allow(&forwarder(true), &Method::GET, "/api/a?x", Some(a), &rid);
        let h = allowed.headers();
        assert_eq!(h["x-auth-token-id"], "7");
        assert_eq!(h["x-auth-token-type"], "read-only");
        assert_eq!(h["x-auth-action"], "api::a.a.find");
        assert_eq!(h["x-auth-owner-id"], "");
        assert_eq!(h["x-auth-signature"].len(), 64);
        assert_eq!(h.get_all("x-auth-token-id").iter().count(), 1);

        let unsigned = allow(&forwarder(false), &Method::GET, "/api/a", Some(a), &rid);
        assert_eq!(unsigned.headers()["x-auth-signature"], "");
        assert_eq!(unsigned.headers()["x-auth-timestamp"], "");
    }

    #[test]
    fn deny_is_the_proxys_refusal_with_the_envelope_twice() {
        let rid = HeaderValue::from_static("rid-2");
        let r = deny(Refusal::Denied(Denial::RateLimited), Some(2), &rid);
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "2");
        assert_eq!(r.headers()[X_REQUEST_ID], "rid-2");
        let body = Refusal::Denied(Denial::RateLimited).body();
        assert_eq!(r.headers()[X_AUTHGATE_ENVELOPE].as_bytes(), &body[..]);
    }
}
