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

/// The spans of one trace, by name.
fn named<'a>(
    spans: &'a [serde_json::Value],
    trace: &str,
    name: &str,
) -> Vec<&'a serde_json::Value> {
    spans
        .iter()
        .filter(|s| s["trace_id"] == trace && s["name"] == name)
        .collect()
}

#[tokio::test]
async fn the_gateway_traces_requests_and_the_cms_joins_them() {
    let receiver = Receiver::start();
    let env = support::Env::with_config(&format!(
        "[tracing]\notlp_endpoint = \"{}\"\nservice_name = \"gateway-under-test\"\n",
        receiver.endpoint()
    ))
    .await;
    let (token_id, key) = env.content_token("reader", "read-only", &[]);
    let g = env.gateway().await;
    let client_tp = format!("00-{TRACE}-{CLIENT_SPAN}-01");

    // A sampled client trace: continued, with authgate's span as the CMS's parent.
    let r = support::request(
        "GET",
        &g.url("/api/articles?sort=title"),
        Some(&key),
        &[
            ("traceparent", &client_tp),
            ("tracestate", "congo=t61rcWkgMzE"),
        ],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = r
        .upstream_header("traceparent")
        .expect("the CMS got a traceparent");
    let fields: Vec<&str> = seen.split('-').collect();
    assert_eq!(
        (fields[0], fields[1], fields[3]),
        ("00", TRACE, "01"),
        "{seen}"
    );
    let cms_parent = fields[2].to_owned();
    assert_ne!(cms_parent, CLIENT_SPAN);
    assert_eq!(
        r.upstream_header("tracestate").as_deref(),
        Some("congo=t61rcWkgMzE")
    );

    // The same key again, on a new connection: the cache answers.
    let again = support::request(
        "GET",
        &g.url("/api/articles"),
        Some(&key),
        &[("traceparent", &client_tp)],
        b"",
    )
    .await;
    assert_eq!(again.status, 200);

    // A client that did not record: not recorded, its context passed on as it came.
    let unsampled = format!("00-{TRACE}-{CLIENT_SPAN}-00");
    let r = support::request(
        "GET",
        &g.url("/api/articles"),
        Some(&key),
        &[("traceparent", &unsampled), ("tracestate", "a=1")],
        b"",
    )
    .await;
    assert_eq!(r.upstream_header("traceparent"), Some(unsampled.clone()));
    assert_eq!(r.upstream_header("tracestate").as_deref(), Some("a=1"));

    // No context: a trace starts here.
    let r = support::get(&g.url("/api/articles"), Some(&key)).await;
    let fresh = r
        .upstream_header("traceparent")
        .expect("a new trace is passed on");
    let fresh: Vec<String> = fresh.split('-').map(str::to_owned).collect();
    assert_eq!((fresh[0].as_str(), fresh[3].as_str()), ("00", "03"));
    assert_ne!(fresh[1], TRACE);

    // Refused: a span, and nothing forwarded.
    let refused = support::request(
        "GET",
        &g.url("/api/articles"),
        Some(&"0".repeat(256)),
        &[(
            "traceparent",
            &format!("00-{}-{CLIENT_SPAN}-01", "c".repeat(32)),
        )],
        b"",
    )
    .await;
    assert_eq!(refused.status, 401);

    // Stopping the gateway flushes the exporter.
    let port = g.addr.port();
    g.stop().await;
    let spans = receiver.spans();

    let servers = named(&spans, TRACE, "GET");
    let server_spans: Vec<_> = servers.iter().filter(|s| s["kind"] == 2).collect();
    assert_eq!(
        server_spans.len(),
        2,
        "two sampled requests of the client's trace: {spans:#?}"
    );
    let first = server_spans[0];
    assert_eq!(first["parent_span_id"], CLIENT_SPAN);
    assert_eq!(first["trace_state"], "congo=t61rcWkgMzE");
    assert_eq!(first["flags"], 0x301);
    assert_eq!(first["resource"]["service.name"], "gateway-under-test");
    let a = &first["attributes"];
    assert_eq!(a["http.request.method"], "GET");
    assert_eq!(a["url.path"], "/api/articles");
    assert_eq!(a["url.scheme"], "http");
    assert_eq!(a["server.address"], "127.0.0.1");
    assert_eq!(a["server.port"], port);
    assert_eq!(a["client.address"], "127.0.0.1");
    assert_eq!(a["http.response.status_code"], 200);
    assert_eq!(a["authgate.route_class"], "content-api");
    assert_eq!(a["authgate.action"], "api::article.article.find");
    assert_eq!(a["authgate.decision"], "allow");
    assert_eq!(a["authgate.door"], "proxy");
    assert_eq!(a["authgate.token.id"], token_id);
    assert!(a["authgate.request_id"].is_string());
    // Never the key or its hash.
    let text = serde_json::to_string(&spans).unwrap();
    assert!(!text.contains(&key[..32]), "a key in the spans");

    // The upstream exchange: a CLIENT child of the SERVER span, and the
    // CMS's parent.
    let exchange = spans
        .iter()
        .find(|s| s["span_id"] == cms_parent.as_str())
        .expect("the CMS's parent span was exported");
    assert_eq!(exchange["kind"], 3);
    assert_eq!(exchange["parent_span_id"], first["span_id"]);
    assert_eq!(exchange["attributes"]["http.response.status_code"], 200);
    assert_eq!(exchange["attributes"]["server.address"], "127.0.0.1");
    assert_eq!(
        exchange["attributes"]["url.full"],
        format!("http://{}/api/articles", env.upstream)
    );

    // The first request missed the cache: a look-up and its store query.
    let lookups = named(&spans, TRACE, "authgate.lookup");
    assert_eq!(lookups.len(), 1, "only the miss is a span: {lookups:#?}");
    assert_eq!(lookups[0]["parent_span_id"], first["span_id"]);
    assert_eq!(lookups[0]["attributes"]["authgate.lookup.source"], "store");
    let query = named(&spans, TRACE, "find_token");
    assert_eq!(query.len(), 1);
    assert_eq!(query[0]["parent_span_id"], lookups[0]["span_id"]);
    assert_eq!(query[0]["attributes"]["db.system.name"], "postgresql");

    // The unsampled one left nothing but the two sampled requests' spans
    // under the client's trace id; the fresh trace is rooted here.
    let roots = spans
        .iter()
        .filter(|s| s["trace_id"] == fresh[1].as_str())
        .collect::<Vec<_>>();
    let root = roots
        .iter()
        .find(|s| s["kind"] == 2)
        .expect("the new trace's SERVER span");
    assert_eq!(root["parent_span_id"], "");
    assert_eq!(root["flags"], 0x103);
    assert!(roots
        .iter()
        .any(|s| s["span_id"] == fresh[2].as_str() && s["kind"] == 3));

    // The refusal: a SERVER span with the reason, not an error (4xx), no exchange.
    let refused: Vec<_> = spans
        .iter()
        .filter(|s| s["trace_id"] == "c".repeat(32))
        .collect();
    assert_eq!(
        refused
            .iter()
            .filter(|s| s["kind"] == 3 && s["name"] == "GET")
            .count(),
        0
    );
    let server = refused
        .iter()
        .find(|s| s["kind"] == 2)
        .expect("the refused request's span");
    assert_eq!(server["attributes"]["authgate.decision"], "deny");
    assert_eq!(server["attributes"]["http.response.status_code"], 401);
    assert!(server["attributes"]["authgate.deny_reason"].is_string());
    assert_eq!(server["status"]["code"], 0);
}

#[tokio::test]
async fn redis_calls_are_spans_and_a_dead_redis_marks_them_failed() {
    let receiver = Receiver::start();
    let mut redis = support::TestRedis::start();
    let env = support::Env::with_config(&format!(
        "[tracing]\notlp_endpoint = \"{}\"\n[redis]\nurl = \"{}\"\ntimeout = \"100ms\"\n\
         [rate_limit]\nper_token = 1000\nwindow = \"1h\"\nfailed_auth_per_ip = 1000\n",
        receiver.endpoint(),
        redis.url()
    ))
    .await;
    let (_, key) = env.content_token("reader", "read-only", &[]);
    let g = env.gateway().await;
    let traced = |trace: &str| format!("00-{trace}-{CLIENT_SPAN}-01");
    let (up, down) = ("1".repeat(32), "2".repeat(32));
    let r = support::request(
        "GET",
        &g.url("/api/articles"),
        Some(&key),
        &[("traceparent", &traced(&up))],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    redis.stop();
    let r = support::request(
        "GET",
        &g.url("/api/articles"),
        Some(&key),
        &[("traceparent", &traced(&down))],
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "the limits fail open");
    g.stop().await;
    let spans = receiver.spans();
    let calls = |trace: &str| -> Vec<serde_json::Value> {
        spans
            .iter()
            .filter(|s| s["trace_id"] == trace && s["attributes"]["db.system.name"] == "redis")
            .cloned()
            .collect()
    };
    let server = |trace: &str| {
        spans
            .iter()
            .find(|s| s["trace_id"] == trace && s["kind"] == 2)
            .unwrap()["span_id"]
            .clone()
    };
    // The per-IP check before the look-up, the per-token count after it.
    let ok = calls(&up);
    let names: Vec<&str> = ok.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["GET", "EVALSHA"], "{ok:#?}");
    assert!(ok
        .iter()
        .all(|s| s["kind"] == 3 && s["parent_span_id"] == server(&up)));
    assert!(ok.iter().all(|s| s["status"]["code"] == 0));
    let failed = calls(&down);
    assert_eq!(failed.len(), 2, "{failed:#?}");
    assert!(failed
        .iter()
        .all(|s| s["status"]["code"] == 2 && s["attributes"]["error.type"] == "redis_unavailable"));
}

#[tokio::test]
async fn report_mode_says_what_enforcement_would_have_refused() {
    let receiver = Receiver::start();
    let env = support::Env::with_config(&format!(
        "[tracing]\notlp_endpoint = \"{}\"\n",
        receiver.endpoint()
    ))
    .await;
    let (_, key) = env.content_token("reader", "read-only", &[]);
    let enforcing = std::fs::read_to_string(&env.config_path).unwrap();
    let reporting = enforcing.replace("[server]\n", "[server]\nenforcement = \"report\"\n");
    std::fs::write(&env.config_path, reporting).unwrap();
    let g = env.gateway().await;
    let trace = "d".repeat(32);
    let r = support::request(
        "POST",
        &g.url("/api/articles"),
        Some(&key),
        &[("traceparent", &format!("00-{trace}-{CLIENT_SPAN}-01"))],
        b"{}",
    )
    .await;
    assert_eq!(r.status, 200, "forwarded in report mode");
    g.stop().await;
    let spans = receiver.spans();
    let server = spans
        .iter()
        .find(|s| s["trace_id"] == trace.as_str() && s["kind"] == 2)
        .expect("the request's span");
    assert_eq!(server["attributes"]["authgate.decision"], "pass");
    assert_eq!(
        server["attributes"]["authgate.would_deny_reason"],
        "forbidden"
    );
    assert!(spans
        .iter()
        .any(|s| s["trace_id"] == trace.as_str() && s["kind"] == 3 && s["name"] == "POST"));
}
