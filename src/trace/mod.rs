//! Distributed traces: W3C Trace Context in, OTLP/HTTP protobuf out.
//!
//! Off unless `tracing.otlp_endpoint` (or `OTEL_EXPORTER_OTLP_ENDPOINT`)
//! names a collector. Off, [`Tracer::start`] is one branch and the
//! client's `traceparent`/`tracestate` reach the CMS as any other header
//! does.
//!
//! | file | concept |
//! | --- | --- |
//! | `context.rs` | trace and span ids, flags, `traceparent` read and written |
//! | `tracestate.rs` | the client's `tracestate`, checked and combined |
//! | `rng.rs` | new ids: a fast per-thread generator |
//! | `sampler.rs` | the head sampler (parent-based, `sample_ratio` on top) |
//! | `span.rs` | a span as the request path holds it; [`Span::none`] for untraced requests |
//! | `active.rs` | one recorded request: its SERVER span, what it forwards, its hand-over to the exporter |
//! | `request.rs` | [`RequestTrace`]: a request's trace as the request path carries it, recorded or not |
//! | `attr.rs` | attribute names (OpenTelemetry's semantic conventions, `authgate.*`) |
//! | `otlp.rs` | the OTLP protobuf messages, encoded by hand |
//! | `export.rs` | the background exporter: bounded queue, batches, HTTP/1.1 to the collector |
//!
//! # What a request does
//!
//! ```text
//! Tracer::start(method, headers)
//!   off ─────────────────────────────────────► None (one branch)
//!   traceparent valid? ── parse ── sample? ─no─► None: the request is not recorded, and
//!                                  │             the client's headers go on unchanged
//!                                  yes
//!                                  ▼
//!   ActiveTrace: SERVER span (parent: the client's span, remote)
//!     .child("…", Kind::Internal | Kind::Client) → Span … span.end_child / end_child
//!     .traceparent_for_upstream(&client_span) → the CMS's `traceparent`
//!     .end() → one message on the exporter's queue (full: dropped, counted)
//! ```
//!
//! # Forwarding: what the CMS receives
//!
//! The W3C spec ("Mutating the traceparent Field") lets a service that
//! records nothing for a request pass `traceparent` and `tracestate` on
//! unchanged, as a proxy does, and asks one that takes part to put its
//! own span in `parent-id` (and a new `parent-id` whenever it changes
//! `sampled`). authgate does both, by request:
//!
//! * **recorded**: the CMS gets `00-<trace id>-<authgate's CLIENT span of
//!   the upstream exchange>-<flags>`, sampled set, the random flag as it
//!   came (set for a trace started here), unknown flags cleared, a higher
//!   version written as `00`; `tracestate` as it came (checked, combined;
//!   authgate adds no entry); the client's own fields are replaced. A
//!   request without a valid `traceparent` starts a trace here, and a
//!   client's `tracestate` without a valid `traceparent` is dropped.
//! * **not recorded** (tracing off, the client's flag clear, or the ratio
//!   said no): nothing is generated, and the client's fields go on as they
//!   came. The CMS's spans then hang under the client's span, which is
//!   where they belong when authgate left no span between them, and a
//!   client that recorded keeps its `sampled` flag for the CMS to honour.
//!   Rewriting them with a span id nobody exports would cut the CMS off
//!   from the client's trace, and unsampled requests (most of them, at a
//!   low ratio) would pay for ids and formatting.
//!
//! # Why an exporter of its own
//!
//! `opentelemetry-otlp` with `http-proto` would bring the OpenTelemetry SDK
//! (its own span model, sampler and batch processor, a `Mutex` per span,
//! dynamic dispatch per attribute), prost and `opentelemetry-http`, a dozen
//! crates for the one message this module sends. The encoding here is a
//! hundred lines (`otlp.rs`), checked against the `opentelemetry-proto`
//! Python package; the HTTP is hyper's client connection, already in the
//! tree as the server's (its `client` feature adds `want` and `try-lock`).
//! A clean `cargo build --release`, measured once on the project's 2-core
//! machine: 150 s without this module, 136 s with it, i.e. no difference
//! above that machine's noise; the binary grew by 0.5 MB (0.9 %).

pub mod active;
pub mod attr;
pub mod context;
pub mod export;
pub mod otlp;
pub mod request;
pub mod rng;
pub mod sampler;
pub mod span;
pub mod tracestate;

use std::sync::Arc;

use http::header::HeaderMap;
use http::Method;
use prometheus::IntCounter;
use tokio::sync::mpsc;

pub use active::{method_attr, span_name, ActiveTrace, Ended};
pub use context::{SpanId, TraceFlags, TraceId, TraceParent, TRACEPARENT, TRACESTATE};
pub use export::{ExportSettings, Exporter};
pub use request::{Propagate, RequestTrace};
pub use sampler::Sampler;
pub use span::{Kind, Span, SpanData, StatusCode, Value};

use crate::config::TracingConfig;
use crate::metrics::Metrics;

/// Why tracing cannot start with a config.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("tracing.otlp_endpoint: {0}")]
    Endpoint(String),
    #[error("tracing.otlp_endpoint: TLS set-up failed")]
    Tls(#[source] crate::tls::TlsError),
}

/// Starts the traces of requests, or says there are none. Cheap to clone.
#[derive(Clone, Default)]
pub struct Tracer {
    inner: Option<Arc<Inner>>,
}

/// The sampler, and the exporter's queue with its drop counters.
pub(crate) struct Inner {
    sampler: Sampler,
    queue: mpsc::Sender<Ended>,
    /// Spans dropped because the queue was full.
    dropped_full: IntCounter,
    /// Spans that ended after the exporter stopped.
    dropped_closed: IntCounter,
}

impl Inner {
    /// Hand a request's spans to the exporter, or count them dropped.
    fn queue(&self, ended: Ended) {
        let n = ended.spans.len() as u64;
        match self.queue.try_send(ended) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.dropped_full.inc_by(n),
            Err(mpsc::error::TrySendError::Closed(_)) => self.dropped_closed.inc_by(n),
        }
    }
}

impl Tracer {
    /// No tracing.
    pub fn off() -> Self {
        Self { inner: None }
    }

    /// The tracer a config asks for, and its exporter task (started here:
    /// call inside a Tokio runtime). Off without an endpoint.
    pub fn new(
        cfg: &TracingConfig,
        metrics: &Metrics,
    ) -> Result<(Self, Option<Exporter>), TraceError> {
        Self::with_settings(cfg, metrics, ExportSettings::default())
    }

    /// [`Tracer::new`] with the exporter's batching and timeouts given.
    pub fn with_settings(
        cfg: &TracingConfig,
        metrics: &Metrics,
        settings: ExportSettings,
    ) -> Result<(Self, Option<Exporter>), TraceError> {
        let Some(url) = &cfg.endpoint else {
            return Ok((Self::off(), None));
        };
        let endpoint = export::Endpoint::new(url)?;
        let (tracer, queue) = Self::queued(cfg.sample_ratio, settings.queue, metrics);
        let exporter = Exporter::spawn(
            endpoint,
            otlp::Resource::new(&cfg.service_name),
            queue,
            settings,
            export::Counters {
                exported: metrics.trace_spans_exported.clone(),
                failed: metrics
                    .trace_spans_dropped
                    .with_label_values(&["export_failed"]),
            },
        );
        Ok((tracer, Some(exporter)))
    }

    /// A tracer sampling at `ratio` whose ended requests go to the
    /// returned queue (at most `capacity` waiting).
    fn queued(ratio: f64, capacity: usize, metrics: &Metrics) -> (Self, mpsc::Receiver<Ended>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let dropped = |reason| metrics.trace_spans_dropped.with_label_values(&[reason]);
        let inner = Inner {
            sampler: Sampler::new(ratio),
            queue: tx,
            dropped_full: dropped("queue_full"),
            dropped_closed: dropped("shutdown"),
        };
        (
            Self {
                inner: Some(Arc::new(inner)),
            },
            rx,
        )
    }

    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    /// The trace of a request arriving with `headers`, if it is recorded
    /// (see the module's table); `None` costs one branch when tracing is
    /// off.
    pub fn start(&self, method: &Method, headers: &HeaderMap) -> Option<ActiveTrace> {
        let inner = self.inner.as_ref()?;
        let parent = TraceParent::from_headers(headers);
        let trace_id = parent.map_or_else(rng::trace_id, |p| p.trace_id);
        if !inner.sampler.sample(parent.map(|p| p.flags), &trace_id) {
            return None;
        }
        let tracestate = parent.and_then(|_| tracestate::from_headers(headers));
        Some(ActiveTrace::begin(
            inner.clone(),
            method,
            parent,
            trace_id,
            tracestate,
        ))
    }
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer").field("on", &self.is_on()).finish()
    }
}

#[cfg(test)]
mod tests;
