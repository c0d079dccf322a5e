//! The header lines the gateway adds to a request it forwards (identity,
//! signature, forwarding, request id), kept as they go on the wire.
//!
//! They are written straight after the client's headers when the request
//! head is written (`upstream`), rather than inserted into the client's
//! header map first: an insert hashes the name, may grow the map and
//! allocates a value, and the map is only read once more, to be written
//! out. Whoever pushes a line has removed the client's header of that name
//! from the map first (`forward::Forwarder::prepare`'s one pass), so a
//! pushed line replaces it. Each push answers where its line sits
//! ([`Span`]), so what was written can be read again (the signer reads the
//! identity lines) without parsing the bytes back.

use http::HeaderName;

/// Header lines in wire form: `name: value\r\n` each.
#[derive(Debug, Default)]
pub struct AddedHeaders {
    wire: Vec<u8>,
}

/// Where one pushed line sits in [`AddedHeaders::wire`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    start: u32,
    colon: u32,
    end: u32,
}

/// Can these bytes be a header value as they are? No control characters
/// but tab (so no CR, LF or NUL), as `http::HeaderValue` checks.
fn is_value(v: &[u8]) -> bool {
    // A fold without a branch per byte, which the compiler vectorises.
    v.iter().fold(true, |ok, b| {
        ok & ((*b >= 0x20) & (*b != 0x7f) | (*b == b'\t'))
    })
}

impl AddedHeaders {
    pub fn new() -> Self {
        Self {
            wire: Vec::with_capacity(256),
        }
    }

    /// Add `name: value`; a value that cannot be one is left out (`None`).
    pub fn push(&mut self, name: &HeaderName, value: &[u8]) -> Option<Span> {
        if !is_value(value) {
            return None;
        }
        Some(self.push_with(name, |out| out.extend_from_slice(value)))
    }

    /// Add `name: value` for a value already checked as one.
    pub fn push_value(&mut self, name: &HeaderName, value: &http::HeaderValue) -> Span {
        self.push_with(name, |out| out.extend_from_slice(value.as_bytes()))
    }

    /// Add `name: n`.
    pub fn push_decimal(&mut self, name: &HeaderName, n: i64) -> Span {
        self.push_with(name, |out| {
            if n < 0 {
                out.push(b'-');
            }
            write_decimal(out, n.unsigned_abs());
        })
    }

    /// Add `name: ` and a value `write` puts straight into the line. The
    /// caller writes only printable ASCII.
    pub fn push_with(&mut self, name: &HeaderName, write: impl FnOnce(&mut Vec<u8>)) -> Span {
        // Offsets fit: a head this large is refused long before (and the
        // values written here are bounded by the token's facts).
        let at = |v: &Vec<u8>| u32::try_from(v.len()).unwrap_or(u32::MAX);
        let start = at(&self.wire);
        self.wire.extend_from_slice(name.as_str().as_bytes());
        let colon = at(&self.wire);
        self.wire.extend_from_slice(b": ");
        write(&mut self.wire);
        let end = at(&self.wire);
        self.wire.extend_from_slice(b"\r\n");
        Span { start, colon, end }
    }

    /// The name and value of a line pushed here.
    pub fn line(&self, s: Span) -> (&str, &[u8]) {
        let (start, colon, end) = (s.start as usize, s.colon as usize, s.end as usize);
        let name = std::str::from_utf8(self.wire.get(start..colon).unwrap_or_default());
        (
            name.unwrap_or_default(),
            self.wire.get(colon + 2..end).unwrap_or_default(),
        )
    }

    /// The lines, as they go on the wire.
    pub fn wire(&self) -> &[u8] {
        &self.wire
    }

    /// The lines as (name, value) pairs, in the order added, read back
    /// from the bytes: for tests, inspection and a decision door's answer
    /// (a few lines), never on the proxy's request path.
    pub fn lines(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.wire
            .split(|b| *b == b'\n')
            .filter_map(|line| line.strip_suffix(b"\r"))
            .filter_map(|line| {
                let colon = line.iter().position(|b| *b == b':')?;
                let name = std::str::from_utf8(&line[..colon]).ok()?;
                Some((name, line.get(colon + 2..).unwrap_or_default()))
            })
    }

    /// The lines as response headers (a decision door answers with the
    /// identity a front proxy copies upstream). Every line was pushed as a
    /// valid name and value, so none is lost.
    pub fn to_header_map(&self, into: &mut http::HeaderMap) {
        for (name, value) in self.lines() {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_bytes(value),
            ) {
                into.append(n, v);
            }
        }
    }

    /// The value of the first line of this name.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.lines().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

/// Append `n` in decimal, without allocating.
pub fn write_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_go_out_in_wire_form_and_read_back() {
        let mut a = AddedHeaders::new();
        let one = a.push(&HeaderName::from_static("x-one"), b"a b:c").unwrap();
        a.push_decimal(&HeaderName::from_static("x-n"), -42);
        a.push_decimal(&HeaderName::from_static("x-z"), 0);
        a.push_decimal(&HeaderName::from_static("x-max"), i64::MIN);
        assert_eq!(
            a.wire(),
            b"x-one: a b:c\r\nx-n: -42\r\nx-z: 0\r\nx-max: -9223372036854775808\r\n"
        );
        let lines: Vec<_> = a.lines().collect();
        assert_eq!(lines[0], ("x-one", &b"a b:c"[..]));
        assert_eq!(a.get("x-z"), Some(&b"0"[..]));
        assert_eq!(a.get("x-none"), None);
        assert_eq!(a.line(one), ("x-one", &b"a b:c"[..]));
    }

    #[test]
    fn a_value_that_would_break_the_head_is_left_out() {
        let mut a = AddedHeaders::new();
        for bad in [&b"a\r\nx-evil: 1"[..], b"a\nb", b"nul\0", b"del\x7f"] {
            assert!(a.push(&HeaderName::from_static("x-v"), bad).is_none());
        }
        assert!(a
            .push(&HeaderName::from_static("x-v"), b"tab\tok")
            .is_some());
        assert_eq!(a.wire(), b"x-v: tab\tok\r\n");
    }
}
