//! Forwarding headers: what the CMS is told about the client, and who the
//! client is.
//!
//! A client can send `X-Forwarded-For`, `X-Forwarded-Proto`,
//! `X-Forwarded-Host` and RFC 7239 `Forwarded` to pose as someone else (a
//! known bypass class for upstreams that trust them). So the client's are
//! always removed and the gateway writes its own, from what it saw. When
//! the peer is one of `server.trusted_proxies` (a load balancer in front),
//! the lines it writes extend the chain the proxy sent (its
//! `X-Forwarded-For` and `Forwarded` with the peer appended, its
//! `X-Forwarded-Proto` and `X-Forwarded-Host` kept), and the client
//! address for rate limits, pinned tokens and logs is the rightmost
//! address of `X-Forwarded-For` that is not itself trusted. Trusted
//! proxies must therefore append to `X-Forwarded-For` (as nginx's
//! `$proxy_add_x_forwarded_for`, Envoy, HAProxy and cloud load balancers
//! do); a proxy that writes only `Forwarded` and passes the client's
//! `X-Forwarded-For` through would let clients choose their address.
//!
//! Headers that frameworks behind us read as the route, the method or the
//! client ([`OVERRIDING_HEADERS`], every other `X-Forwarded-*`) are removed
//! whoever the peer is: load balancers pass client headers through, so a
//! trusted address says nothing about who wrote them. A proxy's right to
//! set one is an explicit allow-list, `server.trusted_headers`, honoured
//! only on a trusted peer's connection.
//!
//! `Forwarded` carries `for` and `proto` (the host is in
//! `X-Forwarded-Host`), so it is computed once per connection ([`Peer`]).

use std::net::{IpAddr, SocketAddr};

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::lines::AddedHeaders;
use crate::cidr::Cidr;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// Who may speak for the client: `server.trusted_proxies`, and the
/// overriding headers they may set (`server.trusted_headers`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    pub proxies: Vec<Cidr>,
    /// Lower-case names of overriding headers a trusted proxy may pass on.
    pub headers: Vec<HeaderName>,
}

impl TrustedProxies {
    /// Is `ip` one of the trusted proxies?
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.proxies.iter().any(|c| c.contains(ip))
    }

    /// The client's address: the peer, or behind trusted proxies the
    /// rightmost untrusted address of `X-Forwarded-For`. Walking from the
    /// right, an entry that is no address (`unknown`, a header that is not
    /// text) ends the walk at the last trusted hop: what lies left of it
    /// was written by someone no trusted proxy vouches for, so it is never
    /// taken for the client (the peer is answered instead).
    pub fn client_ip(&self, h: &HeaderMap, peer: SocketAddr) -> IpAddr {
        let peer = peer.ip();
        if !self.is_trusted(peer) {
            return peer;
        }
        self.client_in_chain(h, peer)
    }

    /// The rightmost address of `X-Forwarded-For` that is not one of the
    /// trusted proxies, for a peer already known to speak for the client
    /// (a trusted proxy, or a decision door's trusted caller); `last_hop`
    /// when the chain names none.
    pub fn client_in_chain(&self, h: &HeaderMap, last_hop: IpAddr) -> IpAddr {
        let peer = last_hop;
        let chain: Vec<Option<IpAddr>> = h
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .flat_map(|v| match v.to_str() {
                Ok(v) => v.split(',').map(forwarded_address).collect(),
                Err(_) => vec![None],
            })
            .collect();
        for hop in chain.into_iter().rev() {
            match hop {
                Some(ip) if self.is_trusted(ip) => {}
                Some(ip) => return ip,
                None => break,
            }
        }
        peer
    }

    /// Is the peer one of the trusted proxies (whose forwarding headers
    /// are extended)?
    pub fn trusts(&self, peer: &Peer) -> bool {
        self.is_trusted(peer.addr.ip())
    }

    /// May this overriding header, sent on `trusted`'s connection, pass?
    pub fn passes(&self, name: &HeaderName, trusted: bool) -> bool {
        trusted && self.headers.contains(name)
    }

    /// Write the forwarding lines for a request on `peer`'s connection,
    /// reading the chain a trusted peer sent from `h` (the proxy removes
    /// the client's own from the map in its one pass, after this).
    /// `host`: the `Host` the client asked for, if any.
    pub fn write(
        &self,
        h: &HeaderMap,
        peer: &Peer,
        trusted: bool,
        host: Option<&HeaderValue>,
        out: &mut AddedHeaders,
    ) {
        if !trusted {
            out.push_value(&X_FORWARDED_FOR, &peer.ip);
            out.push_value(&FORWARDED, &peer.forwarded);
            out.push_value(&X_FORWARDED_PROTO, &peer.proto);
            if let Some(host) = host {
                out.push_value(&X_FORWARDED_HOST, host);
            }
            return;
        }
        extend(h, &X_FORWARDED_FOR, &peer.ip, out);
        extend(h, &FORWARDED, &peer.forwarded, out);
        // The edge's scheme and host are kept; the gateway's when there
        // are none.
        if !keep(h, &X_FORWARDED_PROTO, out) {
            out.push_value(&X_FORWARDED_PROTO, &peer.proto);
        }
        if !keep(h, &X_FORWARDED_HOST, out) {
            if let Some(host) = host {
                out.push_value(&X_FORWARDED_HOST, host);
            }
        }
    }
}

/// One list header: what the trusted proxy sent, folded into one line,
/// with `last` appended.
fn extend(h: &HeaderMap, name: &HeaderName, last: &HeaderValue, out: &mut AddedHeaders) {
    let mut sent = h.get_all(name).iter().peekable();
    if sent.peek().is_none() {
        out.push_value(name, last);
        return;
    }
    out.push_with(name, |v| {
        for value in sent {
            v.extend_from_slice(value.as_bytes());
            v.extend_from_slice(b", ");
        }
        v.extend_from_slice(last.as_bytes());
    });
}

/// Pass on what the trusted proxy sent of `name`, line by line; false
/// when it sent none.
fn keep(h: &HeaderMap, name: &HeaderName, out: &mut AddedHeaders) -> bool {
    let mut kept = false;
    for value in h.get_all(name) {
        out.push_value(name, value);
        kept = true;
    }
    kept
}

/// The forwarding headers the gateway writes itself (a client's own are
/// always removed).
pub fn is_set_here(name: &str) -> bool {
    matches!(
        name,
        "x-forwarded-for" | "x-forwarded-proto" | "x-forwarded-host" | "forwarded"
    )
}

/// One `X-Forwarded-For` entry: an address, also with a port as some
/// proxies write it (`192.0.2.1:4711`, `[2001:db8::1]:4711`).
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// Headers that frameworks and proxies behind us read as the route, the
/// method or the client: `X-Original-URL` and `X-Rewrite-URL` (Symfony,
/// Laravel, IIS), the method overrides (Express's `method-override`, PHP
/// frameworks), client addresses (`X-Real-IP`, `True-Client-IP`, ...).
/// They are removed, together with every `X-Forwarded-*` the gateway does
/// not set itself (`-Prefix`, `-Port`, `-Server`, `-Ssl`, `-Uri`, ...),
/// unless `server.trusted_headers` lets a trusted proxy set one.
pub const OVERRIDING_HEADERS: [&str; 16] = [
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    "x-host",
    "front-end-https",
];

/// Is `name` (lower case, as `http` stores it) a header that overrides the
/// route, the method or the client? See [`OVERRIDING_HEADERS`].
pub fn is_overriding(name: &str) -> bool {
    match name.strip_prefix("x-forwarded-") {
        Some(rest) => !matches!(rest, "for" | "proto" | "host"),
        None => name == "x-forwarded" || OVERRIDING_HEADERS.contains(&name),
    }
}

/// One client connection's forwarding facts, computed once per connection
/// rather than per request.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    pub tls: bool,
    /// The address, as an `X-Forwarded-For` value.
    ip: HeaderValue,
    /// `for=<addr>;proto=<scheme>` (RFC 7239; the host travels in
    /// `X-Forwarded-Host`).
    forwarded: HeaderValue,
    proto: HeaderValue,
}

impl Peer {
    pub fn new(addr: SocketAddr, tls: bool) -> Self {
        let ip = addr.ip();
        let proto = if tls { "https" } else { "http" };
        let node = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("\"[{v6}]\""),
        };
        // Addresses print as ASCII digits, hex, dots and colons: always a
        // header value.
        let value =
            |s: &str| HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static("unknown"));
        Self {
            addr,
            tls,
            ip: value(&ip.to_string()),
            forwarded: value(&format!("for={node};proto={proto}")),
            proto: HeaderValue::from_static(proto),
        }
    }
}

#[cfg(test)]
mod tests;
