//! OTLP's protobuf messages for traces, encoded by hand: the few fields
//! authgate sends of `ExportTraceServiceRequest` → `ResourceSpans` →
//! `ScopeSpans` → `Span` (with `KeyValue`/`AnyValue` attributes and
//! `Status`), field numbers as in opentelemetry-proto's
//! `opentelemetry/proto/{collector/trace,trace,common,resource}/v1/*.proto`.
//!
//! Why by hand: five message types and four wire types (varint, 64-bit,
//! length-delimited, 32-bit) are about a hundred lines, where prost would
//! bring a derive macro and a build step, and the OpenTelemetry SDK its own
//! span model, for a message that never changes shape here. The encoding is
//! checked against an independent decoder, the `opentelemetry-proto`
//! Python package (`tests/trace.rs`).
//!
//! A nested message is written in place and its length put in front of it
//! afterwards (one move of its bytes): the exporter encodes off the request
//! path, a batch at a time.

use std::time::Instant;

use super::active::Ended;
use super::attr;
use super::span::{Kind, SpanData, StatusCode, Value};

// Wire types.
const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const I32: u8 = 5;

/// `Span.flags`: the W3C flags in the low byte, then whether the parent's
/// remoteness is known, and whether the parent is remote.
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(out, u64::from(field) << 3 | u64::from(wire));
}

fn put_bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    put_key(out, field, LEN);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_uint(out: &mut Vec<u8>, field: u32, v: u64) {
    put_key(out, field, VARINT);
    put_varint(out, v);
}

fn put_fixed64(out: &mut Vec<u8>, field: u32, v: u64) {
    put_key(out, field, I64);
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_fixed32(out: &mut Vec<u8>, field: u32, v: u32) {
    put_key(out, field, I32);
    out.extend_from_slice(&v.to_le_bytes());
}

/// A length-delimited field holding the message `write` puts down.
fn put_message(out: &mut Vec<u8>, field: u32, write: impl FnOnce(&mut Vec<u8>)) {
    put_key(out, field, LEN);
    let start = out.len();
    write(out);
    let len = out.len() - start;
    let mut prefix = Vec::with_capacity(5);
    put_varint(&mut prefix, len as u64);
    out.splice(start..start, prefix);
}

/// `KeyValue { key = 1; AnyValue value = 2 }`, `AnyValue { string_value =
/// 1; bool_value = 2; int_value = 3 }`.
fn put_attr(out: &mut Vec<u8>, field: u32, key: &str, value: &Value) {
    put_message(out, field, |kv| {
        put_bytes(kv, 1, key.as_bytes());
        put_message(kv, 2, |any| match value {
            Value::Str(s) => put_bytes(any, 1, s.as_bytes()),
            Value::Bool(b) => put_uint(any, 2, u64::from(*b)),
            // int64: two's complement in a varint.
            Value::Int(n) => put_uint(any, 3, *n as u64),
        });
    });
}

/// Who sends the spans: the `Resource` and the `InstrumentationScope`,
/// encoded once.
#[derive(Debug, Clone)]
pub struct Resource {
    /// `Resource` message body.
    resource: Vec<u8>,
    /// `InstrumentationScope` message body.
    scope: Vec<u8>,
}

impl Resource {
    pub fn new(service_name: &str) -> Self {
        let version = env!("CARGO_PKG_VERSION");
        let mut resource = Vec::new();
        for (k, v) in [
            (attr::SERVICE_NAME, service_name),
            (attr::SERVICE_VERSION, version),
            (attr::TELEMETRY_SDK_NAME, "authgate"),
            (attr::TELEMETRY_SDK_LANGUAGE, "rust"),
            (attr::TELEMETRY_SDK_VERSION, version),
        ] {
            put_attr(&mut resource, 1, k, &Value::from(v.to_owned()));
        }
        let mut scope = Vec::new();
        put_bytes(&mut scope, 1, b"authgate");
        put_bytes(&mut scope, 2, version.as_bytes());
        Self { resource, scope }
    }
}

/// One `ExportTraceServiceRequest` holding every span of `batches`.
pub fn encode_request(resource: &Resource, batches: &[Ended]) -> Vec<u8> {
    let spans: usize = batches.iter().map(|b| b.spans.len()).sum();
    let mut out = Vec::with_capacity(256 + spans * 320);
    put_message(&mut out, 1, |rs| {
        put_bytes(rs, 1, &resource.resource);
        put_message(rs, 2, |ss| {
            put_bytes(ss, 1, &resource.scope);
            for batch in batches {
                for span in &batch.spans {
                    put_message(ss, 2, |s| put_span(s, batch, span));
                }
            }
        });
    });
    out
}

/// `Span`'s fields, in field-number order.
fn put_span(out: &mut Vec<u8>, batch: &Ended, span: &SpanData) {
    put_bytes(out, 1, &batch.trace_id.0);
    put_bytes(out, 2, &span.id.0);
    if let Some(state) = &batch.tracestate {
        put_bytes(out, 3, state.as_bytes());
    }
    if let Some(parent) = span.parent {
        put_bytes(out, 4, &parent.0);
    }
    put_bytes(out, 5, span.name.as_bytes());
    put_uint(out, 6, kind_number(span.kind));
    put_fixed64(out, 7, batch.unix_nanos(span.start));
    put_fixed64(out, 8, batch.unix_nanos(span.end));
    for (k, v) in &span.attrs {
        put_attr(out, 9, k, v);
    }
    if span.status != StatusCode::Unset {
        put_message(out, 15, |st| {
            if let Some(m) = &span.status_message {
                put_bytes(st, 2, m.as_bytes());
            }
            put_uint(st, 3, status_number(span.status));
        });
    }
    // The server span's parent is the client's; every other one is ours.
    let remote = span.kind == Kind::Server && span.parent.is_some();
    let flags = u32::from(batch.flags.bits()) | HAS_IS_REMOTE | if remote { IS_REMOTE } else { 0 };
    put_fixed32(out, 16, flags);
}

/// `Span.SpanKind`.
fn kind_number(k: Kind) -> u64 {
    match k {
        Kind::Internal => 1,
        Kind::Server => 2,
        Kind::Client => 3,
    }
}

/// `Status.StatusCode`.
fn status_number(s: StatusCode) -> u64 {
    match s {
        StatusCode::Unset => 0,
        StatusCode::Ok => 1,
        StatusCode::Error => 2,
    }
}

impl Ended {
    /// An instant of this request as Unix nanoseconds, by the clock
    /// reading taken when it began.
    fn unix_nanos(&self, t: Instant) -> u64 {
        let since = t.saturating_duration_since(self.anchor);
        self.anchor_unix_nanos
            .saturating_add(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, v);
        out
    }

    #[test]
    fn varints() {
        // The protobuf encoding guide's examples.
        assert_eq!(varint(0), [0x00]);
        assert_eq!(varint(1), [0x01]);
        assert_eq!(varint(150), [0x96, 0x01]);
        assert_eq!(varint(300), [0xac, 0x02]);
        assert_eq!(
            varint(u64::MAX),
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
        // int64 -1 is ten bytes.
        assert_eq!(varint(-1i64 as u64).len(), 10);
    }

    #[test]
    fn attributes_as_key_values() {
        let mut out = Vec::new();
        put_attr(&mut out, 9, "a", &Value::Int(1));
        // field 9, LEN; KeyValue{1: "a", 2: AnyValue{3: 1}}
        assert_eq!(out, [0x4a, 0x07, 0x0a, 0x01, b'a', 0x12, 0x02, 0x18, 0x01]);
        let mut out = Vec::new();
        put_attr(&mut out, 1, "b", &Value::Bool(true));
        assert_eq!(out, [0x0a, 0x07, 0x0a, 0x01, b'b', 0x12, 0x02, 0x10, 0x01]);
        let mut out = Vec::new();
        put_attr(&mut out, 1, "c", &Value::from("xy"));
        assert_eq!(
            out,
            [0x0a, 0x09, 0x0a, 0x01, b'c', 0x12, 0x04, 0x0a, 0x02, b'x', b'y']
        );
    }

    #[test]
    fn long_messages_get_multi_byte_lengths() {
        let mut out = Vec::new();
        put_message(&mut out, 2, |m| m.extend_from_slice(&[7u8; 300]));
        assert_eq!(&out[..3], &[0x12, 0xac, 0x02]);
        assert_eq!(out.len(), 3 + 300);
        assert!(out[3..].iter().all(|b| *b == 7));
    }

    #[test]
    fn fixed_width_fields_are_little_endian() {
        let mut out = Vec::new();
        put_fixed64(&mut out, 7, 0x0102_0304_0506_0708);
        put_fixed32(&mut out, 16, 0x301);
        assert_eq!(
            out,
            [0x39, 8, 7, 6, 5, 4, 3, 2, 1, 0x85, 0x01, 0x01, 0x03, 0x00, 0x00]
        );
    }
}
