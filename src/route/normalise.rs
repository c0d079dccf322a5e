//! The one normal form of a request path, and how a segment of it names
//! a literal.
//!
//! [`normalise`] is the only place a path is rewritten: it decodes
//! unreserved escapes, resolves `.` and `..` and merges repeated slashes,
//! and refuses (with a [`PathError`], hence 400) what it cannot normalise
//! without guessing. What it returns is both what gets classified and what
//! gets forwarded.
//!
//! Classification compares whole segments, ignoring ASCII case, `;` matrix
//! parameters and trailing dots or blanks (`/ADMIN`, `/admin;x=1` and
//! `/admin.` are admin routes; `/administrator` is not). Where the two sides
//! could disagree, this errs towards the stricter reading ([`segment_is`]).

use std::borrow::Cow;

use super::{readings, PathError};

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

pub(super) fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// True when the path is already normal: no escapes, no backslash, no
/// empty, `.` or `..` segment except a single trailing slash.
fn is_already_normal(path: &str) -> bool {
    let b = path.as_bytes();
    if b.iter()
        .any(|&c| c == b'%' || c == b'\\' || c < 0x21 || c == 0x7f)
    {
        return false;
    }
    let rest = &path[1..];
    if rest.is_empty() {
        return true;
    }
    let mut segs = rest.split('/').peekable();
    while let Some(seg) = segs.next() {
        let last = segs.peek().is_none();
        match seg {
            "" if last => {}
            "" | "." | ".." => return false,
            _ => {}
        }
    }
    true
}

/// Decode the escapes of one segment: unreserved characters become literal,
/// everything else stays escaped (with upper-case hex). Checks the fully
/// decoded bytes for separators, control characters and UTF-8.
fn decode_segment<'a>(raw: &'a str, scratch: &mut Vec<u8>) -> Result<Cow<'a, str>, PathError> {
    let b = raw.as_bytes();
    if b.contains(&b'\\') {
        return Err(PathError::Backslash);
    }
    if b.iter().any(|&c| c < 0x20 || c == 0x7f) {
        return Err(PathError::ControlChar);
    }
    if !b.contains(&b'%') {
        return Ok(Cow::Borrowed(raw));
    }
    scratch.clear();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c != b'%' {
            scratch.push(c);
            // `raw` is a str, so copying byte-wise keeps it valid UTF-8 as
            // long as whole characters are copied: do it by char boundary.
            let ch_len = utf8_len(c);
            out.push_str(&raw[i..i + ch_len]);
            scratch.extend_from_slice(&b[i + 1..i + ch_len]);
            i += ch_len;
            continue;
        }
        let (Some(h), Some(l)) = (
            b.get(i + 1).copied().and_then(hex_val),
            b.get(i + 2).copied().and_then(hex_val),
        ) else {
            return Err(PathError::BadEscape);
        };
        let d = h << 4 | l;
        match d {
            b'/' | b'\\' => return Err(PathError::EncodedSeparator),
            0..=0x1f | 0x7f => return Err(PathError::ControlChar),
            _ => {}
        }
        scratch.push(d);
        if is_unreserved(d) {
            out.push(d as char);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(HEX[usize::from(d >> 4)] as char);
            out.push(HEX[usize::from(d & 0xf)] as char);
        }
        i += 3;
    }
    if std::str::from_utf8(scratch).is_err() {
        return Err(PathError::InvalidUtf8);
    }
    Ok(Cow::Owned(out))
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// Normalise a request path (without the query): decode unreserved escapes,
/// resolve `.` and `..`, merge repeated slashes. Keeps one trailing slash.
pub fn normalise(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_already_normal(path) {
        return Ok(Cow::Borrowed(path));
    }
    let mut out = String::with_capacity(path.len());
    let mut starts: Vec<usize> = Vec::new();
    let mut scratch = Vec::new();
    let mut trailing = false;
    let mut segs = path[1..].split('/').peekable();
    while let Some(raw) = segs.next() {
        let last = segs.peek().is_none();
        let seg = decode_segment(raw, &mut scratch)?;
        match seg.as_ref() {
            "" | "." => trailing = last,
            ".." => {
                let start = starts.pop().ok_or(PathError::AboveRoot)?;
                out.truncate(start);
                trailing = last;
            }
            s => {
                starts.push(out.len());
                out.push('/');
                out.push_str(s);
                trailing = false;
            }
        }
    }
    if out.is_empty() || trailing {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

/// Fully percent-decode a (normalised, hence valid) segment.
pub(super) fn decode_all(seg: &str) -> Cow<'_, str> {
    if !seg.contains('%') {
        return Cow::Borrowed(seg);
    }
    match String::from_utf8(readings::decode_round(seg.as_bytes(), false)) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// Does a path segment name the literal `lit` (lower-case)? Ignores ASCII
/// case, `;` parameters and trailing dots/blanks, after decoding.
pub fn segment_is(seg: &str, lit: &str) -> bool {
    if !seg.contains(['%', ';', '.', ' ']) {
        return seg.eq_ignore_ascii_case(lit);
    }
    let decoded = decode_all(seg);
    let key = decoded.split(';').next().unwrap_or("");
    let key = key.trim_end_matches(['.', ' ', '\t']);
    key.eq_ignore_ascii_case(lit)
}

/// Split a normalised path into its segments (no empty ones but a trailing
/// slash yields none).
pub(super) fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}
