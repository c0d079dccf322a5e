//! Which request a decision door judges, read from what the front proxy
//! sends.
//!
//! | door | method | target | `Host` |
//! | --- | --- | --- | --- |
//! | `/forward-auth` (Traefik, Caddy, APISIX) | `X-Forwarded-Method` | `X-Forwarded-Uri` | `X-Forwarded-Host` |
//! | `/forward-auth` (nginx `auth_request`) | `X-Original-Method` | `X-Original-URI`, or `X-Original-URL` (absolute: its authority is the host) | `X-Forwarded-Host`, the URL's authority |
//! | `/ext-authz/<target>` (Envoy `http_service`) | the call's | the call's path after `/ext-authz`, with its query | the call's |
//! | gRPC `Check` (Envoy `grpc_service`) | `attributes.request.http.method` | `.path` (with its query) | `.host` |
//!
//! A request has one reading or none: each named header at most once; a
//! set (method and target) complete or absent; when both sets are there,
//! the same method and the same target, byte for byte; a host named twice
//! the same. Anything else is [`ReadingError`], answered 400, so the front
//! proxy refuses the request rather than forward what authgate did not
//! judge. The target is kept as reported: the gate judges it under every
//! reading of the raw path, as it judges the proxy's request line, and it
//! is what the front proxy forwards (and what a signature covers).
//!
//! With no forwarded host, the call's own authority stands in: the
//! decision does not depend on it, but it is validated like any `Host`.

use http::header::{HeaderMap, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Uri};

use crate::answer::Refusal;
use crate::forward::host;

const X_FORWARDED_METHOD: &str = "x-forwarded-method";
const X_FORWARDED_URI: &str = "x-forwarded-uri";
const X_FORWARDED_HOST: &str = "x-forwarded-host";
const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
const X_ORIGINAL_METHOD: &str = "x-original-method";
const X_ORIGINAL_URI: &str = "x-original-uri";
const X_ORIGINAL_URL: &str = "x-original-url";

/// The prefix of the Envoy HTTP door: `/ext-authz` + the client's target.
pub const EXT_AUTHZ_PREFIX: &str = "/ext-authz";

/// The request a door judges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub method: Method,
    /// The target as reported, in absolute form with the requested host.
    pub uri: Uri,
}

impl Reading {
    /// The target as reported (what the front proxy forwards).
    pub fn path_and_query(&self) -> &str {
        self.uri.path_and_query().map_or("/", PathAndQuery::as_str)
    }
}

/// Why a door cannot tell which request to judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReadingError {
    #[error("neither X-Forwarded-Method/-Uri nor X-Original-Method/-URI was sent")]
    None,
    #[error("{0} was sent more than once")]
    Repeated(&'static str),
    #[error("{0} was sent without its method or target")]
    Incomplete(&'static str),
    #[error("the forwarded headers name different requests")]
    Disagree,
    #[error("the method is not a method")]
    Method,
    #[error("the target is not an origin-form path (or an absolute URL where one is allowed)")]
    Target,
    #[error("the host is not an authority (host[:port])")]
    Host,
    #[error(
        "a header is not an HTTP header, or the headers are sent twice (headers and header_map)"
    )]
    Header,
}

impl ReadingError {
    /// The refusal the door answers with.
    pub fn refusal(self) -> Refusal {
        match self {
            ReadingError::Target => Refusal::InvalidPath,
            ReadingError::Host => Refusal::InvalidHost,
            _ => Refusal::NoSingleReading,
        }
    }
}

/// The one value of `name`, if any; twice is an error.
fn one<'h>(h: &'h HeaderMap, name: &'static str) -> Result<Option<&'h HeaderValue>, ReadingError> {
    let mut all = h.get_all(name).iter();
    match (all.next(), all.next()) {
        (_, Some(_)) => Err(ReadingError::Repeated(name)),
        (v, None) => Ok(v),
    }
}

/// An origin-form target: `/`, then what a request line may carry (no
/// fragment: a client never sends one, and a reader would cut it off).
fn origin(v: &[u8]) -> Result<PathAndQuery, ReadingError> {
    if v.first() != Some(&b'/') || v.contains(&b'#') {
        return Err(ReadingError::Target);
    }
    PathAndQuery::try_from(v).map_err(|_| ReadingError::Target)
}

/// A validated authority, as `forward::host` checks a `Host`.
fn authority(v: &[u8]) -> Result<Authority, ReadingError> {
    if !host::is_authority(v) {
        return Err(ReadingError::Host);
    }
    Authority::try_from(v).map_err(|_| ReadingError::Host)
}

fn method(v: &HeaderValue) -> Result<Method, ReadingError> {
    Method::from_bytes(v.as_bytes()).map_err(|_| ReadingError::Method)
}

/// One set's request: method, target and, from an absolute URL, host.
struct Named {
    method: Method,
    target: PathAndQuery,
    host: Option<Authority>,
}

/// `X-Forwarded-Method` + `X-Forwarded-Uri`.
fn forwarded_set(h: &HeaderMap) -> Result<Option<Named>, ReadingError> {
    match (one(h, X_FORWARDED_METHOD)?, one(h, X_FORWARDED_URI)?) {
        (None, None) => Ok(None),
        (Some(m), Some(u)) => Ok(Some(Named {
            method: method(m)?,
            target: origin(u.as_bytes())?,
            host: None,
        })),
        _ => Err(ReadingError::Incomplete("X-Forwarded-Method/-Uri")),
    }
}

/// `X-Original-Method` + `X-Original-URI` and/or `X-Original-URL`.
fn original_set(h: &HeaderMap) -> Result<Option<Named>, ReadingError> {
    let uri = one(h, X_ORIGINAL_URI)?
        .map(|u| origin(u.as_bytes()))
        .transpose()?;
    let url = one(h, X_ORIGINAL_URL)?.map(original_url).transpose()?;
    let (target, host) = match (uri, url) {
        (None, None) => (None, None),
        (Some(t), None) => (Some(t), None),
        (None, Some((t, host))) => (Some(t), host),
        (Some(a), Some((b, host))) if a == b => (Some(a), host),
        (Some(_), Some(_)) => return Err(ReadingError::Disagree),
    };
    match (one(h, X_ORIGINAL_METHOD)?, target) {
        (None, None) => Ok(None),
        (Some(m), Some(target)) => Ok(Some(Named {
            method: method(m)?,
            target,
            host,
        })),
        _ => Err(ReadingError::Incomplete("X-Original-Method/-URI/-URL")),
    }
}

/// `X-Original-URL`: origin form, or absolute (`http(s)://authority/...`),
/// whose authority is the host.
fn original_url(v: &HeaderValue) -> Result<(PathAndQuery, Option<Authority>), ReadingError> {
    let b = v.as_bytes();
    if b.first() == Some(&b'/') {
        return Ok((origin(b)?, None));
    }
    let rest = [&b"http://"[..], b"https://"]
        .into_iter()
        .find_map(|s| {
            b.get(..s.len())
                .filter(|p| p.eq_ignore_ascii_case(s))
                .map(|_| &b[s.len()..])
        })
        .ok_or(ReadingError::Target)?;
    let end = rest
        .iter()
        .position(|c| matches!(c, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let host = authority(&rest[..end])?;
    let target = match &rest[end..] {
        [] => PathAndQuery::from_static("/"),
        t => origin(t)?,
    };
    Ok((target, Some(host)))
}

/// The request a `/forward-auth` call names. `own`: the call's own
/// authority, the host when none is forwarded.
pub fn forward_auth(h: &HeaderMap, own: Option<&[u8]>) -> Result<Reading, ReadingError> {
    let named = match (forwarded_set(h)?, original_set(h)?) {
        (None, None) => return Err(ReadingError::None),
        (Some(n), None) | (None, Some(n)) => n,
        (Some(f), Some(o)) => {
            if f.method != o.method || f.target != o.target {
                return Err(ReadingError::Disagree);
            }
            o
        }
    };
    let forwarded = one(h, X_FORWARDED_HOST)?
        .map(|v| authority(v.as_bytes()))
        .transpose()?;
    let host = match (forwarded, named.host) {
        (Some(a), Some(b)) if !a.as_str().eq_ignore_ascii_case(b.as_str()) => {
            return Err(ReadingError::Disagree)
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => authority(own.ok_or(ReadingError::Host)?)?,
    };
    let https = one(h, X_FORWARDED_PROTO)?.is_some_and(|p| p.as_bytes() == b"https");
    Ok(Reading {
        method: named.method,
        uri: absolute(https, host, named.target)?,
    })
}

/// The request an `/ext-authz/<target>` call names: its own method, the
/// path after the prefix with the query, and its own `Host` (`host`).
pub fn ext_authz(method: &Method, uri: &Uri, host: Option<&[u8]>) -> Result<Reading, ReadingError> {
    let pq = uri.path_and_query().map_or("/", PathAndQuery::as_str);
    let target = pq
        .strip_prefix(EXT_AUTHZ_PREFIX)
        .ok_or(ReadingError::Target)?;
    let target = origin(target.as_bytes())?;
    let host = authority(host.ok_or(ReadingError::Host)?)?;
    Ok(Reading {
        method: method.clone(),
        uri: absolute(false, host, target)?,
    })
}

/// The request a gRPC `CheckRequest` names (`attributes.request.http`):
/// its method, its target as the request line had it (with the query), and
/// its `Host` (or `:authority`).
pub fn grpc(method: &[u8], path: &[u8], host: &[u8]) -> Result<Reading, ReadingError> {
    let method = Method::from_bytes(method).map_err(|_| ReadingError::Method)?;
    let target = origin(path)?;
    let host = authority(host)?;
    Ok(Reading {
        method,
        uri: absolute(false, host, target)?,
    })
}

fn absolute(https: bool, host: Authority, target: PathAndQuery) -> Result<Uri, ReadingError> {
    Uri::builder()
        .scheme(if https { Scheme::HTTPS } else { Scheme::HTTP })
        .authority(host)
        .path_and_query(target)
        .build()
        .map_err(|_| ReadingError::Target)
}

#[cfg(test)]
mod tests;
