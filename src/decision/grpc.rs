//! The gRPC door: Envoy's ext_authz `grpc_service`
//! (`envoy.service.auth.v3.Authorization/Check`), answered with the gate's
//! one judgement, as the HTTP doors answer.
//!
//! ```text
//! CheckRequest ─► attributes.request.http ─► reading::grpc ─┐
//!                 attributes.source.address ─► the client   ├─► decision::judge ─► Response
//!                 .http.headers | .header_map, .body | .raw_body ┘        │
//!                                                  CheckResponse ◄─ answer ◄┘
//! ```
//!
//! **The messages** ([`pb`]) are prost-derived and hand-written: only the
//! fields `Check` reads or writes, with the upstream field numbers
//! (`envoy/service/auth/v3/{external_auth,attribute_context}.proto`,
//! `envoy/config/core/v3/{base,address}.proto`,
//! `envoy/type/v3/http_status.proto`, `google/rpc/status.proto`); every
//! other field is skipped on decode, as protobuf skips unknown fields. The
//! request's strings that carry what a client sent (header values, the
//! path, the body) are read as `bytes`, which is the same wire type: Envoy
//! does not promise UTF-8 there, and a prost `String` would refuse the
//! whole message. `tests/fixtures/grpc/*.hex`, written by Envoy's own
//! compiled protos (`tests/grpc/check.py`), pin the encoding.
//!
//! **What is judged** is what the HTTP doors judge: `method`, `path` (the
//! request line's target, with its query), `host`, the headers (`headers`,
//! or `header_map` when Envoy's `encode_raw_headers` sends that instead;
//! both at once is refused, pseudo-headers are skipped), and the body when
//! `with_request_body` sent one (`raw_body`, else `body`; a body Envoy cut
//! short, `x-envoy-auth-partial-body: true`, counts as none). The client is
//! `attributes.source.address` (Envoy's downstream address); when that is
//! one of `server.trusted_proxies`, the rightmost untrusted
//! `X-Forwarded-For` entry; without one, as the HTTP doors find it.
//!
//! **The answer.** Allow: `status.code` 0 and `ok_response` with the
//! identity headers the proxy would forward (the `x-auth-*` lines, signed
//! when signing is on, and `x-request-id`), each
//! `OVERWRITE_IF_EXISTS_OR_ADD`, so a client's copy of a name authgate sets
//! is replaced. Deny: `denied_response` with the proxy's status, headers
//! (`content-type`, `retry-after`, `x-request-id`) and Strapi envelope, and
//! the `status.code` of [`code`] (401 → `UNAUTHENTICATED`, 403 →
//! `PERMISSION_DENIED`, 429 → `RESOURCE_EXHAUSTED`, 503 → `UNAVAILABLE`,
//! 400/413/414 → `INVALID_ARGUMENT`).
//!
//! **What the client may not send.** Unlike the HTTP doors, this door can
//! have Envoy remove request headers (`ok_response.headers_to_remove`), so
//! a client's own identity header (`x-auth-*`, any spelling) or method and
//! route override (`X-HTTP-Method-Override`, ...) is removed, as the proxy
//! removes it, rather than refused with 400. `headers_to_remove` names
//! every identity name authgate can set that this answer leaves unset, and
//! the client's own such headers, but never a name `headers` sets: Envoy
//! applies `headers` first and `headers_to_remove` after them, so naming a
//! set header there would remove authgate's own value. The two lists are
//! disjoint, and the outcome does not depend on their order.
//!
//! **Failures.** A call that is not a readable `CheckRequest` fails at the
//! gRPC level (`INVALID_ARGUMENT`; compressed: `UNIMPLEMENTED`; too large:
//! `RESOURCE_EXHAUSTED`), which Envoy answers with `status_on_error` (403)
//! unless `failure_mode_allow` is set — keep it unset. A `CheckRequest`
//! that names no request it can judge is denied (400) like the HTTP doors'
//! calls, and so is a caller outside `decision.trusted_callers` (403,
//! `PERMISSION_DENIED`), in a `CheckResponse`: a denial, not a failure.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use futures_util::FutureExt;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH};
use http::{Method, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use prost::Message;

use super::answer::X_AUTHGATE_ENVELOPE;
use super::grpc_wire::{Code, GrpcReply, CHECK_PATH};
use super::reading::{self, Reading, ReadingError};
use super::{judge, removed_at_doors, Asked, Caller, PARTIAL_BODY};
use crate::answer::Refusal;
use crate::gate::{Body, Door, Gate};

/// The messages of `Check`: only the fields it needs, upstream's numbers.
pub mod pb {
    use std::collections::BTreeMap;

    /// `envoy.service.auth.v3.CheckRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CheckRequest {
        #[prost(message, optional, tag = "1")]
        pub attributes: Option<AttributeContext>,
    }

    /// `envoy.service.auth.v3.AttributeContext`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AttributeContext {
        #[prost(message, optional, tag = "1")]
        pub source: Option<Peer>,
        #[prost(message, optional, tag = "4")]
        pub request: Option<Request>,
    }

    /// `AttributeContext.Peer`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Peer {
        #[prost(message, optional, tag = "1")]
        pub address: Option<Address>,
    }

    /// `envoy.config.core.v3.Address` (of its `oneof`, only `socket_address`).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Address {
        #[prost(message, optional, tag = "1")]
        pub socket_address: Option<SocketAddress>,
    }

    /// `envoy.config.core.v3.SocketAddress`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SocketAddress {
        #[prost(string, tag = "2")]
        pub address: String,
        #[prost(uint32, tag = "3")]
        pub port_value: u32,
    }

    /// `AttributeContext.Request`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Request {
        #[prost(message, optional, tag = "2")]
        pub http: Option<HttpRequest>,
    }

    /// `AttributeContext.HttpRequest`. `headers` is `map<string, string>`
    /// and `path`/`body` are `string` upstream; read as bytes (the same
    /// wire type). A `BTreeMap` encodes in key order, as protobuf's
    /// deterministic serialisation does.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HttpRequest {
        #[prost(string, tag = "2")]
        pub method: String,
        #[prost(btree_map = "string, bytes", tag = "3")]
        pub headers: BTreeMap<String, Vec<u8>>,
        #[prost(bytes = "vec", tag = "4")]
        pub path: Vec<u8>,
        #[prost(string, tag = "5")]
        pub host: String,
        #[prost(bytes = "bytes", tag = "11")]
        pub body: bytes::Bytes,
        #[prost(bytes = "bytes", tag = "12")]
        pub raw_body: bytes::Bytes,
        #[prost(message, optional, tag = "13")]
        pub header_map: Option<HeaderMap>,
    }

    /// `envoy.config.core.v3.HeaderMap`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HeaderMap {
        #[prost(message, repeated, tag = "1")]
        pub headers: Vec<HeaderValue>,
    }

    /// `envoy.config.core.v3.HeaderValue` (`value` is `string` upstream).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HeaderValue {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
        #[prost(bytes = "vec", tag = "3")]
        pub raw_value: Vec<u8>,
    }

    /// `envoy.config.core.v3.HeaderValueOption`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HeaderValueOption {
        #[prost(message, optional, tag = "1")]
        pub header: Option<HeaderValue>,
        /// `HeaderAppendAction`.
        #[prost(int32, tag = "3")]
        pub append_action: i32,
    }

    /// `HeaderValueOption.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD`.
    pub const OVERWRITE_IF_EXISTS_OR_ADD: i32 = 2;

    /// `envoy.service.auth.v3.CheckResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CheckResponse {
        #[prost(message, optional, tag = "1")]
        pub status: Option<Status>,
        #[prost(message, optional, tag = "2")]
        pub denied_response: Option<DeniedHttpResponse>,
        #[prost(message, optional, tag = "3")]
        pub ok_response: Option<OkHttpResponse>,
    }

    /// `google.rpc.Status`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Status {
        #[prost(int32, tag = "1")]
        pub code: i32,
        #[prost(string, tag = "2")]
        pub message: String,
    }

    /// `envoy.service.auth.v3.DeniedHttpResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DeniedHttpResponse {
        #[prost(message, optional, tag = "1")]
        pub status: Option<HttpStatus>,
        #[prost(message, repeated, tag = "2")]
        pub headers: Vec<HeaderValueOption>,
        #[prost(string, tag = "3")]
        pub body: String,
    }

    /// `envoy.type.v3.HttpStatus` (`code` is the `StatusCode` enum).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HttpStatus {
        #[prost(int32, tag = "1")]
        pub code: i32,
    }

    /// `envoy.service.auth.v3.OkHttpResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct OkHttpResponse {
        #[prost(message, repeated, tag = "2")]
        pub headers: Vec<HeaderValueOption>,
        #[prost(string, repeated, tag = "5")]
        pub headers_to_remove: Vec<String>,
    }
}

/// `Check`: one encoded `CheckRequest` in, one `CheckResponse` (or a gRPC
/// failure, when it is not one) out.
pub async fn check(gate: &Gate, caller: &Caller, request: Bytes) -> GrpcReply {
    let request = match pb::CheckRequest::decode(request) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "decision: not a CheckRequest");
            return GrpcReply::status(
                Code::InvalidArgument,
                "not an envoy.service.auth.v3.CheckRequest",
            );
        }
    };
    let named = Named::from(request);
    let headers = named.headers.unwrap_or_default();
    let client = match named.source {
        Some(ip) => gate
            .forwarder()
            .proxies()
            .client_ip(&headers, SocketAddr::new(ip, 0)),
        None => gate
            .forwarder()
            .proxies()
            .client_in_chain(&headers, caller.peer.addr.ip()),
    };
    let asked = Asked {
        door: Door::ExtAuthzGrpc,
        reading: named.reading,
        headers: &headers,
        client,
        body: named.body,
        removes: true,
    };
    let resp = judge(gate, asked, caller).await;
    let removed: Vec<&str> = removed_at_doors(gate.forwarder().names(), &headers).collect();
    answer(resp, &removed)
}

/// What a `CheckRequest` names.
struct Named {
    reading: Result<Reading, (Reading, Refusal)>,
    /// The request's headers (none when they cannot be read: then
    /// `reading` is the refusal).
    headers: Option<HeaderMap>,
    source: Option<IpAddr>,
    body: Body<'static>,
}

impl From<pb::CheckRequest> for Named {
    fn from(r: pb::CheckRequest) -> Self {
        let attributes = r.attributes.unwrap_or_default();
        let source = attributes
            .source
            .and_then(|p| p.address)
            .and_then(|a| a.socket_address)
            .and_then(|s| s.address.parse().ok());
        let http = attributes.request.and_then(|r| r.http);
        let named = http.is_some();
        let http = http.unwrap_or_default();
        let headers = headers(&http);
        let reading = match &headers {
            _ if !named => Err(ReadingError::None),
            Ok(_) => reading::grpc(http.method.as_bytes(), &http.path, http.host.as_bytes()),
            Err(e) => Err(*e),
        }
        .map_err(|e| {
            tracing::debug!(error = %e, "decision: no single request to judge");
            let call = Reading {
                method: Method::POST,
                uri: Uri::from_static(CHECK_PATH),
            };
            (call, e.refusal())
        });
        let headers = headers.ok();
        let partial = headers.as_ref().is_some_and(|h| {
            h.get(PARTIAL_BODY)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"))
        });
        let sent = match http.raw_body.is_empty() {
            true => http.body,
            false => http.raw_body,
        };
        let body = match partial || sent.is_empty() {
            true => Body::Absent,
            false => Body::Buffered(sent),
        };
        Named {
            reading,
            headers,
            source,
            body,
        }
    }
}

/// The request's headers, from `headers` or `header_map` (`raw_value`,
/// else `value`); pseudo-headers skipped.
fn headers(http: &pb::HttpRequest) -> Result<HeaderMap, ReadingError> {
    let raw = http.header_map.as_ref().map_or(&[][..], |m| &m.headers[..]);
    if !raw.is_empty() && !http.headers.is_empty() {
        return Err(ReadingError::Header);
    }
    let merged = http.headers.iter().map(|(k, v)| (k.as_str(), &v[..]));
    let raw = raw.iter().map(|h| {
        let v = match h.raw_value.is_empty() {
            true => &h.value[..],
            false => &h.raw_value[..],
        };
        (h.key.as_str(), v)
    });
    let mut out = HeaderMap::new();
    for (k, v) in merged.chain(raw) {
        if k.starts_with(':') {
            continue;
        }
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| ReadingError::Header)?;
        let value = HeaderValue::from_bytes(v).map_err(|_| ReadingError::Header)?;
        out.append(name, value);
    }
    Ok(out)
}

/// The gRPC status of a denial with this HTTP status.
pub fn code(status: StatusCode) -> Code {
    match status.as_u16() {
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        429 => Code::ResourceExhausted,
        500 => Code::Internal,
        400..=499 => Code::InvalidArgument,
        _ => Code::Unavailable,
    }
}

/// The `CheckResponse` for an HTTP door's answer (see the module docs);
/// `removed`: the client's headers the proxy would remove.
pub fn answer(resp: Response<Full<Bytes>>, removed: &[&str]) -> GrpcReply {
    GrpcReply::ok(Bytes::from(check_response(resp, removed).encode_to_vec()))
}

/// [`answer`]'s message.
pub fn check_response(resp: Response<Full<Bytes>>, removed: &[&str]) -> pb::CheckResponse {
    let (parts, body) = resp.into_parts();
    let body = match body.collect().now_or_never() {
        Some(Ok(c)) => c.to_bytes(),
        Some(Err(never)) => match never {},
        None => Bytes::new(),
    };
    // Name order: one answer, one encoding.
    let lines: BTreeMap<&str, &HeaderValue> = parts
        .headers
        .iter()
        .filter(|(k, _)| **k != X_AUTHGATE_ENVELOPE && **k != CONTENT_LENGTH)
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let option = |(k, v): (&&str, &&HeaderValue)| pb::HeaderValueOption {
        header: Some(pb::HeaderValue {
            key: (*k).to_owned(),
            value: v.as_bytes().to_vec(),
            raw_value: Vec::new(),
        }),
        append_action: pb::OVERWRITE_IF_EXISTS_OR_ADD,
    };
    if parts.status == StatusCode::OK {
        let set = lines.iter().filter(|(_, v)| !v.is_empty());
        let unset = lines.iter().filter(|(_, v)| v.is_empty()).map(|(k, _)| *k);
        let mut remove: Vec<String> = unset
            .chain(removed.iter().copied())
            .filter(|k| lines.get(k).map_or(true, |v| v.is_empty()))
            .map(str::to_owned)
            .collect();
        remove.sort_unstable();
        remove.dedup();
        return pb::CheckResponse {
            status: Some(pb::Status::default()),
            denied_response: None,
            ok_response: Some(pb::OkHttpResponse {
                headers: set.map(option).collect(),
                headers_to_remove: remove,
            }),
        };
    }
    pb::CheckResponse {
        status: Some(pb::Status {
            code: code(parts.status) as i32,
            message: String::new(),
        }),
        denied_response: Some(pb::DeniedHttpResponse {
            status: Some(pb::HttpStatus {
                code: i32::from(parts.status.as_u16()),
            }),
            headers: lines.iter().map(option).collect(),
            body: String::from_utf8_lossy(&body).into_owned(),
        }),
        ok_response: None,
    }
}

#[cfg(test)]
mod tests;
