//! Prometheus metrics: every family in one place, with bounded labels.
//!
//! Labels are only ever route classes, decisions, reasons, status classes,
//! doors and sources, all from fixed sets: never a token id, a user, or a path.
//! Allowed and denied requests are counted as separate families (as
//! linkerd2-proxy does) so a dashboard reads them without regex.

use crate::answer::Refusal;
use crate::gate::Door;
use crate::route::RouteClass;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// All metric families. Cheap to clone handles live inside.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Requests by route class, decision (allow, pass, deny), status class
    /// and door.
    pub requests: IntCounterVec,
    /// Denied requests by route class, reason and door.
    pub denied: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_duration: Histogram,
    pub upstream_errors: IntCounterVec,
    pub cache_hits: IntCounter,
    pub cache_misses: IntCounter,
    pub cache_negative_hits: IntCounter,
    pub cache_stale_served: IntCounter,
    pub cache_evictions: IntCounterVec,
    pub cache_entries: IntGauge,
    pub store_duration: HistogramVec,
    pub store_errors: IntCounterVec,
    pub invalidations: IntCounterVec,
    pub invalidation_lag: Histogram,
    pub listener_reconnects: IntCounter,
    /// Self-tests of the LISTEN connection whose NOTIFY did not arrive.
    pub listener_selftest_failures: IntCounter,
    pub rate_limited: IntCounterVec,
    pub rate_limit_errors: IntCounter,
    pub redis_errors: IntCounterVec,
    pub last_used_flush_size: Histogram,
    pub last_used_flush_duration: Histogram,
    pub last_used_flush_errors: IntCounter,
    pub connections_active: IntGauge,
    pub listener_up: IntGauge,
    pub known_hashes: IntGauge,
    pub store_pool_size: IntGauge,
    pub store_pool_available: IntGauge,
    pub connection_limit_reached: IntCounter,
    pub config_reloads: IntCounterVec,
    /// Management listener requests, by surface (api, ui) and status class.
    pub management_requests: IntCounterVec,
    pub would_deny: IntCounterVec,
    pub tunnels_ended: IntCounterVec,
    pub enforcing: IntGauge,
    /// Decision-listener requests from callers outside `decision.trusted_callers`.
    pub decision_callers_refused: IntCounter,
    /// Token counts from the store (`stats` refresh, never per request).
    pub tokens: IntGaugeVec,
    pub tokens_expiring: IntGaugeVec,
    pub build_info: IntGaugeVec,
    /// Spans the collector took (`trace::export`).
    pub trace_spans_exported: IntCounter,
    /// Spans not exported, by reason (queue_full, export_failed, shutdown).
    pub trace_spans_dropped: IntCounterVec,
    /// The per-request series, resolved once (no label hashing per request).
    pub hot: std::sync::Arc<RequestMetrics>,
}

/// Route classes, decisions and status classes, in index order.
const CLASSES: [RouteClass; 3] = [
    RouteClass::Admin,
    RouteClass::ContentApi,
    RouteClass::Unprotected,
];
const DECISIONS: [&str; 3] = ["allow", "pass", "deny"];
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// How a request was settled, for [`RequestMetrics::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Pass,
    Deny(Refusal),
}

fn class_index(c: RouteClass) -> usize {
    match c {
        RouteClass::Admin => 0,
        RouteClass::ContentApi => 1,
        RouteClass::Unprotected => 2,
    }
}

fn status_index(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

/// One door's request-path series, indexed by position.
struct DoorSeries {
    requests: Vec<IntCounter>,
    denied: Vec<IntCounter>,
    duration: Vec<Histogram>,
}

/// The label vectors the per-door series are made from.
struct Families {
    requests: IntCounterVec,
    denied: IntCounterVec,
    duration: HistogramVec,
}

impl Families {
    fn door(&self, door: Door) -> DoorSeries {
        let (mut r, mut d, mut h) = (Vec::new(), Vec::new(), Vec::new());
        let door = door.as_str();
        for c in CLASSES {
            for decision in DECISIONS {
                for s in STATUS_CLASSES {
                    r.push(
                        self.requests
                            .with_label_values(&[c.as_str(), decision, s, door]),
                    );
                }
            }
            for refusal in Refusal::all() {
                d.push(
                    self.denied
                        .with_label_values(&[c.as_str(), refusal.label(), door]),
                );
            }
            h.push(self.duration.with_label_values(&[c.as_str(), door]));
        }
        DoorSeries {
            requests: r,
            denied: d,
            duration: h,
        }
    }
}

/// Every request-path series, created once per door and indexed by
/// position, so counting a request costs a few atomic adds and no label
/// hashing. The proxy's series exist from the start (dashboards and alerts
/// see them at zero); a decision door's when its listener opens
/// ([`RequestMetrics::open`]), so a process without one exports none.
pub struct RequestMetrics {
    families: Families,
    doors: [std::sync::OnceLock<DoorSeries>; 4],
    pub store_find: Histogram,
    pub store_find_errors: IntCounter,
}

impl RequestMetrics {
    fn new(families: Families, store: &HistogramVec, store_errors: &IntCounterVec) -> Self {
        let m = Self {
            families,
            doors: Default::default(),
            store_find: store.with_label_values(&["find_token"]),
            store_find_errors: store_errors.with_label_values(&["find_token"]),
        };
        m.open(Door::Proxy);
        m
    }

    /// Create a door's series (at zero), once.
    pub fn open(&self, door: Door) {
        self.series(door);
    }

    fn series(&self, door: Door) -> &DoorSeries {
        self.doors[door.index()].get_or_init(|| self.families.door(door))
    }

    /// Count one request.
    pub fn record(
        &self,
        door: Door,
        class: RouteClass,
        decision: Decision,
        status: u16,
        elapsed: std::time::Duration,
    ) {
        let series = self.series(door);
        let c = class_index(class);
        let d = match decision {
            Decision::Allow => 0,
            Decision::Pass => 1,
            Decision::Deny(refusal) => {
                series.denied[c * Refusal::COUNT + refusal.index()].inc();
                2
            }
        };
        series.requests[(c * DECISIONS.len() + d) * STATUS_CLASSES.len() + status_index(status)]
            .inc();
        series.duration[c].observe(elapsed.as_secs_f64());
    }
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(c.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    c
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(c.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    c
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(g.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    g
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(g.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    g
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(h.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    h
}

fn histogram_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
        labels,
    )
    .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(h.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    h
}

/// `let field = make(&registry, args..);` for each line: the catalogue of
/// families, one line each (kept out of rustfmt's reach so it stays a table).
macro_rules! register {
    ($r:ident; $($field:ident = $make:ident($($arg:expr),* $(,)?);)*) => {
        $(let $field = $make(&$r, $($arg),*);)*
    };
}

impl Metrics {
    /// Register every family in a fresh registry. The names are constants,
    /// so registration cannot fail at run time; a clash is a programming
    /// error caught by the tests.
    pub fn new() -> Self {
        let r = Registry::new();
        register! { r;
            requests = counter_vec("authgate_requests_total", "Requests handled, by route class, decision (allow, pass, deny), status class and door (proxy, forward_auth, ext_authz_http, ext_authz_grpc).", &["route_class", "decision", "status_class", "door"]);
            denied = counter_vec("authgate_denied_total", "Requests answered by the gateway itself, by route class, reason and door.", &["route_class", "reason", "door"]);
            request_duration = histogram_vec("authgate_request_duration_seconds", "Time from request head to response head, by route class and door.", &["route_class", "door"]);
            store_duration = histogram_vec("authgate_store_query_duration_seconds", "Token store query time, by operation.", &["op"]);
            store_errors = counter_vec("authgate_store_errors_total", "Token store failures, by operation.", &["op"]);
            upstream_duration = histogram("authgate_upstream_duration_seconds", "Time the upstream took to answer with its response head.", LATENCY_BUCKETS);
            upstream_errors = counter_vec("authgate_upstream_errors_total", "Upstream failures, by kind (connect, timeout, protocol, body_timeout).", &["kind"]);
            cache_hits = counter("authgate_cache_hits_total", "Token lookups answered from the cache.");
            cache_misses = counter("authgate_cache_misses_total", "Token lookups that went to the store.");
            cache_negative_hits = counter("authgate_cache_negative_hits_total", "Lookups answered by a remembered absence (unknown key).");
            cache_stale_served = counter("authgate_cache_stale_served_total", "Lookups served from an expired entry because the store was unreachable.");
            cache_evictions = counter_vec("authgate_cache_evictions_total", "Cache entries removed, by cause (size, expired, invalidated).", &["cause"]);
            cache_entries = gauge("authgate_cache_entries", "Entries currently in the token cache.");
            invalidations = counter_vec("authgate_invalidations_total", "Invalidation messages received, by source (postgres, redis).", &["source"]);
            invalidation_lag = histogram("authgate_invalidation_lag_seconds", "Time from the database change to its invalidation message arriving here.", &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]);
            listener_reconnects = counter("authgate_listener_reconnects_total", "Times the invalidation listener (re)connected; each clears the cache.");
            listener_selftest_failures = counter("authgate_listener_selftest_failures_total", "Self-tests of the invalidation listener (at start and after each reconnect) whose NOTIFY, sent through postgres.url, did not arrive within postgres.connect_timeout.");
            rate_limited = counter_vec("authgate_rate_limited_total", "Requests refused by a rate limit, by scope (token, ip).", &["scope"]);
            rate_limit_errors = counter("authgate_rate_limit_fail_open_total", "Rate-limit checks skipped (failed open) because Redis was unavailable.");
            redis_errors = counter_vec("authgate_redis_errors_total", "Redis failures, by operation (ratelimit, publish, subscribe).", &["op"]);
            last_used_flush_size = histogram("authgate_last_used_flush_tokens", "Tokens written per last_used_at flush.", &[1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0]);
            last_used_flush_duration = histogram("authgate_last_used_flush_duration_seconds", "Time one last_used_at flush took.", LATENCY_BUCKETS);
            last_used_flush_errors = counter("authgate_last_used_flush_errors_total", "Failed last_used_at flushes (the uses are kept and retried).");
            listener_up = gauge("authgate_invalidation_listener_up", "1 while the Postgres LISTEN connection is established, else 0.");
            known_hashes = gauge("authgate_known_hashes", "Token hash prefixes in the in-memory set of issued tokens.");
            store_pool_size = gauge("authgate_store_pool_connections", "Connections in the token store pool.");
            store_pool_available = gauge("authgate_store_pool_idle_connections", "Idle connections in the token store pool.");
            connections_active = gauge("authgate_connections_active", "Client connections currently open.");
            connection_limit_reached = counter("authgate_connection_limit_reached_total", "Times server.max_connections was reached; further connections waited in the accept queue.");
            config_reloads = counter_vec("authgate_config_reloads_total", "Config reload attempts, by result (ok, error).", &["result"]);
            would_deny = counter_vec("authgate_would_deny_total", "Requests server.enforcement = \"report\" forwarded without identity that enforcement would have refused, by reason.", &["reason"]);
            tunnels_ended = counter_vec("authgate_tunnels_ended_total", "WebSocket tunnels ended, by reason (closed by a side, idle past server.tunnel_idle_timeout, drain, revoked: their token revoked, changed or expired).", &["reason"]);
            enforcing = gauge("authgate_enforcing", "1 while server.enforcement is \"enforce\", 0 in report mode.");
            decision_callers_refused = counter("authgate_decision_callers_refused_total", "Requests to the decision listener from a peer outside decision.trusted_callers (answered 403).");
            management_requests = counter_vec("authgate_management_requests_total", "Requests to the management listener, by surface (api, ui) and status class.", &["surface", "status_class"]);
            tokens = gauge_vec("authgate_tokens", "Tokens in the store, by kind and state (active, expired); refreshed every tokens.stats_interval.", &["kind", "state"]);
            tokens_expiring = gauge_vec("authgate_tokens_expiring", "Active tokens whose expiry falls within the window (1d, 7d, 30d), by kind; refreshed every tokens.stats_interval.", &["kind", "within"]);
            build_info = gauge_vec("authgate_build_info", "Build information; the value is always 1.", &["version"]);
            trace_spans_exported = counter("authgate_trace_spans_exported_total", "Trace spans the OTLP collector accepted.");
            trace_spans_dropped = counter_vec("authgate_trace_spans_dropped_total", "Trace spans not exported, by reason (queue_full: the export queue was full; export_failed: the collector did not take the batch; shutdown: ended after the exporter stopped).", &["reason"]);
        }
        let families = Families {
            requests: requests.clone(),
            denied: denied.clone(),
            duration: request_duration.clone(),
        };
        let hot = RequestMetrics::new(families, &store_duration, &store_errors);
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let m = Metrics {
            requests,
            denied,
            request_duration,
            upstream_duration,
            upstream_errors,
            cache_hits,
            cache_misses,
            cache_negative_hits,
            cache_stale_served,
            cache_evictions,
            cache_entries,
            store_duration,
            store_errors,
            invalidations,
            invalidation_lag,
            listener_reconnects,
            listener_selftest_failures,
            rate_limited,
            rate_limit_errors,
            redis_errors,
            last_used_flush_size,
            last_used_flush_duration,
            last_used_flush_errors,
            connections_active,
            listener_up,
            known_hashes,
            store_pool_size,
            store_pool_available,
            connection_limit_reached,
            config_reloads,
            management_requests,
            would_deny,
            tunnels_ended,
            enforcing,
            decision_callers_refused,
            tokens,
            tokens_expiring,
            build_info,
            trace_spans_exported,
            trace_spans_dropped,
            hot: std::sync::Arc::new(hot),
            registry: r,
        };
        m.start_bounded_labels_at_zero();
        m
    }

    /// Publish the store's token counts (see `authgate_tokens*`).
    pub fn set_token_stats(&self, stats: &crate::model::TokenStats) {
        use crate::model::TokenKind;
        for kind in [TokenKind::ContentApi, TokenKind::Admin] {
            let c = stats.of(kind);
            let k = kind.as_str();
            for (state, n) in [("active", c.active), ("expired", c.expired)] {
                self.tokens
                    .with_label_values(&[k, state])
                    .set(gauge_value(n));
            }
            for (within, n) in [
                ("1d", c.expiring_1d),
                ("7d", c.expiring_7d),
                ("30d", c.expiring_30d),
            ] {
                self.tokens_expiring
                    .with_label_values(&[k, within])
                    .set(gauge_value(n));
            }
        }
    }

    /// Create the series of the bounded label sets, so dashboards and
    /// alerts see them before the first event.
    fn start_bounded_labels_at_zero(&self) {
        for cause in ["size", "expired", "invalidated"] {
            self.cache_evictions.with_label_values(&[cause]);
        }
        for kind in ["connect", "timeout", "protocol", "body_timeout"] {
            self.upstream_errors.with_label_values(&[kind]);
        }
        self.store_errors.with_label_values(&["find_token"]);
        for source in ["postgres", "redis"] {
            self.invalidations.with_label_values(&[source]);
        }
        for scope in ["token", "ip"] {
            self.rate_limited.with_label_values(&[scope]);
        }
        for denial in crate::authz::Denial::ALL {
            self.would_deny.with_label_values(&[denial.label()]);
        }
        for ended in crate::tunnel::Ended::ALL {
            self.tunnels_ended.with_label_values(&[ended.as_str()]);
        }
        for result in ["ok", "error"] {
            self.config_reloads.with_label_values(&[result]);
        }
        for reason in ["queue_full", "export_failed", "shutdown"] {
            self.trace_spans_dropped.with_label_values(&[reason]);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(16 * 1024);
        let families = self.registry.gather();
        // Encoding into a Vec cannot fail for well-formed families.
        if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        buf
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// `2xx`, `4xx`... for a status code.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_register_and_render() {
        let m = Metrics::new();
        m.requests
            .with_label_values(&["admin", "allow", "2xx", "proxy"])
            .inc();
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains("authgate_requests_total{decision=\"allow\",door=\"proxy\",route_class=\"admin\",status_class=\"2xx\"} 1"));
        assert!(text.contains("authgate_build_info{version="));
        assert_eq!(status_class(204), "2xx");
        // A decision door's series appear once it opens, and count apart.
        let forward = "authgate_requests_total{decision=\"deny\",door=\"forward_auth\",route_class=\"content-api\",status_class=\"4xx\"}";
        assert!(!text.contains(forward));
        m.hot.open(Door::ForwardAuth);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains(&format!("{forward} 0")));
        m.hot.record(
            Door::ForwardAuth,
            RouteClass::ContentApi,
            Decision::Deny(Refusal::InvalidPath),
            400,
            std::time::Duration::ZERO,
        );
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains(&format!("{forward} 1")));
        assert!(text.contains("authgate_denied_total{door=\"forward_auth\",reason=\"invalid_path\",route_class=\"content-api\"} 1"));
        assert_eq!(status_class(503), "5xx");
    }
}
