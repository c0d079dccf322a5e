//! WebSocket upgrades: the one kind of protocol switch passed on.
//!
//! An upgrade turns the connection into a tunnel the gateway no longer
//! inspects, so only a WebSocket handshake is let through: an `h2c`
//! upgrade would let later HTTP/2 requests on the connection skip
//! authentication (a known smuggling class). The request is judged like
//! any other first; when it is forwarded, the handshake's `Connection:
//! upgrade` and `Upgrade: websocket` are written by the gateway (the
//! client's, hop-by-hop, were removed with the rest), and the tunnel opens
//! only when the CMS answers `101` with the `Sec-WebSocket-Accept` that
//! proves it read this handshake ([`Handshake::accepts`]); `tunnel` then
//! carries the bytes. Any other
//! upgrade header is dropped as the hop-by-hop header it is, and the
//! request goes on as plain HTTP.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::lines::AddedHeaders;

const SEC_WEBSOCKET_KEY: HeaderName = HeaderName::from_static("sec-websocket-key");
const SEC_WEBSOCKET_ACCEPT: HeaderName = HeaderName::from_static("sec-websocket-accept");

/// A WebSocket handshake the client asked for.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// The `Sec-WebSocket-Accept` the CMS must answer.
    accept: HeaderValue,
}

impl Handshake {
    /// The client's handshake, when it asks for exactly a WebSocket
    /// upgrade with exactly one key.
    pub fn requested(h: &HeaderMap) -> Option<Self> {
        let mut upgrade = h.get_all(header::UPGRADE).iter();
        let (Some(protocol), None) = (upgrade.next(), upgrade.next()) else {
            return None;
        };
        let asks = protocol.as_bytes().eq_ignore_ascii_case(b"websocket")
            && h.get_all(header::CONNECTION)
                .iter()
                .flat_map(|v| super::hop::elements(v.as_bytes()))
                .any(|t| t.eq_ignore_ascii_case(b"upgrade"));
        if !asks {
            return None;
        }
        accept_for(h).map(|accept| Self { accept })
    }

    /// Does the CMS's `101` answer this handshake?
    pub fn accepts(&self, response: &HeaderMap) -> bool {
        response.get(SEC_WEBSOCKET_ACCEPT) == Some(&self.accept)
    }
}

/// The `Sec-WebSocket-Accept` an upstream must answer to this request's
/// `Sec-WebSocket-Key` (RFC 6455 §4.2.2); `None` without exactly one key.
fn accept_for(h: &HeaderMap) -> Option<HeaderValue> {
    use base64::Engine as _;
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut keys = h.get_all(SEC_WEBSOCKET_KEY).iter();
    let (Some(key), None) = (keys.next(), keys.next()) else {
        return None;
    };
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID);
    let accept = base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes());
    HeaderValue::from_str(&accept).ok()
}

/// The handshake's own hop-by-hop lines, as the gateway writes them.
pub fn write_request_lines(out: &mut AddedHeaders) {
    out.push_value(&header::CONNECTION, &HeaderValue::from_static("upgrade"));
    out.push_value(&header::UPGRADE, &HeaderValue::from_static("websocket"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake(pairs: &[(&'static str, &'static str)]) -> Option<Handshake> {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        Handshake::requested(&h)
    }

    const KEY: (&str, &str) = ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");

    #[test]
    fn only_websocket_upgrades_pass() {
        let ok = handshake(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
            KEY,
        ]);
        assert!(ok.is_some());
        for bad in [
            vec![("connection", "upgrade"), ("upgrade", "h2c"), KEY],
            vec![("connection", "close"), ("upgrade", "websocket"), KEY],
            vec![("connection", "upgrade"), ("upgrade", "websocket")],
            vec![
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                ("upgrade", "websocket"),
                KEY,
            ],
            vec![
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                KEY,
                ("sec-websocket-key", "x"),
            ],
        ] {
            assert!(handshake(&bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn websocket_accept_is_rfc6455s() {
        let hs = handshake(&[("connection", "upgrade"), ("upgrade", "websocket"), KEY]).unwrap();
        // The example handshake of RFC 6455 §1.3.
        let mut resp = HeaderMap::new();
        resp.insert(
            SEC_WEBSOCKET_ACCEPT,
            HeaderValue::from_static("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        );
        assert!(hs.accepts(&resp));
        resp.insert(SEC_WEBSOCKET_ACCEPT, HeaderValue::from_static("x"));
        assert!(!hs.accepts(&resp));
    }
}
