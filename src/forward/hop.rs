//! The hop-by-hop rule (RFC 9110 §7.6.1), one for both directions.
//!
//! Hop-by-hop headers describe one connection, so they never cross the
//! gateway: neither from the client to the CMS nor back. Besides the fixed
//! list, every header a message's `Connection` names is hop-by-hop for that
//! message. The request side (`forward::Forwarder::prepare`, over hyper's
//! header map) and the response side (`upstream`'s head parser, over the
//! raw lines) both ask [`Connection`], so the rule is written once.
//!
//! An upgrade is the one exception: the `Connection: upgrade` and
//! `Upgrade` of a WebSocket handshake are written by the gateway itself on
//! the way up (`forward::upgrade`), and a `101`'s pass back to the client
//! ([`Connection::drops_in_switch`]).

/// Hop-by-hop headers by name (lower or any case).
pub fn is_hop_by_hop(name: &str) -> bool {
    let is = |n: &str| name.eq_ignore_ascii_case(n);
    match name.len() {
        2 => is("te"),
        7 => is("trailer") || is("upgrade"),
        10 => is("connection") || is("keep-alive"),
        16 => is("proxy-connection"),
        17 => is("transfer-encoding"),
        18 => is("proxy-authenticate"),
        19 => is("proxy-authorization"),
        _ => false,
    }
}

/// The comma-separated elements of one header value, trimmed.
pub fn elements(value: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    value.split(|b| *b == b',').map(<[u8]>::trim_ascii)
}

/// What a message's `Connection` headers say: whether the connection
/// closes after it, and which other headers are hop-by-hop for it.
#[derive(Debug, Clone)]
pub struct Connection<F> {
    /// The values of every `Connection` header of the message, afresh.
    values: F,
    /// `close` was said.
    pub close: bool,
    /// A token other than `close` and `keep-alive` was said: it names a
    /// header (usually none is, so the names need not be looked at).
    names_others: bool,
}

impl<'v, F, I> Connection<F>
where
    F: Fn() -> I,
    I: Iterator<Item = &'v [u8]>,
{
    /// Read the values of the message's `Connection` headers, which
    /// `values` iterates (each time it is called).
    pub fn read(values: F) -> Self {
        let (mut close, mut names_others) = (false, false);
        for t in values().flat_map(elements) {
            if t.eq_ignore_ascii_case(b"close") {
                // `close` is an option and a name at once: a header called
                // `Close` is removed too (RFC 9110 §7.6.1).
                close = true;
                names_others = true;
            } else if !t.is_empty() && !t.eq_ignore_ascii_case(b"keep-alive") {
                names_others = true;
            }
        }
        Self {
            values,
            close,
            names_others,
        }
    }

    /// Does the header `name` stop at this hop?
    pub fn drops(&self, name: &str) -> bool {
        is_hop_by_hop(name) || self.lists(name)
    }

    /// [`Connection::drops`] for a `101 Switching Protocols`, whose
    /// `Connection` and `Upgrade` tell the client what it switched to.
    pub fn drops_in_switch(&self, name: &str) -> bool {
        let kept = name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("upgrade");
        !kept && self.drops(name)
    }

    fn lists(&self, name: &str) -> bool {
        self.names_others
            && (self.values)()
                .flat_map(elements)
                .any(|t| t.eq_ignore_ascii_case(name.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixed_list() {
        for n in [
            "connection",
            "Keep-Alive",
            "proxy-connection",
            "proxy-authenticate",
            "proxy-authorization",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
        ] {
            assert!(is_hop_by_hop(n), "{n}");
        }
        for n in [
            "content-length",
            "authorization",
            "host",
            "tee",
            "x-upgrade",
        ] {
            assert!(!is_hop_by_hop(n), "{n}");
        }
    }

    #[test]
    fn connection_names_more() {
        let values: [&[u8]; 2] = [b"keep-alive, X-Secret", b" x-other ,close"];
        let c = Connection::read(|| values.iter().copied());
        assert!(c.close);
        for n in ["x-secret", "X-OTHER", "te", "connection"] {
            assert!(c.drops(n), "{n}");
        }
        assert!(!c.drops("x-keep"));
        assert!(c.drops("close"), "a header named by the close option");
        assert!(!c.drops_in_switch("upgrade"));
        assert!(!c.drops_in_switch("connection"));
        assert!(c.drops_in_switch("transfer-encoding"));
        let plain: [&[u8]; 1] = [b"keep-alive"];
        let c = Connection::read(|| plain.iter().copied());
        assert!(!c.close);
        assert!(!c.drops("keep-alive-not"));
    }
}
