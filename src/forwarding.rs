//! Forwarding headers: what the CMS is told about the client.
//!
//! A client can send `X-Forwarded-For`, `X-Forwarded-Proto`,
//! `X-Forwarded-Host` and RFC 7239 `Forwarded` to pose as someone else (a
//! known bypass class for upstreams that trust them). So they are replaced
//! by what the gateway saw, unless the peer is one of
//! `server.trusted_proxies` (a load balancer in front): then the chain is
//! kept and the peer appended, and the client address for rate limits and
//! logs is the rightmost address in the chain that is not itself trusted.
//!
//! `Forwarded` carries `for` and `proto` (the host is in
//! `X-Forwarded-Host`), so it is computed once per connection.
//!
//! `Host` is forwarded as the client sent it, or replaced by
//! `upstream.host` when set; it is never used for a routing decision.

use std::net::{IpAddr, SocketAddr};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::cidr::Cidr;
use crate::head::AddedHeaders;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// The forwarding policy.
#[derive(Debug, Clone, Default)]
pub struct Forwarding {
    pub trusted: Vec<Cidr>,
    pub host: Option<HeaderValue>,
}

impl Forwarding {
    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|c| c.contains(ip))
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
    /// are kept and extended)?
    pub fn trusts(&self, peer: &Peer) -> bool {
        self.is_trusted(peer.addr.ip())
    }

    /// Set the forwarding headers for a request on `peer`'s connection.
    /// From a trusted proxy its chain is extended in the map; otherwise the
    /// gateway's own lines are added, the client's overriding headers and
    /// those it sets itself ([`is_overriding`], [`is_set_here`]) having been
    /// removed first (the proxy does it in its one pass over the headers).
    pub fn set(&self, h: &mut HeaderMap, peer: &Peer, trusted: bool, added: &mut AddedHeaders) {
        if trusted {
            let host = h.get(header::HOST).cloned();
            append(h, X_FORWARDED_FOR, peer.ip.to_str().unwrap_or(""), ", ");
            append(h, FORWARDED, peer.forwarded.to_str().unwrap_or(""), ", ");
            if !h.contains_key(&X_FORWARDED_PROTO) {
                h.insert(X_FORWARDED_PROTO, peer.proto.clone());
            }
            if !h.contains_key(&X_FORWARDED_HOST) {
                if let Some(host) = host {
                    h.insert(X_FORWARDED_HOST, host);
                }
            }
        } else {
            added.push_value(&X_FORWARDED_FOR, &peer.ip);
            added.push_value(&FORWARDED, &peer.forwarded);
            added.push_value(&X_FORWARDED_PROTO, &peer.proto);
            if let Some(host) = h.get(header::HOST) {
                added.push_value(&X_FORWARDED_HOST, host);
            }
        }
        if let Some(host) = &self.host {
            h.insert(header::HOST, host.clone());
        }
    }
}

/// The forwarding headers the gateway writes itself for an untrusted peer
/// (a client's own are removed).
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
/// From a peer that is not a trusted proxy they are the client posing, so
/// they are removed, together with every `X-Forwarded-*` the gateway does
/// not set itself (`-Prefix`, `-Port`, `-Server`, `-Ssl`, `-Uri`, ...).
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

/// Is `name` (lower case, as `http` stores it) a header an untrusted
/// client may not send on? See [`OVERRIDING_HEADERS`].
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
        let value = |s: &str| {
            HeaderValue::from_str(s).unwrap_or_else(|_| unreachable!("addresses are ASCII"))
        };
        Self {
            addr,
            tls,
            ip: value(&ip.to_string()),
            forwarded: value(&format!("for={node};proto={proto}")),
            proto: HeaderValue::from_static(proto),
        }
    }
}

fn set(h: &mut HeaderMap, name: HeaderName, value: &str) {
    match HeaderValue::from_str(value) {
        Ok(v) => {
            h.insert(name, v);
        }
        Err(_) => {
            h.remove(name);
        }
    }
}

/// Append to a list header, folding repeated client headers into one.
fn append(h: &mut HeaderMap, name: HeaderName, value: &str, sep: &str) {
    let existing: Vec<String> = h
        .get_all(&name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect();
    let joined = if existing.is_empty() {
        value.to_owned()
    } else {
        format!("{}{sep}{value}", existing.join(sep))
    };
    set(h, name, &joined);
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Forwarding {
        /// What the proxy's pass over the headers does, on a map alone:
        /// an untrusted peer's overriding and gateway-set headers out, then
        /// the forwarding headers set, the added lines put in the map.
        fn apply(&self, h: &mut HeaderMap, peer: &Peer) {
            let trusted = self.trusts(peer);
            if !trusted {
                let doomed: Vec<HeaderName> = h
                    .keys()
                    .filter(|k| is_overriding(k.as_str()) || is_set_here(k.as_str()))
                    .cloned()
                    .collect();
                for name in doomed {
                    h.remove(name);
                }
            }
            let mut added = AddedHeaders::new();
            self.set(h, peer, trusted, &mut added);
            for (k, v) in added.lines() {
                h.append(
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_bytes(v).unwrap(),
                );
            }
        }
    }

    fn hdrs(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn untrusted_peers_cannot_pose_as_someone_else() {
        let f = Forwarding::default();
        let peer: SocketAddr = "203.0.113.9:4000".parse().unwrap();
        let mut h = hdrs(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
            ("forwarded", "for=1.1.1.1;proto=https"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "admin.internal"),
            ("host", "cms.example"),
        ]);
        assert_eq!(f.client_ip(&h, peer), peer.ip());
        f.apply(&mut h, &Peer::new(peer, false));
        assert_eq!(
            h.get_all("x-forwarded-for").iter().collect::<Vec<_>>(),
            vec!["203.0.113.9"]
        );
        assert_eq!(h["forwarded"], "for=203.0.113.9;proto=http");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "cms.example");
    }

    #[test]
    fn untrusted_peers_cannot_reroute_remethod_or_reidentify() {
        let f = Forwarding::default();
        let mut pairs: Vec<(&str, &str)> = OVERRIDING_HEADERS.iter().map(|n| (*n, "x")).collect();
        pairs.extend([
            ("X-Forwarded-Prefix", "/admin"),
            ("X-Forwarded-Port", "443"),
            ("X-Forwarded-Server", "a"),
            ("X-Forwarded-Ssl", "on"),
            ("X-Forwarded-Uri", "/admin/users"),
            ("X-Forwarded", "for=1.1.1.1"),
            ("X-Keep", "1"),
            ("Cookie", "a=b"),
        ]);
        let mut h = hdrs(&pairs);
        f.apply(
            &mut h,
            &Peer::new("203.0.113.9:4000".parse().unwrap(), false),
        );
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(
            left,
            [
                "cookie",
                "forwarded",
                "x-forwarded-for",
                "x-forwarded-proto",
                "x-keep"
            ]
        );

        // A trusted proxy's headers are its own: kept.
        let f = Forwarding {
            trusted: vec![Cidr::parse("10.0.0.0/8").unwrap()],
            host: None,
        };
        let mut h = hdrs(&[("x-real-ip", "198.51.100.7"), ("x-forwarded-port", "443")]);
        f.apply(&mut h, &Peer::new("10.0.0.5:4000".parse().unwrap(), false));
        assert_eq!(h["x-real-ip"], "198.51.100.7");
        assert_eq!(h["x-forwarded-port"], "443");
    }

    /// Behind a load balancer in 10.0.0.0/8, which is the peer.
    fn behind_a_proxy() -> (Forwarding, SocketAddr) {
        let f = Forwarding {
            trusted: vec![Cidr::parse("10.0.0.0/8").unwrap()],
            host: None,
        };
        (f, "10.0.0.5:4000".parse().unwrap())
    }

    #[test]
    fn trusted_proxies_extend_the_chain() {
        let (f, peer) = behind_a_proxy();
        let mut h = hdrs(&[
            ("x-forwarded-for", "198.51.100.7, 10.0.0.9"),
            ("x-forwarded-proto", "https"),
            ("host", "cms.example"),
        ]);
        assert_eq!(
            f.client_ip(&h, peer),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        f.apply(&mut h, &Peer::new(peer, false));
        assert_eq!(h["x-forwarded-for"], "198.51.100.7, 10.0.0.9, 10.0.0.5");
        assert_eq!(h["x-forwarded-proto"], "https", "the edge's scheme is kept");
        assert_eq!(h["forwarded"], "for=10.0.0.5;proto=http");
    }

    #[test]
    fn a_hop_that_is_no_address_ends_the_chain() {
        let (f, peer) = behind_a_proxy();
        let client = |xff: &[&str]| {
            let pairs: Vec<(&str, &str)> = xff.iter().map(|v| ("x-forwarded-for", *v)).collect();
            f.client_ip(&hdrs(&pairs), peer)
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // (the chain as sent, the client)
        let rows: &[(&[&str], IpAddr)] = &[
            (&["198.51.100.7"], ip("198.51.100.7")),
            (&["203.0.113.66, 198.51.100.7"], ip("198.51.100.7")),
            (
                &["203.0.113.66", "198.51.100.7, 10.0.0.9"],
                ip("198.51.100.7"),
            ),
            (&["198.51.100.7:4711"], ip("198.51.100.7")),
            (&["[2001:db8::7]:4711"], ip("2001:db8::7")),
            // What is left of an entry that is no address is nobody's word.
            (&["203.0.113.66, unknown"], peer.ip()),
            (&["203.0.113.66, unknown, 10.0.0.9"], peer.ip()),
            (&["203.0.113.66", ""], peer.ip()),
            (&["10.0.0.9"], peer.ip()),
            (&[], peer.ip()),
        ];
        for (xff, want) in rows {
            assert_eq!(client(xff), *want, "{xff:?}");
        }
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("203.0.113.66"));
        h.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"198.51.100.\xff").unwrap(),
        );
        assert_eq!(
            f.client_ip(&h, peer),
            peer.ip(),
            "a header that is not text"
        );
    }

    #[test]
    fn host_override() {
        let f = Forwarding {
            trusted: vec![],
            host: Some(HeaderValue::from_static("cms.internal")),
        };
        let mut h = hdrs(&[("host", "evil.example")]);
        f.apply(&mut h, &Peer::new("[::1]:1".parse().unwrap(), true));
        assert_eq!(h["host"], "cms.internal");
        assert_eq!(h["x-forwarded-host"], "evil.example");
        assert_eq!(h["forwarded"], "for=\"[::1]\";proto=https");
    }
}
