//! The upstream client's response-head parser and chunked decoder under a
//! coverage-guided fuzzer: whatever an upstream writes, they return an
//! answer or an error, never panic, and hold to what the proxy relies on:
//! - a head taken out of the buffer leaves exactly the bytes after it; a
//!   partial head leaves the buffer alone;
//! - no hop-by-hop header (nor one `Connection` names) is passed on but a
//!   101's, and no `Content-Length` beside a `Transfer-Encoding`;
//! - a response read to the close, or in HTTP/1.0, never keeps its
//!   connection; one with a transfer coding is chunked or refused;
//! - the chunked decoder gives the same bytes, the same end and the same
//!   verdict however the input is split into reads, and never more bytes
//!   than it was given.
#![no_main]

use authgate::upstream::fuzzing::{parse_response_head, BodyFraming, Chunked};
use authgate::forward::hop::is_hop_by_hop;
use bytes::BytesMut;
use http::{Method, StatusCode, Version};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, raw)) = data.split_first() else {
        return;
    };
    let method = if ctl & 1 == 0 { Method::GET } else { Method::HEAD };
    let step = usize::from(ctl >> 1) + 1;
    head(raw, &method, step);
    chunked_any_split(raw, step);
});

fn head(raw: &[u8], method: &Method, step: usize) {
    let mut buf = BytesMut::from(raw);
    let head = match parse_response_head(&mut buf, method) {
        Ok(Some(head)) => head,
        Ok(None) => {
            assert_eq!(&buf[..], raw, "a partial head leaves the buffer alone");
            return;
        }
        Err(_) => return,
    };
    let used = raw.len() - buf.len();
    assert!(used > 0);
    assert_eq!(&raw[used..], &buf[..], "exactly the bytes after the head stay");
    // The same head as the reference parser reads it.
    let mut lines = [httparse::EMPTY_HEADER; 256];
    let mut reference = httparse::Response::new(&mut lines);
    let parsed = reference.parse(&raw[..used]);
    assert!(
        matches!(parsed, Ok(httparse::Status::Complete(n)) if n == used),
        "{parsed:?}"
    );
    let named = |name: &str| {
        reference
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case(name))
    };
    let connection_names: Vec<String> = reference
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| h.value.split(|b| *b == b','))
        .map(|t| String::from_utf8_lossy(t.trim_ascii()).to_ascii_lowercase())
        .collect();
    if head.status != StatusCode::SWITCHING_PROTOCOLS {
        for name in head.headers.keys() {
            assert!(!is_hop_by_hop(name.as_str()), "{name} passed on");
            assert!(
                !connection_names.iter().any(|c| c == name.as_str()),
                "{name} is named by Connection"
            );
        }
        if named("transfer-encoding") {
            assert!(!head.headers.contains_key(http::header::CONTENT_LENGTH));
        }
    }
    if head.framing == BodyFraming::UntilClose || head.version == Version::HTTP_10 {
        assert!(!head.keep_alive);
    }
    if named("transfer-encoding") {
        assert_ne!(head.version, Version::HTTP_10, "faulty framing accepted");
        assert!(
            matches!(head.framing, BodyFraming::Chunked | BodyFraming::Empty),
            "{:?}",
            head.framing
        );
    }
    if head.framing == BodyFraming::Chunked {
        chunked_any_split(&buf, step);
    }
}

/// What a chunked decoder made of its input: the bytes, whether it
/// refused, where it stopped, and what it left unread.
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    data: Vec<u8>,
    refused: bool,
    state: Chunked,
    left: usize,
}

fn decode(input: &[u8], step: usize) -> Decoded {
    let mut state = Chunked::Size;
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    for piece in input.chunks(step) {
        buf.extend_from_slice(piece);
        loop {
            match state.step(&mut buf) {
                Ok(Some(d)) => data.extend_from_slice(&d),
                Ok(None) => break,
                Err(_) => {
                    return Decoded {
                        data,
                        refused: true,
                        state,
                        left: 0,
                    }
                }
            }
        }
    }
    Decoded {
        data,
        refused: false,
        state,
        left: buf.len(),
    }
}

fn chunked_any_split(input: &[u8], step: usize) {
    let whole = decode(input, input.len().max(1));
    let split = decode(input, step);
    assert_eq!(whole, split, "split into reads of {step}");
    assert!(whole.data.len() <= input.len());
    if whole.state == Chunked::Done && !whole.refused {
        assert!(whole.left < input.len() || input.is_empty());
    }
}
