//! Sets of HTTP methods, as a row of an action table or a rule names them.
//!
//! The action tables are written in the seven standard methods; a row may
//! also name a registered extension method (`PROPFIND`), and `*` means every
//! method, known or not. A name that is neither is a config error, so a typo
//! never becomes a method of its own.

use http::Method;

/// Methods of the IANA HTTP method registry beyond the seven standard ones
/// (and CONNECT, which is never forwarded): the ones a table row may name.
const REGISTERED_EXTENSIONS: [&str; 32] = [
    "ACL",
    "BASELINE-CONTROL",
    "BIND",
    "CHECKIN",
    "CHECKOUT",
    "COPY",
    "LABEL",
    "LINK",
    "LOCK",
    "MERGE",
    "MKACTIVITY",
    "MKCALENDAR",
    "MKCOL",
    "MKREDIRECTREF",
    "MKWORKSPACE",
    "MOVE",
    "ORDERPATCH",
    "PROPFIND",
    "PROPPATCH",
    "PURGE",
    "QUERY",
    "REBIND",
    "REPORT",
    "SEARCH",
    "TRACE",
    "UNBIND",
    "UNCHECKOUT",
    "UNLINK",
    "UNLOCK",
    "UPDATE",
    "UPDATEREDIRECTREF",
    "VERSION-CONTROL",
];

/// A set of HTTP methods: the seven standard ones as bits (GET implies
/// HEAD), extension methods (`PROPFIND`, `SEARCH`, ...) by name, or `*`
/// for every method, known or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodSet {
    bits: u8,
    extensions: Box<[Method]>,
}

impl MethodSet {
    const NAMES: [&'static str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
    /// The bit standing for every method outside [`Self::NAMES`].
    const OTHER: u8 = 0x80;

    /// Every method, standard or not.
    pub fn all() -> MethodSet {
        MethodSet {
            bits: 0xff,
            extensions: Box::default(),
        }
    }

    fn bit(m: &Method) -> u8 {
        match *m {
            Method::GET => 1,
            Method::HEAD => 2,
            Method::POST => 4,
            Method::PUT => 8,
            Method::PATCH => 16,
            Method::DELETE => 32,
            Method::OPTIONS => 64,
            _ => 0,
        }
    }

    /// Is `m` one of the seven methods the action tables are written in?
    /// Any other method is judged as the most demanding one.
    pub fn is_standard(m: &Method) -> bool {
        Self::bit(m) != 0
    }

    /// Parse `GET|POST`, `PROPFIND`, or `*` for all.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut bits = 0u8;
        let mut extensions = Vec::new();
        for part in s.split('|') {
            let part = part.trim().to_ascii_uppercase();
            if part == "*" {
                bits = 0xff;
            } else if part == "GET" {
                bits |= 1 | 2;
            } else if let Some(i) = Self::NAMES.iter().position(|n| *n == part) {
                bits |= 1 << i;
            } else if REGISTERED_EXTENSIONS.contains(&part.as_str()) {
                let m = Method::from_bytes(part.as_bytes())
                    .map_err(|_| format!("unknown HTTP method `{part}`"))?;
                extensions.push(m);
            } else {
                // A typo (`GTE`) must not silently become a method of its own.
                return Err(format!("unknown HTTP method `{part}`"));
            }
        }
        Ok(MethodSet {
            bits,
            extensions: extensions.into(),
        })
    }

    pub fn contains(&self, m: &Method) -> bool {
        match Self::bit(m) {
            0 => self.bits & Self::OTHER != 0 || self.extensions.contains(m),
            b => self.bits & b != 0,
        }
    }

    pub fn intersects(&self, other: &MethodSet) -> bool {
        self.bits & other.bits != 0
            || self.extensions.iter().any(|m| other.contains(m))
            || other.extensions.iter().any(|m| self.contains(m))
    }
}
