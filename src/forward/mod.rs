//! Forwarding: the request head that goes to the CMS.
//!
//! Whatever the decision, the head the CMS receives is made here, in one
//! pass over the client's headers ([`Forwarder::prepare`]) followed by the
//! lines the gateway writes itself:
//!
//! | what | rule | where |
//! | --- | --- | --- |
//! | hop-by-hop headers, and those `Connection` names | removed (both directions) | [`hop`] |
//! | identity namespace (`x-auth-*`, any spelling) | removed; the gateway's own written for an allowed token, then signed | [`identity`] |
//! | route-, method- and client-overriding headers | removed, unless `server.trusted_headers` lets a trusted proxy set one | [`peer`] |
//! | `X-Forwarded-For`/`-Proto`/`-Host`, `Forwarded` | the client's removed; the gateway's written (extending a trusted proxy's chain) | [`peer`] |
//! | `Host` | validated on arrival; `upstream.host`, else the client's, else the upstream's | [`host`] |
//! | authgate's own cookies | cut out of `Cookie` | [`cookie`] |
//! | `x-request-id` | the gateway's | `request_id` |
//! | `Authorization` | kept, unless `identity.forward_authorization = false` | here |
//! | WebSocket upgrade | `Connection: upgrade` and `Upgrade: websocket` written for a handshake the gateway lets through | [`upgrade`] |
//! | `traceparent`, `tracestate` | the client's passed on; for a request authgate records, its own written instead (its span the parent) | [`crate::trace`] |
//!
//! What the gateway writes is kept as wire lines ([`lines::AddedHeaders`])
//! rather than put into the client's header map, and the upstream client
//! writes them after the headers the pass kept. The identity writer hands
//! the signer the lines it wrote; nothing is parsed back.

pub mod cookie;
pub mod hop;
pub mod host;
pub mod identity;
pub mod lines;
pub mod peer;
pub mod upgrade;

use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::cidr::Cidr;
use crate::model::TokenRecord;
use crate::request_id::X_REQUEST_ID;
use crate::trace::{Propagate, TRACEPARENT, TRACESTATE};
pub use identity::{IdentityNames, Signer};
pub use lines::AddedHeaders;
pub use peer::{Peer, TrustedProxies};

/// The forwarding settings as the config compiles them.
#[derive(Debug, Clone, Default)]
pub struct Forwarding {
    /// `server.trusted_proxies`.
    pub trusted: Vec<Cidr>,
    /// `server.trusted_headers`: overriding headers a trusted proxy may set.
    pub trusted_headers: Vec<HeaderName>,
    /// `upstream.host`.
    pub host: Option<HeaderValue>,
}

impl Forwarding {
    /// Who may speak for the client.
    pub fn proxies(&self) -> TrustedProxies {
        TrustedProxies {
            proxies: self.trusted.clone(),
            headers: self.trusted_headers.clone(),
        }
    }
}

/// An allowed request's identity: the token and the action its route maps to.
#[derive(Debug, Clone, Copy)]
pub struct Allowed<'a> {
    pub record: &'a TokenRecord,
    pub action: Option<&'a str>,
}

/// One request as it is forwarded: what the phases learnt about it.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub peer: &'a Peer,
    /// The authority the client asked for ([`host::requested`]).
    pub requested_host: Option<&'a HeaderValue>,
    pub request_id: &'a HeaderValue,
    /// The normal form of the target, as forwarded (and signed).
    pub path_and_query: &'a str,
    /// The identity, when a token allowed the request.
    pub allowed: Option<Allowed<'a>>,
    /// A WebSocket handshake the gateway lets through.
    pub upgrade: bool,
    /// The trace context to send in place of the client's, when the
    /// request is recorded.
    pub trace: Option<Propagate<'a>>,
}

/// The head's parts the gateway decides: the `Host` and the added lines.
#[derive(Debug)]
pub struct Head {
    pub host: HeaderValue,
    pub added: AddedHeaders,
}

/// Why the forwarding rules cannot be built from a config.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("identity.header_prefix makes no header name")]
    Prefix(#[source] http::header::InvalidHeaderName),
}

/// The forwarding rules of one gateway, built once from the config.
#[derive(Debug, Clone)]
pub struct Forwarder {
    names: IdentityNames,
    signer: Option<Signer>,
    forward_authorization: bool,
    proxies: TrustedProxies,
    host: host::HostRule,
}

impl Forwarder {
    /// `upstream`: the upstream URL's authority, the `Host` of a request
    /// that named none.
    pub fn new(
        names: IdentityNames,
        signer: Option<Signer>,
        forward_authorization: bool,
        forwarding: &Forwarding,
        upstream: Option<HeaderValue>,
    ) -> Self {
        Self {
            names,
            signer,
            forward_authorization,
            proxies: forwarding.proxies(),
            host: host::HostRule {
                fixed: forwarding.host.clone(),
                upstream,
            },
        }
    }

    /// The rules a config states: identity names and signing key, trusted
    /// proxies and headers, `upstream.host`, the upstream's authority.
    pub fn from_config(cfg: &crate::config::Config) -> Result<Self, ForwardError> {
        let names =
            IdentityNames::new(&cfg.identity.header_prefix).map_err(ForwardError::Prefix)?;
        let signer = cfg
            .identity
            .signing_key
            .as_ref()
            .map(|k| Signer::new(k.expose()));
        let upstream = cfg
            .upstream
            .url
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
        Ok(Self::new(
            names,
            signer,
            cfg.identity.forward_authorization,
            &cfg.server.forwarding,
            upstream,
        ))
    }

    pub fn names(&self) -> &IdentityNames {
        &self.names
    }

    /// Who may speak for the client (the client address of a request).
    pub fn proxies(&self) -> &TrustedProxies {
        &self.proxies
    }

    /// Make the client's headers fit to forward, and the lines and `Host`
    /// the gateway adds: one pass over the client's headers decides what
    /// stays (see the module's table).
    pub fn prepare(&self, method: &http::Method, h: &mut HeaderMap, out: Outgoing<'_>) -> Head {
        let trusted = self.proxies.trusts(out.peer);
        let mut added = AddedHeaders::new();
        // The chain a trusted proxy sent is read before the pass removes it.
        self.proxies
            .write(h, out.peer, trusted, out.requested_host, &mut added);
        self.strip(h, trusted, out.trace.is_some());
        added.push_value(&X_REQUEST_ID, out.request_id);
        if let Some(t) = out.trace {
            added.push(&TRACEPARENT, t.traceparent.as_bytes());
            if let Some(state) = t.tracestate {
                added.push(&TRACESTATE, state.as_bytes());
            }
        }
        if out.upgrade {
            upgrade::write_request_lines(&mut added);
        }
        if let Some(a) = out.allowed {
            self.write_identity(&mut added, method, out.path_and_query, a);
        }
        Head {
            host: self.host.upstream_host(out.requested_host),
            added,
        }
    }

    /// The identity lines of an allowed request, signed when
    /// `identity.signing_key` is set: what the proxy forwards and what a
    /// decision door answers with. `path_and_query`: the target the CMS
    /// receives (and the signature covers).
    pub fn write_identity(
        &self,
        added: &mut AddedHeaders,
        method: &http::Method,
        path_and_query: &str,
        a: Allowed<'_>,
    ) {
        let lines = self.names.write(added, a.record, a.action);
        if let Some(s) = &self.signer {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            s.sign(
                &self.names,
                method.as_str(),
                path_and_query,
                now,
                added,
                &lines,
            );
        }
    }

    /// The one pass: remove every header the gateway does not forward as
    /// the client sent it. Only headers that are there are removed (a
    /// removal hashes the name; most requests carry none of the many
    /// names this guards against). `traced`: the gateway writes the trace
    /// context, so the client's goes.
    fn strip(&self, h: &mut HeaderMap, trusted: bool, traced: bool) {
        let values = || {
            h.get_all(header::CONNECTION)
                .iter()
                .map(HeaderValue::as_bytes)
        };
        let connection = hop::Connection::read(values);
        let mut cookie = false;
        let doomed: Vec<HeaderName> = h
            .keys()
            .filter(|name| {
                let n = name.as_str();
                cookie |= *name == header::COOKIE;
                connection.drops(n)
                    || self.names.is_identity(n)
                    || *name == X_REQUEST_ID
                    || *name == header::HOST
                    || (!self.forward_authorization && *name == header::AUTHORIZATION)
                    || peer::is_set_here(n)
                    || (peer::is_overriding(n) && !self.proxies.passes(name, trusted))
                    || (traced && (*name == TRACEPARENT || *name == TRACESTATE))
            })
            .cloned()
            .collect();
        for name in doomed {
            h.remove(name);
        }
        if cookie {
            strip_own_cookies(h);
        }
    }
}

/// Cut authgate's own cookies out of every `Cookie` header.
fn strip_own_cookies(h: &mut HeaderMap) {
    if !h
        .get_all(header::COOKIE)
        .iter()
        .any(|v| cookie::may_hold_own(v.as_bytes()))
    {
        return;
    }
    let kept: Vec<HeaderValue> = h
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| cookie::without_own(v.as_bytes()))
        .filter_map(|v| HeaderValue::from_bytes(&v).ok())
        .collect();
    h.remove(header::COOKIE);
    for v in kept {
        h.append(header::COOKIE, v);
    }
}

#[cfg(test)]
mod tests;
