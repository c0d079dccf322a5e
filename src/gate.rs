//! One judgement for every door.
//!
//! A request reaches authgate through a door: the proxy (authgate is the
//! hop in front of the CMS), or a decision door (a front proxy asks
//! authgate and forwards itself). Whatever the door, the request is judged
//! here, by the same functions, in named phases (as Pingora's proxy reads):
//!
//! ```text
//! arrive -> judge (target, Host, route under every reading)
//!   -> precheck (authz, per-IP limit) -> look up (lookup: known, cache, store)
//!   -> decide (authz, GraphQL operation, per-token limit)
//! ```
//!
//! [`Gate::decide`] runs them; the door then answers (forwards with the
//! identity `forward` writes, or gives the allow/deny answer its caller
//! understands) and ends with [`Gate::finish`] (log + metrics). What a
//! request has learnt travels in one value, [`RequestCtx`]: the arrival
//! facts, the policy snapshot it is judged by, the normal target, the
//! requested `Host` and the route. It borrows what the door holds for the
//! request ([`Held`]: the snapshot and the raw target), so nothing is
//! copied per phase. The gate knows a decision, not SQL (lookups go
//! through [`crate::lookup::Lookup`]) and not how the answer is written.
//!
//! A recorded request's trace ([`crate::trace`]) starts as it arrives and
//! travels in its [`Judged`]; the phases hand its SERVER span to the
//! look-up and the rate limiter, which add their children. The door takes
//! it ([`Judged::take_trace`]) to add its own (the proxy: the exchange with
//! the CMS) and gives it back to [`Gate::finish`], which ends it with the
//! outcome's attributes.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Either, Full, Limited};

use crate::answer::Refusal;
use crate::authz::{self, Denial, GraphQlOperation, Precheck, Verdict};
use crate::body::ForwardBody;
use crate::cache::{Hit, LookupError, Resolved};
use crate::config::{Config, Enforcement};
use crate::forward::{host, Allowed, Forwarder, Peer};
use crate::last_used::UsageRecorder;
use crate::lookup::{Lookup, Recent};
use crate::metrics::{Decision, Metrics};
use crate::model::TokenRecord;
use crate::policy::{Policy, PolicyHandle};
use crate::ratelimit::RateLimiter;
use crate::request_id::RequestIds;
use crate::route::{self, Route, RouteClass};
use crate::trace::{attr, RequestTrace, Span, Tracer};
use crate::upstream::UpstreamError;

/// How a request reached authgate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// authgate is the hop in front of the CMS.
    Proxy,
    /// A front proxy's forward-auth call (Traefik, Caddy, nginx `auth_request`).
    ForwardAuth,
    /// Envoy's ext_authz over HTTP.
    ExtAuthzHttp,
    /// Envoy's ext_authz over gRPC.
    ExtAuthzGrpc,
}

impl Door {
    /// Its position among the doors (metrics keep a series set per door).
    pub fn index(self) -> usize {
        match self {
            Door::Proxy => 0,
            Door::ForwardAuth => 1,
            Door::ExtAuthzHttp => 2,
            Door::ExtAuthzGrpc => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Door::Proxy => "proxy",
            Door::ForwardAuth => "forward_auth",
            Door::ExtAuthzHttp => "ext_authz_http",
            Door::ExtAuthzGrpc => "ext_authz_grpc",
        }
    }
}

/// What the door holds for one request while it is judged: the policy
/// snapshot and the request as presented. The context borrows it.
pub struct Held {
    policy: Arc<Policy>,
    method: Method,
    /// The raw target as the client sent it (origin or absolute form).
    uri: Uri,
    version: Version,
    door: Door,
}

impl Held {
    /// The policy snapshot the request is judged by.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }
}

/// What a request is known by as it arrives.
pub struct Arrival<'c> {
    started: Instant,
    door: Door,
    pub peer: &'c Peer,
    /// The client as the trusted proxies (or the door's caller) say: for
    /// the per-IP limits and pinned tokens.
    pub client: IpAddr,
    pub request_id: HeaderValue,
    pub method: Method,
}

/// What one request has learnt once it is judged: every later phase takes it.
pub struct RequestCtx<'r> {
    pub arrival: Arrival<'r>,
    pub policy: &'r Policy,
    pub target: Target<'r>,
    /// The authority the client asked for (validated).
    pub host: Option<HeaderValue>,
    pub route: Route<'r>,
}

/// The normalised request target: what is judged and what is forwarded.
/// Borrowed from the request when it is normal already (the common case:
/// then the request's own URI is forwarded, nothing is copied).
pub struct Target<'u> {
    pub path_and_query: Cow<'u, str>,
    path_len: usize,
    /// The normal form as a URI, when it is not the request's own.
    pub normal_uri: Option<Uri>,
}

impl Target<'_> {
    pub fn path(&self) -> &str {
        &self.path_and_query[..self.path_len]
    }
}

/// How a request was settled, for the door's answer, logs and metrics.
pub enum Outcome {
    /// To forward without identity (unprotected, anonymous, session).
    Pass,
    /// To forward with identity.
    Allow(Hit<Resolved>),
    Refuse {
        refusal: Refusal,
        /// The token the key belongs to, when there is one.
        token: Option<Hit<Resolved>>,
        retry_after: Option<u64>,
    },
    /// Authorization denied it, but `server.enforcement = "report"`: to
    /// forward without identity, as if authgate were not there, and to
    /// report what it would have answered.
    Reported {
        refusal: Refusal,
        token: Option<Hit<Resolved>>,
    },
    /// Forwarding failed: the refusal answered, and the error's chain for
    /// the one log line.
    Failed {
        refusal: Refusal,
        error: UpstreamError,
    },
}

impl Outcome {
    /// Refused before any token is known.
    fn refuse(refusal: impl Into<Refusal>) -> Self {
        Self::refuse_token(refusal, None)
    }

    /// Refused, with the token when there is one.
    fn refuse_token(refusal: impl Into<Refusal>, token: Option<Hit<Resolved>>) -> Self {
        Outcome::Refuse {
            refusal: refusal.into(),
            token,
            retry_after: None,
        }
    }

    /// Over a rate limit; retry after `secs`.
    fn rate_limited(token: Option<Hit<Resolved>>, secs: u64) -> Self {
        Outcome::Refuse {
            refusal: Refusal::Denied(Denial::RateLimited),
            token,
            retry_after: Some(secs),
        }
    }

    /// The token the request's key belongs to, when it was looked up and
    /// found.
    pub fn token(&self) -> Option<&Hit<Resolved>> {
        match self {
            Outcome::Allow(t) => Some(t),
            Outcome::Refuse { token, .. } | Outcome::Reported { token, .. } => token.as_ref(),
            Outcome::Pass | Outcome::Failed { .. } => None,
        }
    }

    /// Forwarding failed: the outcome, and the refusal it answers with.
    pub fn failed(error: UpstreamError) -> (Self, Refusal) {
        let refusal = match error {
            UpstreamError::Timeout => Refusal::GatewayTimeout,
            _ => Refusal::BadGateway,
        };
        (Outcome::Failed { refusal, error }, refusal)
    }

    /// The refusal to answer with, and when to retry; `None` to forward.
    pub fn refusal(&self) -> Option<(Refusal, Option<u64>)> {
        match self {
            Outcome::Pass | Outcome::Allow(_) | Outcome::Reported { .. } => None,
            Outcome::Refuse {
                refusal,
                retry_after,
                ..
            } => Some((*refusal, *retry_after)),
            Outcome::Failed { refusal, .. } => Some((*refusal, None)),
        }
    }

    /// The identity to forward with, when a token allowed the request.
    pub fn allowed<'a>(&'a self, cx: &'a RequestCtx<'_>) -> Option<Allowed<'a>> {
        match self {
            Outcome::Allow(token) => Some(Allowed {
                record: &token.record,
                action: cx.route.action.name(),
            }),
            _ => None,
        }
    }
}

/// A request as the gate settled it. One lives on the door's stack per
/// request; boxing the larger variant would allocate for every request.
#[allow(clippy::large_enum_variant)]
pub enum Judged<'r> {
    /// It could not be judged (its target, `Host` or readings): refused,
    /// never forwarded.
    Unjudged {
        arrival: Arrival<'r>,
        refusal: Refusal,
        trace: RequestTrace,
    },
    /// Judged: its context and how it was settled.
    Judged {
        ctx: RequestCtx<'r>,
        outcome: Outcome,
        trace: RequestTrace,
    },
}

impl<'r> Judged<'r> {
    /// The request's trace, for the door to add its spans and hand back to
    /// [`Gate::finish`]; an untraced one is left behind.
    pub fn take_trace(&mut self) -> RequestTrace {
        let (Judged::Unjudged { trace, .. } | Judged::Judged { trace, .. }) = self;
        std::mem::replace(trace, RequestTrace::none())
    }

    /// The arrival facts.
    pub fn arrival(&self) -> &Arrival<'r> {
        match self {
            Judged::Unjudged { arrival, .. } => arrival,
            Judged::Judged { ctx, .. } => &ctx.arrival,
        }
    }

    /// The request id the answer carries.
    pub fn request_id(&self) -> &HeaderValue {
        &self.arrival().request_id
    }

    /// The refusal to answer with, and when to retry: `None` when the
    /// request is to be forwarded.
    pub fn refusal(&self) -> Option<(Refusal, Option<u64>)> {
        match self {
            Judged::Unjudged { refusal, .. } => Some((*refusal, None)),
            Judged::Judged { outcome, .. } => outcome.refusal(),
        }
    }
}

/// What a request offers to be judged: its headers, and its body when the
/// door has it (a read-only token on GraphQL needs the operation).
pub struct Presented<'a> {
    pub headers: &'a HeaderMap,
    /// The client address as the door resolved it.
    pub client: IpAddr,
    pub body: Body<'a>,
}

/// The request body, as far as the door has it.
pub enum Body<'a> {
    /// The proxy's: read (and kept for forwarding) only when needed.
    Stream(&'a mut ForwardBody),
    /// A body the caller sent along (Envoy's `with_request_body`).
    Buffered(Bytes),
    /// None: the front proxy does not send it.
    Absent,
}

/// Everything the judgement needs, built once by `server::Server::bind`.
pub struct Gate {
    policy: PolicyHandle,
    forwarder: Forwarder,
    max_uri_bytes: usize,
    lookup: Lookup,
    usage: Arc<UsageRecorder>,
    limiter: RateLimiter,
    metrics: Metrics,
    request_ids: RequestIds,
    tracer: Tracer,
}

/// Parts of [`Gate`] that `server::Server::bind` builds and shares.
pub struct GateParts {
    pub policy: PolicyHandle,
    pub forwarder: Forwarder,
    pub lookup: Lookup,
    pub usage: Arc<UsageRecorder>,
    pub limiter: RateLimiter,
    pub metrics: Metrics,
    /// Off unless `[tracing]` names a collector.
    pub tracer: Tracer,
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Gate {
    pub fn new(cfg: &Config, parts: GateParts) -> Self {
        Self {
            policy: parts.policy,
            forwarder: parts.forwarder,
            max_uri_bytes: cfg.server.max_uri_bytes,
            lookup: parts.lookup,
            usage: parts.usage,
            limiter: parts.limiter,
            metrics: parts.metrics,
            request_ids: RequestIds::new(),
            tracer: parts.tracer,
        }
    }

    /// What forwarding writes (identity, forwarding headers, `Host`).
    pub fn forwarder(&self) -> &Forwarder {
        &self.forwarder
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// What keeps an allowed token's tunnel open: not expired, and no
    /// invalidation of it since it was read.
    pub fn tunnel_validity(self: &Arc<Self>, token: &Hit<Resolved>) -> crate::tunnel::Validity {
        let (gate, hit) = (self.clone(), token.clone());
        crate::tunnel::token_validity(token.record.expires_at.get(), move || {
            gate.lookup.still_current(&hit)
        })
    }

    /// Hold a request for judgement: the policy in force now, and the
    /// request line as presented.
    pub fn hold(&self, door: Door, method: Method, uri: Uri, version: Version) -> Held {
        Held {
            policy: self.policy.snapshot(),
            method,
            uri,
            version,
            door,
        }
    }

    /// Judge a request, phase by phase: the one function that decides for
    /// every door. `recent`: what the client connection's last key was.
    pub async fn decide<'r>(
        &self,
        held: &'r Held,
        peer: &'r Peer,
        req: Presented<'_>,
        recent: &Recent,
    ) -> Judged<'r> {
        let mut trace = RequestTrace::from(self.tracer.start(&held.method, req.headers));
        let arrival = self.arrive(held, peer, &req);
        let cx = match judge(arrival, held, req.headers, self.max_uri_bytes) {
            Ok(cx) => cx,
            Err((arrival, refusal)) => {
                return Judged::Unjudged {
                    arrival,
                    refusal,
                    trace,
                }
            }
        };
        // The phases add their spans under the SERVER span.
        let span = trace.span();
        let outcome = match self.precheck(&cx, req.headers, span).await {
            Err(settled) => settled,
            Ok(key) => match self.look_up(&cx, recent, key, span).await {
                Err(unavailable) => unavailable,
                Ok(found) => self.settle(&cx, found, req.headers, req.body, span).await,
            },
        };
        let outcome = enforce(cx.policy.enforcement, outcome);
        Judged::Judged {
            ctx: cx,
            outcome,
            trace,
        }
    }

    /// A request a door refuses before judging it (it could not tell what
    /// to judge, or what it was shown may not pass whatever the judgement):
    /// settled as such, for the answer and [`Gate::finish`].
    pub fn refuse_unjudged<'r>(
        &self,
        held: &'r Held,
        peer: &'r Peer,
        req: &Presented<'_>,
        refusal: Refusal,
    ) -> Judged<'r> {
        Judged::Unjudged {
            trace: RequestTrace::from(self.tracer.start(&held.method, req.headers)),
            arrival: self.arrive(held, peer, req),
            refusal,
        }
    }

    /// Phase: arrive. The clock, the connection, the client, the request
    /// id and the method.
    fn arrive<'c>(&self, held: &Held, peer: &'c Peer, req: &Presented<'_>) -> Arrival<'c> {
        Arrival {
            started: Instant::now(),
            door: held.door,
            peer,
            request_id: self.request_ids.take(req.headers),
            client: req.client,
            method: held.method.clone(),
        }
    }

    /// Phase: precheck the credential, then the per-IP limit. `Ok`: the key
    /// to look up; `Err`: settled without a lookup (passed or refused).
    /// Redis calls are spans under `span`.
    async fn precheck<'h>(
        &self,
        cx: &RequestCtx<'_>,
        headers: &'h HeaderMap,
        span: &mut Span,
    ) -> Result<&'h [u8], Outcome> {
        let cred = authz::parse_authorization(
            headers
                .get_all(header::AUTHORIZATION)
                .iter()
                .map(|v| v.as_bytes()),
        );
        let client = cx.arrival.client;
        match authz::precheck(&cx.route, cred, cx.policy.sessions) {
            Precheck::Pass => Err(Outcome::Pass),
            Precheck::Deny(denial) => {
                if denial == Denial::InvalidCredentials {
                    self.limiter.note_failed_auth(client, span).await;
                }
                Err(Outcome::refuse(denial))
            }
            Precheck::Lookup(key) => match self.limiter.ip_blocked(client, span).await {
                Some(retry) => Err(Outcome::rate_limited(None, retry)),
                None => Ok(key),
            },
        }
    }

    /// Phase: look the key up (known hashes, cache, store). `Err`: the store
    /// cannot answer. A look-up the cache cannot answer is a span under
    /// `span`.
    async fn look_up(
        &self,
        cx: &RequestCtx<'_>,
        recent: &Recent,
        key: &[u8],
        span: &mut Span,
    ) -> Result<Option<Hit<Resolved>>, Outcome> {
        self.lookup.find_on(recent, key, span).await.map_err(|e| {
            if let LookupError::Failed(reason) = &e {
                tracing::error!(%reason, request_id = cx.arrival.request_id.to_str().unwrap_or("-"), "token lookup failed");
            }
            Outcome::refuse(Denial::StoreUnavailable)
        })
    }

    /// Phase: decide on a looked-up token (reading a GraphQL operation when
    /// a read-only token needs it), note its use, then its rate limit.
    async fn settle(
        &self,
        cx: &RequestCtx<'_>,
        found: Option<Hit<Resolved>>,
        headers: &HeaderMap,
        body: Body<'_>,
        span: &mut Span,
    ) -> Outcome {
        let now = SystemTime::now();
        let record = found.as_deref().map(|r| &r.record);
        let verdict = match verdict(cx, record, headers, body, now).await {
            Ok(v) => v,
            Err(refusal) => return Outcome::refuse_token(refusal, found),
        };
        let authenticated = matches!(
            verdict,
            Verdict::Allow
                | Verdict::Deny {
                    authenticated: true,
                    ..
                }
        );
        if authenticated {
            if let Some(r) = &found {
                self.note_use(r, now);
            }
        }
        match (verdict, found) {
            (Verdict::Allow, Some(r)) => self.token_limit(r, span).await,
            // `authz::decide` allows nothing without a record.
            (Verdict::Allow, None) => Outcome::refuse(Denial::InvalidCredentials),
            (Verdict::Deny { denial, .. }, found) => {
                if !authenticated {
                    self.limiter.note_failed_auth(cx.arrival.client, span).await;
                }
                Outcome::refuse_token(denial, found)
            }
            (Verdict::NeedGraphQlOperation, found) => {
                Outcome::refuse_token(Denial::Forbidden, found)
            }
        }
    }

    /// Record a use for `last_used_at` (at most once per interval per token).
    fn note_use(&self, r: &Hit<Resolved>, now: SystemTime) {
        if r.should_record(unix_secs(now), self.usage.interval().as_secs()) {
            self.usage.record(r.record.id, now);
        }
    }

    /// An allowed token, unless it is over its rate limit.
    async fn token_limit(&self, r: Hit<Resolved>, span: &mut Span) -> Outcome {
        let limit = self
            .limiter
            .check_token(r.record.id, r.record.rate_limit.get(), span)
            .await;
        match limit {
            Some(retry) => Outcome::rate_limited(Some(r), retry),
            None => Outcome::Allow(r),
        }
    }

    /// Phase: log and count, once the door has answered with `status`, and
    /// end the request's trace (taken with [`Judged::take_trace`]).
    /// `failed`: the forwarding failure that replaced the judged outcome.
    pub fn finish(
        &self,
        judged: &Judged<'_>,
        failed: Option<&Outcome>,
        status: StatusCode,
        trace: RequestTrace,
    ) {
        let arrival = judged.arrival();
        let (cx, outcome) = match judged {
            Judged::Unjudged { refusal, .. } => (None, Outcome::refuse(*refusal)),
            Judged::Judged { ctx, .. } => (Some(ctx), Outcome::Pass),
        };
        let outcome = match (judged, failed) {
            (_, Some(f)) => f,
            (Judged::Judged { outcome, .. }, None) => outcome,
            (Judged::Unjudged { .. }, None) => &outcome,
        };
        let elapsed = arrival.started.elapsed();
        let status_u = status.as_u16();
        let token_id = outcome.token().map(|t| t.record.id);
        let decision = match outcome {
            Outcome::Pass => Decision::Pass,
            Outcome::Reported { refusal, .. } => {
                self.metrics
                    .would_deny
                    .with_label_values(&[refusal.label()])
                    .inc();
                tracing::warn!(
                    target: "authgate::report",
                    door = arrival.door.as_str(),
                    method = %arrival.method,
                    path = %cx.map_or("-", |cx| cx.target.path()),
                    would_status = refusal.status(),
                    reason = refusal.label(),
                    token_id = token_id.unwrap_or(0),
                    request_id = arrival.request_id.to_str().unwrap_or("-"),
                    "report mode: forwarded without identity a request that enforcement would refuse"
                );
                Decision::Pass
            }
            Outcome::Allow(_) => Decision::Allow,
            Outcome::Refuse { refusal, .. } => Decision::Deny(*refusal),
            Outcome::Failed { refusal, error } => {
                self.metrics
                    .upstream_errors
                    .with_label_values(&[error.kind()])
                    .inc();
                tracing::warn!(error = %crate::telemetry::Chain(error), request_id = %arrival.request_id.to_str().unwrap_or("-"), "upstream request failed");
                Decision::Deny(*refusal)
            }
        };
        let class = cx.map_or(RouteClass::Unprotected, |cx| cx.route.class);
        self.metrics
            .hot
            .record(arrival.door, class, decision, status_u, elapsed);
        if tracing::enabled!(target: "authgate::access", tracing::Level::INFO) {
            let (decision, reason) = match decision {
                Decision::Allow => ("allow", ""),
                Decision::Pass => ("pass", ""),
                Decision::Deny(r) => ("deny", r.label()),
            };
            tracing::info!(
                target: "authgate::access",
                door = arrival.door.as_str(),
                method = %arrival.method,
                path = %cx.map_or("-", |cx| cx.target.path()),
                route_class = class.as_str(),
                decision,
                reason,
                status = status_u,
                token_id = token_id.unwrap_or(0),
                latency_us = elapsed.as_micros() as u64,
                request_id = arrival.request_id.to_str().unwrap_or("-"),
                "request"
            );
        }
        if trace.is_recording() {
            let settled = Settled {
                class,
                decision,
                would_deny: match outcome {
                    Outcome::Reported { refusal, .. } => Some(refusal.label()),
                    _ => None,
                },
                token_id,
                status: status_u,
            };
            end_trace(trace, arrival, cx, settled);
        }
    }
}

/// Report mode: what authorization denies is forwarded without identity
/// instead, and reported. A request whose shape cannot be judged (target,
/// `Host`, readings, a GraphQL body too large to read) is refused in both
/// modes: it cannot be forwarded safely as it is.
fn enforce(mode: Enforcement, outcome: Outcome) -> Outcome {
    match (mode, outcome) {
        (
            Enforcement::Report,
            Outcome::Refuse {
                refusal: refusal @ Refusal::Denied(_),
                token,
                ..
            },
        ) => Outcome::Reported { refusal, token },
        (_, outcome) => outcome,
    }
}

/// How a request was settled, as its SERVER span records it.
struct Settled {
    class: RouteClass,
    decision: Decision,
    /// Report mode: why enforcement would have refused it.
    would_deny: Option<&'static str>,
    token_id: Option<i64>,
    status: u16,
}

/// The SERVER span's attributes, from what the phases learnt, then the end
/// of the trace. Only for recorded requests.
fn end_trace(
    mut trace: RequestTrace,
    arrival: &Arrival<'_>,
    cx: Option<&RequestCtx<'_>>,
    settled: Settled,
) {
    trace.set_attr(attr::DOOR, arrival.door.as_str());
    trace.set_attr(attr::ROUTE_CLASS, settled.class.as_str());
    let (decision, reason) = match settled.decision {
        Decision::Allow => ("allow", None),
        Decision::Pass => ("pass", None),
        Decision::Deny(r) => ("deny", Some(r.label())),
    };
    trace.set_attr(attr::DECISION, decision);
    if let Some(reason) = reason {
        trace.set_attr(attr::DENY_REASON, reason);
    }
    if let Some(reason) = settled.would_deny {
        trace.set_attr(attr::WOULD_DENY_REASON, reason);
    }
    if let Some(id) = settled.token_id {
        trace.set_attr(attr::TOKEN_ID, id);
    }
    let scheme = if arrival.peer.tls { "https" } else { "http" };
    trace.set_attr(attr::URL_SCHEME, scheme);
    trace.set_attr(attr::CLIENT_ADDRESS, arrival.client.to_string());
    trace.set_attr(
        attr::NETWORK_PEER_ADDRESS,
        arrival.peer.addr.ip().to_string(),
    );
    if let Ok(id) = arrival.request_id.to_str() {
        trace.set_attr(attr::REQUEST_ID, id.to_owned());
    }
    if let Some(cx) = cx {
        trace.set_attr(attr::URL_PATH, cx.target.path().to_owned());
        if let Some(action) = cx.route.action.name() {
            trace.set_attr(attr::ACTION, action.to_owned());
        }
        let authority = cx
            .host
            .as_ref()
            .and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok());
        if let Some(a) = authority {
            trace.set_attr(attr::SERVER_ADDRESS, a.host().to_owned());
            if let Some(port) = a.port_u16() {
                trace.set_attr(attr::SERVER_PORT, port);
            }
        }
    }
    trace.span().set_http_status(settled.status);
    trace.end();
}

/// Phase: judge. The request target (bounded) in its normal form, the
/// `Host` asked for, and the route every reading of the raw path gives. A
/// request that cannot be judged is never forwarded.
fn judge<'r>(
    arrival: Arrival<'r>,
    held: &'r Held,
    headers: &HeaderMap,
    max_uri_bytes: usize,
) -> Result<RequestCtx<'r>, (Arrival<'r>, Refusal)> {
    let uri = &held.uri;
    let target = match parse_target(uri, max_uri_bytes) {
        Ok(t) => t,
        Err(refusal) => return Err((arrival, refusal)),
    };
    let host = match host::requested(held.version, uri, headers) {
        Ok(h) => h,
        Err(_) => return Err((arrival, Refusal::InvalidHost)),
    };
    let route = match held
        .policy
        .routes
        .judge(&held.method, uri.path(), uri.query(), target.path())
    {
        Ok(r) => r,
        Err(_) => return Err((arrival, Refusal::InvalidPath)),
    };
    Ok(RequestCtx {
        arrival,
        policy: &held.policy,
        target,
        host,
        route,
    })
}

/// The request target, bounded, in its normal form.
fn parse_target(uri: &Uri, max_uri_bytes: usize) -> Result<Target<'_>, Refusal> {
    let uri_len = uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri_len > max_uri_bytes {
        return Err(Refusal::UriTooLong);
    }
    let path = route::normalise(uri.path()).map_err(|_| Refusal::InvalidPath)?;
    let path_len = path.len();
    let path_and_query = match (path, uri.query()) {
        (Cow::Borrowed(_), _) => Cow::Borrowed(uri.path_and_query().map_or("/", |pq| pq.as_str())),
        (Cow::Owned(p), Some(q)) => Cow::Owned(format!("{p}?{q}")),
        (Cow::Owned(p), None) => Cow::Owned(p),
    };
    // A rewritten target is parsed once, here; one that is no URI (it is
    // made of the URI's own bytes, so this is a guard, not a path taken) is
    // refused rather than forwarded.
    let normal_uri = match &path_and_query {
        Cow::Borrowed(_) => None,
        Cow::Owned(pq) => Some(Uri::try_from(pq.as_str()).map_err(|_| Refusal::InvalidPath)?),
    };
    Ok(Target {
        path_and_query,
        path_len,
        normal_uri,
    })
}

/// `authz::decide`, first reading the GraphQL operation when a read-only
/// token needs it (the body, when read, is forwarded from the buffer).
async fn verdict(
    cx: &RequestCtx<'_>,
    record: Option<&TokenRecord>,
    headers: &HeaderMap,
    body: Body<'_>,
    now: SystemTime,
) -> Result<Verdict, Refusal> {
    let client = cx.arrival.client;
    let verdict = authz::decide(&cx.route, record, None, now, client);
    if verdict != Verdict::NeedGraphQlOperation {
        return Ok(verdict);
    }
    let op = graphql_operation(cx, headers, body).await?;
    Ok(authz::decide(&cx.route, record, op, now, client))
}

/// The GraphQL operation, judged under every reading the CMS could make of
/// the request (`graphql::judge`: the query string, JSON, forms,
/// `application/graphql`, multipart, batches), from a body of at most
/// `graphql_max_body` bytes (a streamed one is then forwarded from the
/// buffer). A request no reader can be sure of counts as a write. `None`:
/// the door has no body where the request announces one.
async fn graphql_operation(
    cx: &RequestCtx<'_>,
    headers: &HeaderMap,
    body: Body<'_>,
) -> Result<Option<GraphQlOperation>, Refusal> {
    let max = cx.policy.graphql_max_body;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(Refusal::PayloadTooLarge);
    }
    let announced =
        declared.is_some_and(|n| n > 0) || headers.contains_key(header::TRANSFER_ENCODING);
    let bytes = match body {
        Body::Absent if announced => return Ok(None),
        Body::Absent => Bytes::new(),
        Body::Buffered(b) if b.len() > max => return Err(Refusal::PayloadTooLarge),
        Body::Buffered(b) => b,
        Body::Stream(stream) => {
            let taken = std::mem::replace(stream, Either::Right(Full::new(Bytes::new())));
            let bytes = match Limited::new(taken, max).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => return Err(Refusal::PayloadTooLarge),
            };
            *stream = Either::Right(Full::new(bytes.clone()));
            bytes
        }
    };
    let query = cx.target.path_and_query.split_once('?').map(|(_, q)| q);
    match crate::graphql::judge(&cx.arrival.method, headers, query, &bytes) {
        Ok(op) => Ok(Some(op)),
        Err(why) => {
            tracing::debug!(
                reason = why.label(),
                request_id = cx.arrival.request_id.to_str().unwrap_or("-"),
                "GraphQL request no reader can be sure of: counted as a write"
            );
            Ok(Some(GraphQlOperation::Other))
        }
    }
}
