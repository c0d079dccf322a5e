//! W3C Trace Context (`traceparent`, Level 2 draft of the spec): the ids,
//! the flags, and the header value read from a client and written to the
//! CMS.
//!
//! Reading follows the spec's rules for a vendor that takes part:
//!
//! * version `00`: exactly 55 characters, lower-case hex only (upper case
//!   is invalid, as the ABNF's `HEXDIGLC` says), neither id all zeros;
//! * version `ff` is invalid; a version that is not two lower-case hex
//!   digits followed by `-` is invalid;
//! * a higher version is read as `00` is, from its first 55 characters,
//!   which must be followed by `-` or nothing; of its flags only those this
//!   version knows (sampled, random) are kept;
//! * surrounding spaces and tabs (HTTP's optional whitespace) are ignored;
//!   more than one `traceparent` field is invalid (the spec's test suite
//!   restarts the trace then).
//!
//! An invalid value means "no parent": the gateway starts a trace of its
//! own and drops the client's `tracestate` with it. What is written is
//! always version `00`, with the flags this version defines and no others.

use std::fmt;

use http::header::{HeaderMap, HeaderName};

pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The 16 bytes that name a trace.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub [u8; 16]);

/// The 8 bytes that name a span.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub [u8; 8]);

impl TraceId {
    /// The right-most 7 bytes, where a random trace id keeps its
    /// randomness (what ratio sampling reads).
    pub fn randomness(&self) -> u64 {
        let mut b = [0u8; 8];
        b[1..].copy_from_slice(&self.0[9..]);
        u64::from_be_bytes(b)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// `trace-flags`, holding only the bits this version of the spec defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TraceFlags(u8);

impl TraceFlags {
    /// The caller may have recorded trace data.
    pub const SAMPLED: u8 = 0x01;
    /// The right-most 7 bytes of the trace id are random.
    pub const RANDOM: u8 = 0x02;
    const KNOWN: u8 = Self::SAMPLED | Self::RANDOM;

    /// The known bits of `bits`; the others are dropped (the spec: unknown
    /// flags are set to zero on outgoing requests).
    pub const fn new(bits: u8) -> Self {
        Self(bits & Self::KNOWN)
    }

    pub fn bits(self) -> u8 {
        self.0
    }

    pub fn sampled(self) -> bool {
        self.0 & Self::SAMPLED != 0
    }

    pub fn random(self) -> bool {
        self.0 & Self::RANDOM != 0
    }

    /// The same flags with `sampled` set or cleared.
    pub fn with_sampled(self, sampled: bool) -> Self {
        if sampled {
            Self(self.0 | Self::SAMPLED)
        } else {
            Self(self.0 & !Self::SAMPLED)
        }
    }
}

/// A valid `traceparent`: the caller's trace, its span and its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub parent_id: SpanId,
    pub flags: TraceFlags,
}

/// Length of a version-00 `traceparent`.
pub const TRACEPARENT_LEN: usize = 55;

impl TraceParent {
    /// The request's `traceparent`, if it has exactly one valid field.
    pub fn from_headers(h: &HeaderMap) -> Option<Self> {
        let mut fields = h.get_all(TRACEPARENT).iter();
        match (fields.next(), fields.next()) {
            (Some(v), None) => Self::parse(v.as_bytes()),
            _ => None,
        }
    }

    /// Read one `traceparent` value (see the module's rules).
    pub fn parse(value: &[u8]) -> Option<Self> {
        let v = value.trim_ascii();
        if v.len() < TRACEPARENT_LEN || v[2] != b'-' {
            return None;
        }
        let version = hex_byte(v[0], v[1])?;
        let known_version = match version {
            0x00 => v.len() == TRACEPARENT_LEN,
            0xff => false,
            // A future version: what follows the flags must be a new field.
            _ => v.len() == TRACEPARENT_LEN || v[TRACEPARENT_LEN] == b'-',
        };
        if !known_version || v[35] != b'-' || v[52] != b'-' {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut parent_id = [0u8; 8];
        decode_lower_hex(&v[3..35], &mut trace_id)?;
        decode_lower_hex(&v[36..52], &mut parent_id)?;
        let flags = hex_byte(v[53], v[54])?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id: TraceId(trace_id),
            parent_id: SpanId(parent_id),
            flags: TraceFlags::new(flags),
        })
    }

    /// The value as written: version `00`, 55 characters.
    pub fn encode(&self) -> Encoded {
        let mut out = [0u8; TRACEPARENT_LEN];
        out[..3].copy_from_slice(b"00-");
        encode_hex(&self.trace_id.0, &mut out[3..35]);
        out[35] = b'-';
        encode_hex(&self.parent_id.0, &mut out[36..52]);
        out[52] = b'-';
        encode_hex(&[self.flags.bits()], &mut out[53..55]);
        Encoded(out)
    }
}

/// A `traceparent` value in wire form.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Encoded([u8; TRACEPARENT_LEN]);

impl Encoded {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits and dashes are ever written.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Debug for Encoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn lower_hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn hex_byte(hi: u8, lo: u8) -> Option<u8> {
    Some(lower_hex_digit(hi)? << 4 | lower_hex_digit(lo)?)
}

/// Lower-case hex only: `A`-`F` are refused, as the spec's `HEXDIGLC`.
fn decode_lower_hex(src: &[u8], out: &mut [u8]) -> Option<()> {
    for (pair, byte) in src.chunks_exact(2).zip(out.iter_mut()) {
        *byte = hex_byte(pair[0], pair[1])?;
    }
    Some(())
}

fn encode_hex(src: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (b, pair) in src.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xf)];
    }
}

#[cfg(test)]
mod tests;
