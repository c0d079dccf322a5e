//! The request path, in named phases (as Pingora's proxy reads):
//!
//! ```text
//! arrive -> judge (target, Host, route under every reading)
//!   -> precheck (authz, per-IP limit) -> look up (lookup: known, cache, store)
//!   -> decide (authz, per-token limit)
//!   -> forward with identity (forward, upstream) | answer the refusal
//!   -> log + metrics
//! ```
//!
//! [`Gateway::handle`] reads top to bottom in that order. What a request
//! has learnt travels in one value, [`RequestCtx`] (on the handler's
//! stack): the arrival facts, the policy snapshot it is judged by, the
//! normal target, the requested `Host` and the route. Every phase after the
//! judgement takes it. The proxy knows a decision, not SQL: lookups go
//! through [`crate::lookup::Lookup`]; refusals become responses in one
//! function, [`crate::answer::response`]; what the CMS receives is made by
//! [`crate::forward::Forwarder`].

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;

use crate::answer::{self, Refusal};
use crate::authz::{self, Denial, GraphQlOperation, Precheck, Verdict};
use crate::body::ForwardBody;
use crate::cache::{Hit, LookupError, Resolved};
use crate::config::Config;
use crate::forward::upgrade::{self, Handshake};
use crate::forward::{host, Allowed, Forwarder, Outgoing, Peer};
use crate::last_used::UsageRecorder;
use crate::lookup::{Lookup, Recent};
use crate::metrics::{Decision, Metrics};
use crate::policy::{Policy, PolicyHandle};
use crate::ratelimit::RateLimiter;
use crate::request_id::{RequestIds, X_REQUEST_ID};
use crate::route::{self, Route, RouteClass};
use crate::upstream::{Pinned, Upstream, UpstreamBody, UpstreamError};

/// The body of every response the gateway sends: the upstream's, or one it
/// made itself (an error envelope).
pub type ResponseBody = Either<UpstreamBody, Full<Bytes>>;

/// Everything the request path needs, built once by `server::Server::bind`.
pub struct Gateway {
    policy: PolicyHandle,
    forwarder: Forwarder,
    max_uri_bytes: usize,
    lookup: Lookup,
    upstream: Upstream,
    usage: Arc<UsageRecorder>,
    limiter: RateLimiter,
    metrics: Metrics,
    request_ids: RequestIds,
}

/// Parts of [`Gateway`] that `server::Server::bind` builds and shares.
pub struct GatewayParts {
    pub policy: PolicyHandle,
    pub forwarder: Forwarder,
    pub lookup: Lookup,
    pub upstream: Upstream,
    pub usage: Arc<UsageRecorder>,
    pub limiter: RateLimiter,
    pub metrics: Metrics,
}

/// What the gateway keeps per client connection: who is on the other end,
/// and the upstream connection pinned to it (see [`crate::upstream`]).
pub struct ClientConn {
    pub peer: Peer,
    upstream: Pinned,
    /// The key it sent last, as the look-up phase remembers it.
    recent: Recent,
}

/// What a request is known by as it arrives.
struct Arrival<'c> {
    started: Instant,
    peer: &'c Peer,
    /// The client as the trusted proxies say (for the per-IP limits and
    /// pinned tokens).
    client: IpAddr,
    request_id: HeaderValue,
    method: Method,
}

/// What one request has learnt once it is judged: every later phase takes
/// it. Borrows the policy snapshot and the request's URI, which live on
/// the handler's stack for the whole request.
struct RequestCtx<'r> {
    arrival: Arrival<'r>,
    policy: &'r Policy,
    target: &'r Target<'r>,
    /// The authority the client asked for (validated).
    host: Option<HeaderValue>,
    route: Route<'r>,
}

/// The normalised request target: what is judged and what is forwarded.
/// Borrowed from the request when it is normal already (the common case:
/// then the request's own URI is forwarded, nothing is copied).
struct Target<'u> {
    path_and_query: Cow<'u, str>,
    path_len: usize,
    /// The normal form as a URI, when it is not the request's own.
    normal_uri: Option<Uri>,
}

impl Target<'_> {
    fn path(&self) -> &str {
        &self.path_and_query[..self.path_len]
    }
}

/// How the request was settled, for logs and metrics.
enum Outcome {
    /// Forwarded without identity (unprotected, anonymous, session).
    Pass,
    /// Forwarded with identity.
    Allow(Hit<Resolved>),
    Refuse {
        refusal: Refusal,
        token_id: Option<i64>,
        retry_after: Option<u64>,
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
    fn refuse_token(refusal: impl Into<Refusal>, token_id: Option<i64>) -> Self {
        Outcome::Refuse {
            refusal: refusal.into(),
            token_id,
            retry_after: None,
        }
    }

    /// Over a rate limit; retry after `secs`.
    fn rate_limited(token_id: Option<i64>, secs: u64) -> Self {
        Outcome::Refuse {
            refusal: Refusal::Denied(Denial::RateLimited),
            token_id,
            retry_after: Some(secs),
        }
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Gateway {
    pub fn new(cfg: &Config, parts: GatewayParts) -> Self {
        Self {
            policy: parts.policy,
            forwarder: parts.forwarder,
            max_uri_bytes: cfg.server.max_uri_bytes,
            lookup: parts.lookup,
            upstream: parts.upstream,
            usage: parts.usage,
            limiter: parts.limiter,
            metrics: parts.metrics,
            request_ids: RequestIds::new(),
        }
    }

    /// The per-connection state of a new client connection.
    pub fn open(&self, addr: SocketAddr, tls: bool) -> ClientConn {
        ClientConn {
            peer: Peer::new(addr, tls),
            upstream: self.upstream.pin(),
            recent: Recent::default(),
        }
    }

    /// Handle one request end to end (accepted by `server::Connection`),
    /// phase by phase.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        conn: &ClientConn,
    ) -> Response<ResponseBody> {
        let arrival = self.arrive(&req, &conn.peer);
        // The snapshot and a second handle on the URI (its bytes are
        // shared, not copied) that the context borrows while the request
        // moves on.
        let policy = self.policy.snapshot();
        let uri = req.uri().clone();
        let target = match parse_target(&uri, self.max_uri_bytes) {
            Ok(t) => t,
            Err(refusal) => return self.refuse_unjudged(&arrival, refusal),
        };
        let cx = match judge(arrival, &policy, &uri, &target, &req) {
            Ok(cx) => cx,
            Err((arrival, refusal)) => return self.refuse_unjudged(&arrival, refusal),
        };
        let mut req = req.map(Either::Left);

        // Precheck, look up, decide.
        let outcome = match self.precheck(&cx, req.headers()).await {
            Err(settled) => settled,
            Ok(key) => match self.look_up(&cx, &conn.recent, key).await {
                Err(unavailable) => unavailable,
                Ok(found) => self.decide(&cx, found, &mut req).await,
            },
        };

        // Forward with identity, or answer with the refusal.
        let allowed = match &outcome {
            Outcome::Refuse {
                refusal,
                retry_after,
                ..
            } => {
                let resp = answer::response(*refusal, &cx.arrival.request_id, *retry_after);
                self.finish(&cx.arrival, Some(&cx), &outcome, resp.status());
                return resp.map(Either::Right);
            }
            Outcome::Allow(token) => Some(Allowed {
                record: &token.record,
                action: cx.route.action.name(),
            }),
            Outcome::Pass | Outcome::Failed { .. } => None,
        };
        let (resp, failed) = match self.forward(&cx, conn, req, allowed).await {
            Ok(resp) => (resp, None),
            Err(error) => {
                let refusal = match error {
                    UpstreamError::Timeout => Refusal::GatewayTimeout,
                    _ => Refusal::BadGateway,
                };
                let resp = answer::response(refusal, &cx.arrival.request_id, None);
                (
                    resp.map(Either::Right),
                    Some(Outcome::Failed { refusal, error }),
                )
            }
        };

        // Log + metrics.
        self.finish(
            &cx.arrival,
            Some(&cx),
            failed.as_ref().unwrap_or(&outcome),
            resp.status(),
        );
        resp
    }

    /// Answer a request that cannot be judged: never forwarded.
    fn refuse_unjudged(&self, arrival: &Arrival<'_>, refusal: Refusal) -> Response<ResponseBody> {
        let resp = answer::response(refusal, &arrival.request_id, None);
        self.finish(arrival, None, &Outcome::refuse(refusal), resp.status());
        resp.map(Either::Right)
    }

    /// Phase: arrive. The clock, the connection, the client, the request
    /// id and the method.
    fn arrive<'c>(&self, req: &Request<Incoming>, peer: &'c Peer) -> Arrival<'c> {
        Arrival {
            started: Instant::now(),
            peer,
            request_id: self.request_ids.take(req.headers()),
            client: self.forwarder.proxies().client_ip(req.headers(), peer.addr),
            method: req.method().clone(),
        }
    }

    /// Phase: precheck the credential, then the per-IP limit. `Ok`: the key
    /// to look up; `Err`: settled without a lookup (passed or refused).
    async fn precheck<'h>(
        &self,
        cx: &RequestCtx<'_>,
        headers: &'h HeaderMap,
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
                    self.limiter.note_failed_auth(client).await;
                }
                Err(Outcome::refuse(denial))
            }
            Precheck::Lookup(key) => match self.limiter.ip_blocked(client).await {
                Some(retry) => Err(Outcome::rate_limited(None, retry)),
                None => Ok(key),
            },
        }
    }

    /// Phase: look the key up (known hashes, cache, store). `Err`: the store
    /// cannot answer.
    async fn look_up(
        &self,
        cx: &RequestCtx<'_>,
        recent: &Recent,
        key: &[u8],
    ) -> Result<Option<Hit<Resolved>>, Outcome> {
        self.lookup.find_on(recent, key).await.map_err(|e| {
            if let LookupError::Failed(reason) = &e {
                tracing::error!(%reason, request_id = cx.arrival.request_id.to_str().unwrap_or("-"), "token lookup failed");
            }
            Outcome::refuse(Denial::StoreUnavailable)
        })
    }

    /// Phase: decide on a looked-up token (reading a GraphQL operation when
    /// a read-only token needs it), note its use, then its rate limit.
    async fn decide(
        &self,
        cx: &RequestCtx<'_>,
        found: Option<Hit<Resolved>>,
        req: &mut Request<ForwardBody>,
    ) -> Outcome {
        let now = SystemTime::now();
        let record = found.as_deref().map(|r| &r.record);
        let token_id = record.map(|r| r.id);
        let verdict = match verdict(cx, record, req, now).await {
            Ok(v) => v,
            Err(refusal) => return Outcome::refuse_token(refusal, token_id),
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
            (Verdict::Allow, Some(r)) => self.token_limit(r).await,
            // `decide` allows nothing without a record.
            (Verdict::Allow, None) => Outcome::refuse(Denial::InvalidCredentials),
            (Verdict::Deny { denial, .. }, _) => {
                if !authenticated {
                    self.limiter.note_failed_auth(cx.arrival.client).await;
                }
                Outcome::refuse_token(denial, token_id)
            }
            (Verdict::NeedGraphQlOperation, _) => {
                Outcome::refuse_token(Denial::Forbidden, token_id)
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
    async fn token_limit(&self, r: Hit<Resolved>) -> Outcome {
        let limit = self
            .limiter
            .check_token(r.record.id, r.record.rate_limit.get())
            .await;
        match limit {
            Some(retry) => Outcome::rate_limited(Some(r.record.id), retry),
            None => Outcome::Allow(r),
        }
    }

    /// Phase: forward to the upstream, with identity when allowed.
    async fn forward(
        &self,
        cx: &RequestCtx<'_>,
        conn: &ClientConn,
        req: Request<ForwardBody>,
        allowed: Option<Allowed<'_>>,
    ) -> Result<Response<ResponseBody>, UpstreamError> {
        let (mut parts, body) = req.into_parts();
        // A WebSocket handshake, when the client's side can be handed over.
        let handshake = Handshake::requested(&parts.headers).and_then(|hs| {
            let on = parts.extensions.remove::<hyper::upgrade::OnUpgrade>()?;
            Some((hs, on))
        });
        let path_and_query = cx.target.path_and_query.as_ref();
        let out = Outgoing {
            peer: cx.arrival.peer,
            requested_host: cx.host.as_ref(),
            request_id: &cx.arrival.request_id,
            path_and_query,
            allowed,
            upgrade: handshake.is_some(),
        };
        let head = self
            .forwarder
            .prepare(&parts.method, &mut parts.headers, out);
        // Origin-form: the request's own URI when it is already that and
        // normal, else the normal form.
        if let Some(uri) = &cx.target.normal_uri {
            parts.uri = uri.clone();
        } else if parts.uri.scheme().is_some() {
            parts.uri = parts
                .uri
                .path_and_query()
                .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
        }
        let t = Instant::now();
        let result = conn.upstream.send(&parts, body, &head).await;
        self.metrics
            .upstream_duration
            .observe(t.elapsed().as_secs_f64());
        let mut resp = result?;
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            // The tunnel carries what the client sends unchecked from here
            // on: open it only for the WebSocket handshake that was asked
            // for and that the upstream answered as one.
            let Some((hs, client)) = handshake.filter(|(hs, _)| hs.accepts(resp.headers())) else {
                return Err(UpstreamError::UnaskedSwitch);
            };
            let (parts, body) = resp.into_parts();
            if let Some((upstream, early)) = body.into_tunnel() {
                tokio::spawn(upgrade::tunnel(client, upstream, early));
            }
            drop(hs);
            return Ok(Response::from_parts(
                parts,
                Either::Left(UpstreamBody::empty()),
            ));
        }
        resp.headers_mut()
            .insert(X_REQUEST_ID, cx.arrival.request_id.clone());
        Ok(resp.map(Either::Left))
    }

    /// Phase: log and count.
    fn finish(
        &self,
        arrival: &Arrival<'_>,
        cx: Option<&RequestCtx<'_>>,
        outcome: &Outcome,
        status: StatusCode,
    ) {
        let elapsed = arrival.started.elapsed();
        let status_u = status.as_u16();
        let (decision, token_id) = match outcome {
            Outcome::Pass => (Decision::Pass, None),
            Outcome::Allow(r) => (Decision::Allow, Some(r.record.id)),
            Outcome::Refuse {
                refusal, token_id, ..
            } => (Decision::Deny(*refusal), *token_id),
            Outcome::Failed { refusal, error } => {
                self.metrics
                    .upstream_errors
                    .with_label_values(&[error.kind()])
                    .inc();
                tracing::warn!(error = %crate::telemetry::Chain(error), request_id = %arrival.request_id.to_str().unwrap_or("-"), "upstream request failed");
                (Decision::Deny(*refusal), None)
            }
        };
        let class = cx.map_or(RouteClass::Unprotected, |cx| cx.route.class);
        self.metrics.hot.record(class, decision, status_u, elapsed);
        if tracing::enabled!(target: "authgate::access", tracing::Level::INFO) {
            let (decision, reason) = match decision {
                Decision::Allow => ("allow", ""),
                Decision::Pass => ("pass", ""),
                Decision::Deny(r) => ("deny", r.label()),
            };
            tracing::info!(
                target: "authgate::access",
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
    }
}

/// Phase: judge. The `Host` asked for, and the route every reading of
/// the raw path gives (the target in its normal form is parsed first). A
/// request that cannot be judged is never forwarded.
fn judge<'r>(
    arrival: Arrival<'r>,
    policy: &'r Policy,
    uri: &'r Uri,
    target: &'r Target<'r>,
    req: &Request<Incoming>,
) -> Result<RequestCtx<'r>, (Arrival<'r>, Refusal)> {
    let host = match host::requested(req.version(), uri, req.headers()) {
        Ok(h) => h,
        Err(_) => return Err((arrival, Refusal::InvalidHost)),
    };
    let route = match policy
        .routes
        .judge(&arrival.method, uri.path(), uri.query(), target.path())
    {
        Ok(r) => r,
        Err(_) => return Err((arrival, Refusal::InvalidPath)),
    };
    Ok(RequestCtx {
        arrival,
        policy,
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
    record: Option<&crate::model::TokenRecord>,
    req: &mut Request<ForwardBody>,
    now: SystemTime,
) -> Result<Verdict, Refusal> {
    let client = cx.arrival.client;
    let verdict = authz::decide(&cx.route, record, None, now, client);
    if verdict != Verdict::NeedGraphQlOperation {
        return Ok(verdict);
    }
    let op = graphql_operation(req, cx.policy.graphql_max_body).await?;
    Ok(authz::decide(&cx.route, record, Some(op), now, client))
}

/// Read the GraphQL operation type from the query string (GET) or from a
/// body of at most `max` bytes, which is then forwarded from the buffer.
async fn graphql_operation(
    req: &mut Request<ForwardBody>,
    max: usize,
) -> Result<GraphQlOperation, Refusal> {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return Ok(crate::graphql::query_string(
            req.uri().query().unwrap_or(""),
        ));
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(Refusal::PayloadTooLarge);
    }
    let body = std::mem::replace(req.body_mut(), Either::Right(Full::new(Bytes::new())));
    match Limited::new(body, max).collect().await {
        Ok(collected) => {
            let bytes = collected.to_bytes();
            let op = crate::graphql::json_body(&bytes);
            *req.body_mut() = Either::Right(Full::new(bytes));
            Ok(op)
        }
        Err(_) => Err(Refusal::PayloadTooLarge),
    }
}
