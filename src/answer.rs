//! Answers the gateway gives itself: every refusal, in Strapi's envelope.
//!
//! A request can be refused for what authorization decided
//! ([`authz::Denial`]: credentials, expiry, owner, permissions, networks,
//! rate limits, a token store that cannot answer), for its own shape (a
//! target too long or not normal, a bad `Host`, a GraphQL body too large
//! to read), because a decision door could not tell what to judge or saw
//! what it cannot remove (`crate::decision`), or because the CMS could not
//! be reached ([`Refusal`] holds them all). This is the one place a
//! refusal becomes a response: status, Strapi's error name and message,
//! the envelope body (rendered once per refusal and shared), `x-request-id`
//! and, when rate limited, `Retry-After`. The proxy, the decision doors and
//! the management listener answer through it.

use std::sync::OnceLock;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::authz::Denial;
use crate::request_id::X_REQUEST_ID;

/// Why the gateway answered a request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Authorization said no.
    Denied(Denial),
    /// A path that cannot be normalised safely, or that readings disagree on.
    InvalidPath,
    /// A missing, repeated or malformed `Host` (RFC 9112 §3.2).
    InvalidHost,
    /// The request target is longer than `server.max_uri_bytes`.
    UriTooLong,
    /// A GraphQL body over the configured bound, for a token that needs it read.
    PayloadTooLarge,
    /// The CMS could not be reached, or answered something that is not HTTP.
    BadGateway,
    /// The CMS did not answer in time.
    GatewayTimeout,
    /// A decision door could not tell which request to judge: the front
    /// proxy named none, or named two that disagree (`crate::decision`).
    NoSingleReading,
    /// A decision door saw the client's own identity headers, which only
    /// the front proxy could remove (`crate::decision`).
    ForgedIdentity,
    /// A decision door saw a method- or route-overriding header
    /// (`X-HTTP-Method-Override`, `X-Rewrite-URL`, ...), which the proxy
    /// would remove and a door cannot (`crate::decision`).
    OverridingHeader,
}

impl From<Denial> for Refusal {
    fn from(d: Denial) -> Self {
        Refusal::Denied(d)
    }
}

impl Refusal {
    pub fn status(self) -> u16 {
        match self {
            Refusal::Denied(d) => d.status(),
            Refusal::InvalidPath
            | Refusal::InvalidHost
            | Refusal::NoSingleReading
            | Refusal::ForgedIdentity
            | Refusal::OverridingHeader => 400,
            Refusal::UriTooLong => 414,
            Refusal::PayloadTooLarge => 413,
            Refusal::BadGateway => 502,
            Refusal::GatewayTimeout => 504,
        }
    }

    /// Strapi's error class name.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::Denied(d) => d.name(),
            Refusal::InvalidPath
            | Refusal::InvalidHost
            | Refusal::NoSingleReading
            | Refusal::ForgedIdentity
            | Refusal::OverridingHeader => "ValidationError",
            Refusal::UriTooLong => "URITooLongError",
            Refusal::PayloadTooLarge => "PayloadTooLargeError",
            Refusal::BadGateway => "BadGatewayError",
            Refusal::GatewayTimeout => "GatewayTimeoutError",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::Denied(d) => d.message(),
            Refusal::InvalidPath => "Invalid request path",
            Refusal::InvalidHost => "Invalid Host header",
            Refusal::UriTooLong => "Request target too long",
            Refusal::PayloadTooLarge => "Request body too large to inspect",
            Refusal::BadGateway => "Upstream unavailable",
            Refusal::GatewayTimeout => "Upstream timed out",
            Refusal::NoSingleReading => "No single request to judge",
            Refusal::ForgedIdentity => "Identity headers are set by authgate only",
            Refusal::OverridingHeader => "Method- and route-overriding headers are not accepted",
        }
    }

    /// A bounded label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Denied(d) => d.label(),
            Refusal::InvalidPath => "invalid_path",
            Refusal::InvalidHost => "invalid_host",
            Refusal::UriTooLong => "uri_too_long",
            Refusal::PayloadTooLarge => "payload_too_large",
            Refusal::BadGateway => "bad_gateway",
            Refusal::GatewayTimeout => "gateway_timeout",
            Refusal::NoSingleReading => "no_single_reading",
            Refusal::ForgedIdentity => "forged_identity",
            Refusal::OverridingHeader => "overriding_header",
        }
    }

    /// Every refusal, for metrics families made ahead of time.
    pub fn all() -> impl Iterator<Item = Refusal> {
        Denial::ALL.into_iter().map(Refusal::Denied).chain([
            Refusal::InvalidPath,
            Refusal::InvalidHost,
            Refusal::UriTooLong,
            Refusal::PayloadTooLarge,
            Refusal::BadGateway,
            Refusal::GatewayTimeout,
            Refusal::NoSingleReading,
            Refusal::ForgedIdentity,
            Refusal::OverridingHeader,
        ])
    }

    /// How many refusals there are.
    pub const COUNT: usize = Denial::ALL.len() + 9;

    /// Its index in [`Refusal::all`] (no search: counted per request).
    pub fn index(self) -> usize {
        let n = Denial::ALL.len();
        match self {
            // `Denial::ALL` lists the denials in declaration order.
            Refusal::Denied(d) => d as usize,
            Refusal::InvalidPath => n,
            Refusal::InvalidHost => n + 1,
            Refusal::UriTooLong => n + 2,
            Refusal::PayloadTooLarge => n + 3,
            Refusal::BadGateway => n + 4,
            Refusal::GatewayTimeout => n + 5,
            Refusal::NoSingleReading => n + 6,
            Refusal::ForgedIdentity => n + 7,
            Refusal::OverridingHeader => n + 8,
        }
    }

    /// The Strapi error envelope, rendered once per refusal.
    pub fn body(self) -> Bytes {
        static BODIES: OnceLock<Vec<Bytes>> = OnceLock::new();
        let bodies = BODIES.get_or_init(|| {
            Refusal::all()
                .map(|r| Bytes::from(crate::envelope::render(r.status(), r.name(), r.message())))
                .collect()
        });
        bodies.get(self.index()).cloned().unwrap_or_default()
    }
}

/// The one place a refusal becomes a response.
pub fn response(
    refusal: Refusal,
    request_id: &HeaderValue,
    retry_after: Option<u64>,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(refusal.body()));
    *resp.status_mut() =
        StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h.insert(X_REQUEST_ID, request_id.clone());
    if let Some(secs) = retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_envelope_response() {
        let r = response(
            Refusal::Denied(Denial::RateLimited),
            &HeaderValue::from_static("r"),
            Some(3),
        );
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()[header::RETRY_AFTER], "3");
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/json; charset=utf-8"
        );
    }

    #[test]
    fn the_gateways_own_envelopes() {
        let rows = [
            (
                Refusal::InvalidPath,
                400,
                "ValidationError",
                "Invalid request path",
            ),
            (
                Refusal::InvalidHost,
                400,
                "ValidationError",
                "Invalid Host header",
            ),
            (
                Refusal::UriTooLong,
                414,
                "URITooLongError",
                "Request target too long",
            ),
            (
                Refusal::PayloadTooLarge,
                413,
                "PayloadTooLargeError",
                "Request body too large to inspect",
            ),
            (
                Refusal::BadGateway,
                502,
                "BadGatewayError",
                "Upstream unavailable",
            ),
            (
                Refusal::GatewayTimeout,
                504,
                "GatewayTimeoutError",
                "Upstream timed out",
            ),
        ];
        for (r, status, name, message) in rows {
            let v: serde_json::Value = serde_json::from_slice(&r.body()).unwrap();
            assert_eq!(v["data"], serde_json::Value::Null);
            assert_eq!(v["error"]["status"], status);
            assert_eq!(v["error"]["name"], name);
            assert_eq!(v["error"]["message"], message);
        }
    }

    #[test]
    fn every_refusal_has_its_own_body_and_label() {
        let all: Vec<Refusal> = Refusal::all().collect();
        assert_eq!(all.len(), Refusal::COUNT);
        for (i, r) in all.iter().enumerate() {
            assert_eq!(r.index(), i);
            let v: serde_json::Value = serde_json::from_slice(&r.body()).unwrap();
            assert_eq!(v["error"]["status"], r.status());
            assert_eq!(v["error"]["name"], r.name());
            assert_eq!(v["error"]["message"], r.message());
        }
        let labels: std::collections::HashSet<&str> = all.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), all.len());
    }
}
