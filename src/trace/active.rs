//! One traced request: its SERVER span, the context it forwards, and the
//! hand-over of its spans to the exporter when it ends.
//!
//! An [`ActiveTrace`] exists only for a request that is recorded
//! ([`super::Tracer::start`] says `None` otherwise), so everything here is
//! paid by sampled requests alone. When it ends, its spans go to the
//! exporter's queue in one message; a full queue drops them (counted),
//! never waits. A request whose future is dropped before it ends (the
//! client went away) still sends its spans, the SERVER span marked as
//! cancelled.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::Method;

use super::attr;
use super::context::{Encoded, SpanId, TraceFlags, TraceId, TraceParent};
use super::span::{Kind, Span, SpanData, Value};
use super::Inner;

/// A recorded request in flight.
pub struct ActiveTrace {
    tracer: Arc<Inner>,
    trace_id: TraceId,
    /// The flags forwarded: sampled, and random as it came (or set, for a
    /// trace started here).
    flags: TraceFlags,
    tracestate: Option<String>,
    server: Span,
    anchor: Instant,
    anchor_unix_nanos: u64,
    ended: bool,
}

/// A request's spans, ended, as the exporter takes them.
#[derive(Debug)]
pub struct Ended {
    pub trace_id: TraceId,
    pub flags: TraceFlags,
    pub tracestate: Option<String>,
    /// The SERVER span first, then its descendants.
    pub spans: Vec<SpanData>,
    /// A clock reading taken at the start, on both clocks: spans keep
    /// monotonic instants, and are placed on the wall clock by it.
    pub anchor: Instant,
    pub anchor_unix_nanos: u64,
}

impl ActiveTrace {
    /// Begin the SERVER span of a sampled request.
    pub(super) fn begin(
        tracer: Arc<Inner>,
        method: &Method,
        parent: Option<TraceParent>,
        trace_id: TraceId,
        tracestate: Option<String>,
    ) -> Self {
        let anchor = Instant::now();
        let anchor_unix_nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let flags = match parent {
            Some(p) => p.flags.with_sampled(true),
            None => TraceFlags::new(TraceFlags::SAMPLED | TraceFlags::RANDOM),
        };
        let (name, known) = method_name(method);
        let mut server = Span::start_at(
            Cow::Borrowed(name),
            Kind::Server,
            parent.map(|p| p.parent_id),
            anchor,
        );
        match known {
            Some(m) => server.set_attr(attr::HTTP_REQUEST_METHOD, m),
            None => {
                server.set_attr(attr::HTTP_REQUEST_METHOD, "_OTHER");
                server.set_attr(
                    attr::HTTP_REQUEST_METHOD_ORIGINAL,
                    method.as_str().to_owned(),
                );
            }
        }
        Self {
            tracer,
            trace_id,
            flags,
            tracestate,
            server,
            anchor,
            anchor_unix_nanos,
            ended: false,
        }
    }

    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The SERVER span's id.
    pub fn span_id(&self) -> SpanId {
        self.server.id().unwrap_or(SpanId([0; 8]))
    }

    /// The SERVER span, for its attributes and status.
    pub fn span(&mut self) -> &mut Span {
        &mut self.server
    }

    /// Set an attribute on the SERVER span.
    pub fn set_attr(&mut self, key: &'static str, value: impl Into<Value>) {
        self.server.set_attr(key, value);
    }

    /// Start a child of the SERVER span, now.
    pub fn child(&self, name: &'static str, kind: Kind) -> Span {
        self.server.child(name, kind)
    }

    /// End a child of the SERVER span (see [`Span::end_child`]).
    pub fn end_child(&mut self, child: Span) {
        self.server.end_child(child);
    }

    /// The `traceparent` to send the CMS: this trace, `via` as the parent
    /// (the CLIENT span of the upstream exchange; the SERVER span when
    /// `via` records nothing), sampled.
    pub fn traceparent_for_upstream(&self, via: &Span) -> Encoded {
        TraceParent {
            trace_id: self.trace_id,
            parent_id: via.id().unwrap_or_else(|| self.span_id()),
            flags: self.flags,
        }
        .encode()
    }

    /// The client's `tracestate`, combined and checked, to send on with
    /// the `traceparent` (none for a trace started here).
    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }

    /// End the request's trace now and queue its spans for export.
    pub fn end(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let mut spans = Vec::new();
        std::mem::replace(&mut self.server, Span::none()).finish_into(&mut spans);
        self.tracer.queue(Ended {
            trace_id: self.trace_id,
            flags: self.flags,
            tracestate: self.tracestate.take(),
            spans,
            anchor: self.anchor,
            anchor_unix_nanos: self.anchor_unix_nanos,
        });
    }
}

impl Drop for ActiveTrace {
    fn drop(&mut self) {
        if !self.ended {
            self.server
                .set_error("cancelled", "the request ended before its response");
            self.finish();
        }
    }
}

impl std::fmt::Debug for ActiveTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActiveTrace")
            .field("trace_id", &self.trace_id)
            .field("span_id", &self.span_id())
            .field("flags", &self.flags)
            .finish_non_exhaustive()
    }
}

/// The span name and `http.request.method` of a method: the standard ones
/// by name; any other is "HTTP" with `_OTHER` (the HTTP conventions keep
/// the span name's cardinality low).
fn method_name(m: &Method) -> (&'static str, Option<&'static str>) {
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::HEAD, "HEAD"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::CONNECT, "CONNECT"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::TRACE, "TRACE"),
        (Method::PATCH, "PATCH"),
    ];
    match KNOWN.iter().find(|(k, _)| k == m) {
        Some((_, name)) => (name, Some(name)),
        None => ("HTTP", None),
    }
}

/// The name of an HTTP span for `m` (`GET`, ..., or `HTTP`).
pub fn span_name(m: &Method) -> &'static str {
    method_name(m).0
}

/// `http.request.method` for `m` (`GET`, ..., or `_OTHER`).
pub fn method_attr(m: &Method) -> &'static str {
    method_name(m).1.unwrap_or("_OTHER")
}
