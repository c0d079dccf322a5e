//! The tracer as the request path uses it: what is recorded, what is
//! forwarded, what reaches the exporter's queue (read here directly).

use http::header::{HeaderMap, HeaderValue};
use http::Method;

use super::*;

const CLIENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn tracer(ratio: f64) -> (Tracer, mpsc::Receiver<Ended>, Metrics) {
    let metrics = Metrics::new();
    let (t, rx) = Tracer::queued(ratio, 4, &metrics);
    (t, rx, metrics)
}

fn dropped(m: &Metrics, reason: &str) -> u64 {
    m.trace_spans_dropped.with_label_values(&[reason]).get()
}

#[test]
fn off_starts_nothing() {
    let t = Tracer::off();
    assert!(!t.is_on());
    assert!(t
        .start(&Method::GET, &headers(&[("traceparent", CLIENT)]))
        .is_none());
    assert!(!Tracer::default().is_on());
}

#[test]
fn a_sampled_client_trace_is_continued() {
    let (t, mut rx, _m) = tracer(1.0);
    let h = headers(&[
        ("traceparent", CLIENT),
        ("tracestate", "rojo=00f067aa0ba902b7"),
        ("tracestate", "congo=t61rcWkgMzE"),
    ]);
    let mut trace = t.start(&Method::GET, &h).unwrap();
    assert_eq!(trace.trace_id().to_string(), TRACE);
    assert_eq!(
        trace.tracestate(),
        Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
    );
    trace.set_attr(attr::URL_PATH, "/api/articles");
    let mut upstream = trace.child("upstream", Kind::Client);
    let tp = trace.traceparent_for_upstream(&upstream);
    // authgate's CLIENT span is the CMS's parent; sampled, random as it came.
    assert_eq!(
        tp.as_str(),
        format!("00-{TRACE}-{}-01", upstream.id().unwrap())
    );
    upstream.set_http_status(200);
    trace.end_child(upstream);
    trace.span().set_http_status(200);
    let server_id = trace.span_id();
    trace.end();

    let ended = rx.try_recv().unwrap();
    assert_eq!(ended.trace_id.to_string(), TRACE);
    assert_eq!(ended.spans.len(), 2);
    let (server, client) = (&ended.spans[0], &ended.spans[1]);
    assert_eq!(server.kind, Kind::Server);
    assert_eq!(server.id, server_id);
    assert_eq!(server.parent.unwrap().to_string(), CLIENT_SPAN);
    assert_eq!(server.name, "GET");
    assert_eq!(
        server.attr(attr::HTTP_REQUEST_METHOD),
        Some(&Value::from("GET"))
    );
    assert_eq!(
        server.attr(attr::URL_PATH),
        Some(&Value::from("/api/articles"))
    );
    assert_eq!(client.kind, Kind::Client);
    assert_eq!(client.parent, Some(server_id));
    assert_eq!(ended.flags, TraceFlags::new(TraceFlags::SAMPLED));
}

#[test]
fn without_a_span_the_server_span_is_the_parent() {
    let (t, _rx, _m) = tracer(1.0);
    let trace = t
        .start(&Method::POST, &headers(&[("traceparent", CLIENT)]))
        .unwrap();
    assert_eq!(
        trace.traceparent_for_upstream(&Span::none()).as_str(),
        format!("00-{TRACE}-{}-01", trace.span_id())
    );
}

#[test]
fn an_unsampled_client_trace_is_not_recorded() {
    let (t, mut rx, _m) = tracer(1.0);
    let h = headers(&[(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
    )]);
    assert!(t.start(&Method::GET, &h).is_none());
    assert!(rx.try_recv().is_err());
}

#[test]
fn the_ratio_applies_to_client_traces_too() {
    let (t, _rx, _m) = tracer(0.0);
    assert!(t
        .start(&Method::GET, &headers(&[("traceparent", CLIENT)]))
        .is_none());
    assert!(t.start(&Method::GET, &HeaderMap::new()).is_none());
}

#[test]
fn a_request_without_context_starts_a_trace() {
    let (t, mut rx, _m) = tracer(1.0);
    // A `tracestate` without a `traceparent` is dropped.
    let trace = t
        .start(&Method::GET, &headers(&[("tracestate", "a=1")]))
        .unwrap();
    assert_eq!(trace.tracestate(), None);
    let tp = trace.traceparent_for_upstream(&Span::none());
    let parsed = TraceParent::parse(tp.as_bytes()).unwrap();
    assert_eq!(parsed.trace_id, trace.trace_id());
    // Sampled, and the id is random throughout.
    assert_eq!(parsed.flags.bits(), 0x03);
    trace.end();
    let ended = rx.try_recv().unwrap();
    assert_eq!(ended.spans[0].parent, None);
}

#[test]
fn an_invalid_traceparent_restarts_the_trace() {
    let (t, _rx, _m) = tracer(1.0);
    let upper = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01";
    let trace = t
        .start(
            &Method::GET,
            &headers(&[("traceparent", upper), ("tracestate", "a=1")]),
        )
        .unwrap();
    assert_ne!(trace.trace_id().to_string(), TRACE.to_owned());
    assert_eq!(trace.tracestate(), None);
}

#[test]
fn a_future_version_is_continued_as_00_with_known_flags() {
    let (t, _rx, _m) = tracer(1.0);
    let h = headers(&[(
        "traceparent",
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-fb-later",
    )]);
    let trace = t.start(&Method::GET, &h).unwrap();
    let tp = trace.traceparent_for_upstream(&Span::none());
    assert_eq!(tp.as_str(), format!("00-{TRACE}-{}-03", trace.span_id()));
}

#[test]
fn other_methods_are_named_as_the_conventions_say() {
    let (t, mut rx, _m) = tracer(1.0);
    let m = Method::from_bytes(b"PROPFIND").unwrap();
    t.start(&m, &HeaderMap::new()).unwrap().end();
    let s = &rx.try_recv().unwrap().spans[0];
    assert_eq!(s.name, "HTTP");
    assert_eq!(
        s.attr(attr::HTTP_REQUEST_METHOD),
        Some(&Value::from("_OTHER"))
    );
    assert_eq!(
        s.attr(attr::HTTP_REQUEST_METHOD_ORIGINAL),
        Some(&Value::from("PROPFIND"))
    );
}

#[test]
fn a_full_queue_drops_and_counts() {
    let (t, mut rx, m) = tracer(1.0);
    // Four fit; the fifth and sixth (two spans each) are dropped.
    for _ in 0..6 {
        let mut trace = t.start(&Method::GET, &HeaderMap::new()).unwrap();
        let c = trace.child("lookup", Kind::Internal);
        trace.end_child(c);
        trace.end();
    }
    assert_eq!(dropped(&m, "queue_full"), 4);
    let mut queued = 0;
    while rx.try_recv().is_ok() {
        queued += 1;
    }
    assert_eq!(queued, 4);
    // The exporter gone: counted as such.
    drop(rx);
    t.start(&Method::GET, &HeaderMap::new()).unwrap().end();
    assert_eq!(dropped(&m, "shutdown"), 1);
}

#[test]
fn a_dropped_trace_still_sends_its_spans_marked_cancelled() {
    let (t, mut rx, _m) = tracer(1.0);
    let trace = t.start(&Method::GET, &HeaderMap::new()).unwrap();
    drop(trace);
    let ended = rx.try_recv().unwrap();
    let s = &ended.spans[0];
    assert_eq!(s.status, StatusCode::Error);
    assert_eq!(s.attr(attr::ERROR_TYPE), Some(&Value::from("cancelled")));
    // Ended once only.
    assert!(rx.try_recv().is_err());
}

#[test]
fn nested_children_keep_their_parents() {
    let (t, mut rx, _m) = tracer(1.0);
    let mut trace = t.start(&Method::GET, &HeaderMap::new()).unwrap();
    let mut lookup = trace.child("lookup", Kind::Internal);
    let query = lookup.child("find_token", Kind::Client);
    let (lookup_id, query_id) = (lookup.id(), query.id());
    lookup.end_child(query);
    trace.end_child(lookup);
    trace.end();
    let spans = rx.try_recv().unwrap().spans;
    let by_id = |id| spans.iter().find(|s| Some(s.id) == id).unwrap();
    assert_eq!(by_id(query_id).parent, lookup_id);
    assert_eq!(by_id(lookup_id).parent, Some(spans[0].id));
}
