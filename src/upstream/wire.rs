//! HTTP/1.1 toward the upstream: the bytes of a request head, the reading
//! of a response head, and the framing of both bodies.
//!
//! Pure functions over buffers, no I/O: `conn` drives them. Written for
//! this one job rather than taken from a general client: a request head is
//! written in one pass from the headers the proxy kept, and a response head
//! is parsed in place (its header values share the read buffer).

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};

use crate::forward::hop;
use crate::forward::lines::write_decimal;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

/// The largest response head accepted.
pub const MAX_HEAD: usize = 64 * 1024;
/// The most header lines accepted in a response head.
pub const MAX_HEADERS: usize = 128;

/// A response the upstream wrote that cannot be read as HTTP/1.1.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("malformed response head: {0}")]
    Head(httparse::Error),
    #[error("response head larger than {MAX_HEAD} bytes or {MAX_HEADERS} headers")]
    HeadTooLarge,
    #[error("invalid header in the response")]
    Header,
    #[error("conflicting or invalid Content-Length in the response")]
    Length,
    #[error("invalid chunked body: {0}")]
    Chunk(&'static str),
    /// A transfer coding other than one final `chunked` (`gzip`,
    /// `gzip, chunked`, `chunked, chunked`, `identity`...): its bytes would
    /// reach the client coded with nothing saying so.
    #[error("transfer coding other than a single `chunked` in the response")]
    Coding,
    /// `Transfer-Encoding` in an HTTP/1.0 response: faulty framing (RFC 9112
    /// section 6.1).
    #[error("Transfer-Encoding in an HTTP/1.0 response")]
    Http10Coding,
}

/// How a request body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body, and no `Content-Length` said.
    None,
    /// `Content-Length: n` (also 0, for a method that carries a body).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

impl RequestFraming {
    /// The framing for a body: its exact length when known, else chunked.
    /// An empty body states `Content-Length: 0` when the method carries a
    /// body or the client said a length.
    pub fn for_body(method: &Method, said_length: bool, end: bool, exact: Option<u64>) -> Self {
        match exact {
            Some(0) | None if end => {
                let carries = matches!(*method, Method::POST | Method::PUT | Method::PATCH);
                if carries || said_length {
                    Self::Length(0)
                } else {
                    Self::None
                }
            }
            Some(n) => Self::Length(n),
            None => Self::Chunked,
        }
    }
}

/// Append a request head: `METHOD target HTTP/1.1`, `host`,
/// every header but the framing ones (the body's framing is written
/// instead), the `added` lines (already in wire form), a blank line.
pub fn write_request_head(
    out: &mut Vec<u8>,
    method: &Method,
    target: &str,
    host: &HeaderValue,
    headers: &HeaderMap,
    added: &[u8],
    framing: RequestFraming,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    out.extend_from_slice(b"host: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(added);
    match framing {
        RequestFraming::None => {}
        RequestFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            write_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        RequestFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// The start of one chunk of a chunked request body.
pub fn chunk_header(len: usize) -> Vec<u8> {
    let mut v = format!("{len:x}").into_bytes();
    v.extend_from_slice(b"\r\n");
    v
}

/// The end of a chunked request body (no trailers).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// How a response body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the upstream closes.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: BodyFraming,
    /// May the connection carry another request after this response?
    pub keep_alive: bool,
}

/// Read a response head from the start of `buf`, taking its bytes out of
/// it (the header values keep sharing them), without its hop-by-hop
/// headers, and without its `Content-Length` when a `Transfer-Encoding`
/// overrides it (RFC 9112 section 6.3: an intermediary must remove it).
/// `Ok(None)`: not all of it is there yet.
pub fn parse_response_head(
    buf: &mut BytesMut,
    method: &Method,
) -> Result<Option<ResponseHead>, WireError> {
    let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut slots);
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(WireError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(WireError::HeadTooLarge),
        Err(e) => return Err(WireError::Head(e)),
    };
    if len > MAX_HEAD {
        return Err(WireError::HeadTooLarge);
    }
    let code = resp.code.unwrap_or(0);
    let status =
        StatusCode::from_u16(code).map_err(|_| WireError::Head(httparse::Error::Status))?;
    let version = if resp.version == Some(1) {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    let raw: &[httparse::Header<'_>] = resp.headers;
    let facts = Facts::read(raw)?;
    let connection = hop::Connection::read(|| {
        raw.iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
            .map(|h| h.value)
    });
    if facts.coding != Coding::Absent && version == Version::HTTP_10 {
        return Err(WireError::Http10Coding);
    }
    let framing = response_framing(method, status, &facts)?;
    // Only a response framed exactly leaves the connection fit for
    // another: not one read to the close, and not one whose length said
    // something its transfer coding overrode.
    let overridden = facts.coding != Coding::Absent;
    let keep_alive = framing != BodyFraming::UntilClose
        && version == Version::HTTP_11
        && !connection.close
        && !(overridden && facts.length.is_some());
    // Hop-by-hop headers, and those `Connection` names, stop here (but a
    // 101's `Connection` and `Upgrade`, which tell the client what it
    // switched to); so does a length that a transfer coding overrides
    // (RFC 9112 section 6.3: an intermediary must remove it).
    let switch = status == StatusCode::SWITCHING_PROTOCOLS;
    let dropped = |name: &str| {
        let hop = match switch {
            true => connection.drops_in_switch(name),
            false => connection.drops(name),
        };
        hop || !switch && overridden && name.eq_ignore_ascii_case("content-length")
    };
    // Names are made while the parse borrows the buffer; values are cut
    // from the head once it is split off, so they share its bytes.
    let base = buf.as_ptr() as usize;
    let mut lines = Vec::with_capacity(raw.len());
    for h in raw.iter().filter(|h| !dropped(h.name)) {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| WireError::Header)?;
        let start = h.value.as_ptr() as usize - base;
        lines.push((name, start, h.value.len()));
    }
    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(lines.len());
    for (name, start, n) in lines {
        let value = HeaderValue::from_maybe_shared(head.slice(start..start + n))
            .map_err(|_| WireError::Header)?;
        headers.append(name, value);
    }
    Ok(Some(ResponseHead {
        status,
        version,
        headers,
        framing,
        keep_alive,
    }))
}

/// What the `Transfer-Encoding` lines of a response say, together.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Coding {
    /// No `Transfer-Encoding` line.
    #[default]
    Absent,
    /// Exactly one coding, `chunked` (empty list elements ignored).
    Chunked,
    /// Anything else: another coding, more than one, or none named.
    Other,
}

/// What framing needs from a response head, read in one pass over its
/// lines.
#[derive(Default)]
struct Facts {
    /// The transfer codings, over every `Transfer-Encoding` line.
    coding: Coding,
    /// How many codings those lines name.
    codings: usize,
    /// The one `Content-Length` (repeats must agree).
    length: Option<u64>,
}

impl Facts {
    fn read(raw: &[httparse::Header<'_>]) -> Result<Self, WireError> {
        let mut f = Facts::default();
        for h in raw {
            let elements = || hop::elements(h.value);
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                // A line that names no coding still says there is one.
                let mut coding = match f.coding {
                    Coding::Absent => Coding::Other,
                    c => c,
                };
                for t in elements().filter(|t| !t.is_empty()) {
                    let first = f.codings == 0;
                    f.codings += 1;
                    coding = match first && t.eq_ignore_ascii_case(b"chunked") {
                        true => Coding::Chunked,
                        false => Coding::Other,
                    };
                }
                f.coding = coding;
            } else if h.name.eq_ignore_ascii_case("content-length") {
                for t in elements() {
                    let n = parse_length(t).ok_or(WireError::Length)?;
                    if f.length.is_some_and(|l| l != n) {
                        return Err(WireError::Length);
                    }
                    f.length = Some(n);
                }
            }
        }
        Ok(f)
    }
}

/// RFC 9112 section 6.3, in its order: no body for HEAD and for 1xx, 204
/// and 304; chunked when `chunked` is the one transfer coding, and a
/// refusal for any other coding (read to the close, as the RFC allows,
/// its bytes would reach the client still coded, with the header that
/// says so dropped as hop-by-hop); otherwise the `Content-Length`;
/// otherwise until the connection closes.
fn response_framing(
    method: &Method,
    status: StatusCode,
    facts: &Facts,
) -> Result<BodyFraming, WireError> {
    if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(BodyFraming::Empty);
    }
    Ok(match (facts.coding, facts.length) {
        (Coding::Chunked, _) => BodyFraming::Chunked,
        (Coding::Other, _) => return Err(WireError::Coding),
        (Coding::Absent, None) => BodyFraming::UntilClose,
        (Coding::Absent, Some(0)) => BodyFraming::Empty,
        (Coding::Absent, Some(n)) => BodyFraming::Length(n),
    })
}

fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

/// Where a chunked body's reader stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunked {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk, this many bytes left.
    Data(u64),
    /// After a chunk's data, before its CRLF.
    DataEnd,
    /// After the last chunk: trailer lines up to a blank one.
    Trailers,
    /// The body is over.
    Done,
}

/// The largest chunk-size or trailer line accepted.
const MAX_LINE: usize = 8 * 1024;

impl Chunked {
    /// Advance over what `buf` holds, taking it out; returns the next piece
    /// of data (empty when more bytes are needed or the body is over).
    pub fn step(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, WireError> {
        loop {
            match *self {
                Chunked::Size => {
                    let Some(end) = line_end(buf)? else {
                        return Ok(None);
                    };
                    let size = match httparse::parse_chunk_size(&buf[..end]) {
                        Ok(httparse::Status::Complete((_, size))) => size,
                        _ => return Err(WireError::Chunk("bad chunk size")),
                    };
                    buf.advance(end);
                    *self = if size == 0 {
                        Chunked::Trailers
                    } else {
                        Chunked::Data(size)
                    };
                }
                Chunked::Data(mut left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let data = take_up_to(buf, &mut left);
                    *self = if left == 0 {
                        Chunked::DataEnd
                    } else {
                        Chunked::Data(left)
                    };
                    return Ok(Some(data));
                }
                Chunked::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(WireError::Chunk("chunk data not followed by CRLF"));
                    }
                    buf.advance(2);
                    *self = Chunked::Size;
                }
                Chunked::Trailers => {
                    let Some(end) = line_end(buf)? else {
                        return Ok(None);
                    };
                    let blank = end == 2;
                    buf.advance(end);
                    if blank {
                        *self = Chunked::Done;
                    }
                }
                Chunked::Done => return Ok(None),
            }
        }
    }
}

/// Take at most `left` bytes of body from the front of `buf` (sharing
/// them), counting them off `left`.
pub fn take_up_to(buf: &mut BytesMut, left: &mut u64) -> Bytes {
    let take = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
    *left -= take as u64;
    buf.split_to(take).freeze()
}

/// The length of the first line in `buf` with its CRLF, if it is all there.
fn line_end(buf: &[u8]) -> Result<Option<usize>, WireError> {
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(i) if i + 2 <= MAX_LINE => Ok(Some(i + 2)),
        Some(_) => Err(WireError::Chunk("line too long")),
        None if buf.len() > MAX_LINE => Err(WireError::Chunk("line too long")),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests;
