//! Traces out of authgate, read by an independent decoder: Python's
//! `opentelemetry-proto` (tests/otlp/receiver.py), as a decoder of bytes
//! and as an OTLP/HTTP receiver the exporter sends to.
//!
//! * the encoding of every field authgate writes decodes to what was put in;
//! * spans reach a receiver with the client's trace id and the right
//!   parents, on a timer and at shutdown, over one kept connection and
//!   again after the collector came back;
//! * a collector that is gone, silent or refusing costs the spans (counted)
//!   and nothing else: no panic, no wait on the request path, a bounded
//!   shutdown.

// Test set-up: a failure is the test failing.
#![allow(clippy::unwrap_used)]

mod support;

use std::borrow::Cow;
use std::path::Path;
use std::time::{Duration, Instant};

use authgate::config::TracingConfig;
use authgate::metrics::Metrics;
use authgate::trace::otlp::{encode_request, Resource};
use authgate::trace::{
    attr, Ended, ExportSettings, Exporter, Kind, SpanData, SpanId, StatusCode, TraceFlags, TraceId,
    Tracer, Value,
};
use http::header::{HeaderMap, HeaderValue};
use http::Method;
use serde_json::json;
use support::otlp::{decode, Receiver};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// `[tracing]` as the config file states it.
fn tracing_config(endpoint: &str, ratio: f64, service: &str) -> TracingConfig {
    let text = format!(
        "[tokens]\nsalt = \"s\"\n[tracing]\notlp_endpoint = \"{endpoint}\"\n\
         sample_ratio = {ratio:?}\nservice_name = \"{service}\"\n"
    );
    authgate::config::parse_raw(&text, Path::new("t.toml"), Vec::new())
        .unwrap()
        .compile()
        .unwrap()
        .tracing
}

fn quick() -> ExportSettings {
    ExportSettings {
        interval: Duration::from_millis(50),
        timeout: Duration::from_secs(2),
        ..ExportSettings::default()
    }
}

fn start(endpoint: &str, settings: ExportSettings) -> (Tracer, Exporter, Metrics) {
    let metrics = Metrics::new();
    let cfg = tracing_config(endpoint, 1.0, "authgate-test");
    let (tracer, exporter) = Tracer::with_settings(&cfg, &metrics, settings).unwrap();
    (
        tracer,
        exporter.expect("an endpoint starts the exporter"),
        metrics,
    )
}

fn client_headers(flags: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "traceparent",
        HeaderValue::from_str(&format!("00-{TRACE}-{CLIENT_SPAN}-{flags}")).unwrap(),
    );
    h.insert("tracestate", HeaderValue::from_static("congo=t61rcWkgMzE"));
    h
}

fn dropped(m: &Metrics, reason: &str) -> u64 {
    m.trace_spans_dropped.with_label_values(&[reason]).get()
}

/// One request's worth of spans: SERVER, a lookup with its store query,
/// the upstream exchange. Returns (server, lookup, query, upstream) ids.
fn traced_request(t: &Tracer) -> [String; 4] {
    let mut trace = t.start(&Method::GET, &client_headers("01")).unwrap();
    trace.set_attr(attr::URL_PATH, "/api/articles");
    trace.set_attr(attr::TOKEN_ID, 7i64);
    let mut lookup = trace.child("authgate.lookup", Kind::Internal);
    let mut query = lookup.child("find_token", Kind::Client);
    query.set_attr(attr::DB_SYSTEM_NAME, "postgresql");
    let ids = [
        trace.span_id().to_string(),
        lookup.id().unwrap().to_string(),
        query.id().unwrap().to_string(),
    ];
    lookup.end_child(query);
    trace.end_child(lookup);
    let mut upstream = trace.child("GET", Kind::Client);
    upstream.set_http_status(200);
    let upstream_id = upstream.id().unwrap().to_string();
    trace.end_child(upstream);
    trace.span().set_http_status(200);
    trace.end();
    [ids[0].clone(), ids[1].clone(), ids[2].clone(), upstream_id]
}

fn span<'a>(spans: &'a [serde_json::Value], id: &str) -> &'a serde_json::Value {
    spans
        .iter()
        .find(|s| s["span_id"] == id)
        .unwrap_or_else(|| panic!("span {id} not received: {spans:?}"))
}

#[test]
fn every_field_decodes_as_written() {
    let anchor = Instant::now();
    let at = |ms: u64| anchor + Duration::from_millis(ms);
    let long = "ü".repeat(200); // a length that needs two varint bytes
    let server = SpanData {
        id: SpanId([1, 2, 3, 4, 5, 6, 7, 8]),
        parent: Some(SpanId([0xff; 8])),
        name: Cow::Borrowed("GET"),
        kind: Kind::Server,
        start: at(0),
        end: at(25),
        attrs: vec![
            (attr::HTTP_REQUEST_METHOD, Value::from("GET")),
            (attr::TOKEN_ID, Value::Int(-42)),
            (attr::HTTP_RESPONSE_STATUS_CODE, Value::Int(503)),
            ("authgate.flag", Value::Bool(true)),
            ("authgate.off", Value::Bool(false)),
            ("authgate.long", Value::from(long.clone())),
        ],
        status: StatusCode::Error,
        status_message: Some(Cow::Borrowed("upstream did not answer")),
    };
    let child = SpanData {
        id: SpanId([9; 8]),
        parent: Some(server.id),
        name: Cow::Borrowed("authgate.lookup"),
        kind: Kind::Internal,
        start: at(1),
        end: at(3),
        attrs: Vec::new(),
        status: StatusCode::Unset,
        status_message: None,
    };
    let root = SpanData {
        id: SpanId([7; 8]),
        parent: None,
        name: Cow::Borrowed("POST"),
        kind: Kind::Server,
        ..child.clone()
    };
    let batches = [
        Ended {
            trace_id: TraceId([0xab; 16]),
            flags: TraceFlags::new(TraceFlags::SAMPLED),
            tracestate: Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7".into()),
            spans: vec![server, child],
            anchor,
            anchor_unix_nanos: 1_700_000_000_000_000_000,
        },
        Ended {
            trace_id: TraceId([0x01; 16]),
            flags: TraceFlags::new(TraceFlags::SAMPLED | TraceFlags::RANDOM),
            tracestate: None,
            spans: vec![root],
            anchor,
            anchor_unix_nanos: 5,
        },
    ];
    let got = decode(&encode_request(&Resource::new("svc-ü"), &batches));
    assert_eq!(got.len(), 3);
    let version = env!("CARGO_PKG_VERSION");
    for s in &got {
        assert_eq!(
            s["resource"],
            json!({"service.name": "svc-ü", "service.version": version,
                   "telemetry.sdk.name": "authgate", "telemetry.sdk.language": "rust",
                   "telemetry.sdk.version": version})
        );
        assert_eq!(s["scope"], json!({"name": "authgate", "version": version}));
        assert_eq!(
            (s["events"].as_u64(), s["links"].as_u64()),
            (Some(0), Some(0))
        );
    }
    let (server, child, root) = (&got[0], &got[1], &got[2]);
    assert_eq!(server["trace_id"], "ab".repeat(16));
    assert_eq!(server["span_id"], "0102030405060708");
    assert_eq!(server["parent_span_id"], "ff".repeat(8));
    assert_eq!(
        server["trace_state"],
        "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    );
    assert_eq!(server["name"], "GET");
    assert_eq!(server["kind"], 2);
    assert_eq!(server["start_time_unix_nano"], 1_700_000_000_000_000_000u64);
    assert_eq!(server["end_time_unix_nano"], 1_700_000_000_025_000_000u64);
    assert_eq!(
        server["attributes"],
        json!({"http.request.method": "GET", "authgate.token.id": -42,
               "http.response.status_code": 503, "authgate.flag": true,
               "authgate.off": false, "authgate.long": long})
    );
    assert_eq!(
        server["status"],
        json!({"code": 2, "message": "upstream did not answer"})
    );
    // Sampled, the parent's remoteness known, and remote.
    assert_eq!(server["flags"], 0x301);
    assert_eq!(child["kind"], 1);
    assert_eq!(child["parent_span_id"], "0102030405060708");
    assert_eq!(child["flags"], 0x101);
    assert_eq!(child["status"], json!({"code": 0, "message": ""}));
    assert_eq!(child["start_time_unix_nano"], 1_700_000_000_001_000_000u64);
    assert_eq!(root["trace_id"], "01".repeat(16));
    assert_eq!(root["parent_span_id"], "");
    assert_eq!(root["trace_state"], "");
    assert_eq!(root["flags"], 0x103);
    assert_eq!(root["end_time_unix_nano"], 5 + 3_000_000u64);
}

#[tokio::test]
async fn spans_reach_the_collector_with_the_clients_trace() {
    let receiver = Receiver::start();
    let (tracer, exporter, metrics) = start(&receiver.endpoint(), quick());
    let [server, lookup, query, upstream] = traced_request(&tracer);
    // The batch goes out on its timer, without a shutdown.
    let spans = receiver.wait_spans(4, Duration::from_secs(10)).await;
    let s = span(&spans, &server);
    assert_eq!(s["trace_id"], TRACE);
    assert_eq!(s["parent_span_id"], CLIENT_SPAN);
    assert_eq!(s["kind"], 2);
    assert_eq!(s["trace_state"], "congo=t61rcWkgMzE");
    assert_eq!(s["attributes"]["url.path"], "/api/articles");
    assert_eq!(s["attributes"]["authgate.token.id"], 7);
    assert_eq!(s["attributes"]["http.response.status_code"], 200);
    assert_eq!(s["resource"]["service.name"], "authgate-test");
    assert_eq!(span(&spans, &lookup)["parent_span_id"], server.as_str());
    assert_eq!(span(&spans, &lookup)["kind"], 1);
    assert_eq!(span(&spans, &query)["parent_span_id"], lookup.as_str());
    assert_eq!(span(&spans, &query)["kind"], 3);
    assert_eq!(span(&spans, &upstream)["parent_span_id"], server.as_str());
    assert!(spans.iter().all(|s| s["trace_id"] == TRACE));
    // A child lies inside its parent.
    let time = |id: &str, k: &str| span(&spans, id)[k].as_u64().unwrap();
    assert!(time(&server, "start_time_unix_nano") <= time(&lookup, "start_time_unix_nano"));
    assert!(time(&query, "end_time_unix_nano") <= time(&lookup, "end_time_unix_nano"));
    assert!(time(&upstream, "end_time_unix_nano") <= time(&server, "end_time_unix_nano"));

    // Unsampled client traces are not recorded at all.
    assert!(tracer.start(&Method::GET, &client_headers("00")).is_none());
    // What is queued at shutdown goes out before it returns.
    for _ in 0..3 {
        traced_request(&tracer);
    }
    exporter.shutdown(Duration::from_secs(10)).await;
    assert_eq!(receiver.spans().len(), 16);
    assert_eq!(metrics.trace_spans_exported.get(), 16);
    // Two exports at least, on one kept connection (one client port).
    let of = |k: &str| -> std::collections::BTreeSet<u64> {
        receiver
            .spans()
            .iter()
            .map(|s| s[k].as_u64().unwrap())
            .collect()
    };
    assert!(of("request").len() >= 2, "{:?}", of("request"));
    assert_eq!(of("peer_port").len(), 1, "{:?}", of("peer_port"));
}

#[tokio::test]
async fn a_full_batch_goes_out_at_once() {
    let receiver = Receiver::start();
    let settings = ExportSettings {
        max_batch: 8,
        interval: Duration::from_secs(3600),
        ..quick()
    };
    let (tracer, _exporter, _metrics) = start(&receiver.endpoint(), settings);
    traced_request(&tracer);
    traced_request(&tracer);
    let spans = receiver.wait_spans(8, Duration::from_secs(10)).await;
    assert!(spans.iter().all(|s| s["request"] == 1), "{spans:?}");
}

#[tokio::test]
async fn a_collector_that_comes_back_is_exported_to_again() {
    let first = Receiver::start();
    let port = first.addr.port();
    let (tracer, exporter, metrics) = start(&first.endpoint(), quick());
    traced_request(&tracer);
    first.wait_spans(4, Duration::from_secs(10)).await;
    drop(first);
    // While it is away: dropped and counted.
    traced_request(&tracer);
    let deadline = Instant::now() + Duration::from_secs(10);
    while dropped(&metrics, "export_failed") < 4 {
        assert!(
            Instant::now() < deadline,
            "the failed export was not counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = Receiver::on_port(port);
    traced_request(&tracer);
    let spans = second.wait_spans(4, Duration::from_secs(10)).await;
    assert_eq!(spans.len(), 4);
    exporter.shutdown(Duration::from_secs(5)).await;
    assert_eq!(metrics.trace_spans_exported.get(), 8);
    assert_eq!(dropped(&metrics, "export_failed"), 4);
}

#[tokio::test]
async fn a_refusing_collector_is_counted() {
    let receiver = Receiver::answering(503);
    let (tracer, exporter, metrics) = start(&receiver.endpoint(), quick());
    traced_request(&tracer);
    exporter.shutdown(Duration::from_secs(5)).await;
    assert_eq!(receiver.spans().len(), 4, "the receiver read them");
    assert_eq!(metrics.trace_spans_exported.get(), 0);
    assert_eq!(dropped(&metrics, "export_failed"), 4);
}

#[tokio::test]
async fn a_dead_collector_costs_only_the_spans() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (tracer, exporter, metrics) = start(&format!("http://127.0.0.1:{port}"), quick());
    for _ in 0..5 {
        traced_request(&tracer);
    }
    let t = Instant::now();
    exporter.shutdown(Duration::from_secs(5)).await;
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(dropped(&metrics, "export_failed"), 20);
    // After the exporter stopped, ended requests are counted, not queued.
    traced_request(&tracer);
    assert_eq!(dropped(&metrics, "shutdown"), 4);
}

#[tokio::test]
async fn a_silent_collector_fills_the_queue_and_requests_never_wait() {
    // Accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            conns.push(c);
        }
    });
    let settings = ExportSettings {
        queue: 2,
        max_batch: 1,
        interval: Duration::from_millis(10),
        timeout: Duration::from_millis(500),
    };
    let (tracer, exporter, metrics) = start(&format!("http://{addr}"), settings);
    // The first request's spans are taken, and their export hangs...
    traced_request(&tracer);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ...so two more fit in the queue and the rest are dropped, at once.
    let t = Instant::now();
    for _ in 0..9 {
        traced_request(&tracer);
    }
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(dropped(&metrics, "queue_full"), 7 * 4);
    // Each export gives up at its timeout; the shutdown is bounded.
    let t = Instant::now();
    exporter.shutdown(Duration::from_secs(1)).await;
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    assert!(dropped(&metrics, "export_failed") >= 4);
    held.abort();
}

#[test]
fn off_without_an_endpoint() {
    let cfg = tracing_config("", 1.0, "authgate");
    let (tracer, exporter) = Tracer::new(&cfg, &Metrics::new()).unwrap();
    assert!(!tracer.is_on() && exporter.is_none());
    assert!(tracer.start(&Method::GET, &client_headers("01")).is_none());
}
