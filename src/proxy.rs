//! The request path, in named phases (as Pingora's proxy reads):
//!
//! ```text
//! parse (target) -> normalise + judge (route)
//!   -> precheck (authz, per-IP limit) -> look up (lookup: known, cache, store)
//!   -> decide (authz, per-token limit)
//!   -> forward with identity (upstream) | answer the error envelope
//!   -> log + metrics
//! ```
//!
//! [`Gateway::handle`] reads top to bottom in that order; each phase is a
//! method taking the request's context (`RequestCtx`, on the stack) and
//! calling into the module that owns it. The proxy knows a decision, not
//! SQL: lookups go through [`crate::lookup::Lookup`], and denials become
//! responses in exactly one function, [`error_response`].

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;

use crate::authz::{self, Denial, GraphQlOperation, Precheck, SessionPolicy, Verdict};
use crate::body::ForwardBody;
use crate::cache::{Hit, LookupError, Resolved};
use crate::config::Config;
use crate::forwarding::{Forwarding, Peer};
use crate::head::AddedHeaders;
use crate::identity::{IdentityNames, Signer};
use crate::last_used::UsageRecorder;
use crate::lookup::{Lookup, Recent};
use crate::metrics::{Decision, Metrics};
use crate::model::TokenRecord;
use crate::ratelimit::RateLimiter;
use crate::route::{self, RouteClass, RouteTable};
use crate::upstream::{is_hop_by_hop, Pinned, Upstream, UpstreamBody, UpstreamError};

/// The body of every response the gateway sends: the upstream's, or one it
/// made itself (an error envelope).
pub type ResponseBody = Either<UpstreamBody, Full<Bytes>>;

/// What can change on a config reload without a restart.
#[derive(Debug, Clone)]
pub struct Policy {
    pub routes: Arc<RouteTable>,
    pub sessions: SessionPolicy,
    pub graphql_max_body: usize,
}

impl Policy {
    pub fn from_config(cfg: &Config) -> Self {
        Self {
            routes: cfg.routes.clone(),
            sessions: cfg.sessions,
            graphql_max_body: cfg.graphql_max_body,
        }
    }
}

/// Everything the request path needs, built once by `server::Server::bind`.
pub struct Gateway {
    policy: RwLock<Arc<Policy>>,
    names: IdentityNames,
    signer: Option<Signer>,
    forward_authorization: bool,
    max_uri_bytes: usize,
    forwarding: Forwarding,
    lookup: Lookup,
    upstream: Upstream,
    usage: Arc<UsageRecorder>,
    limiter: RateLimiter,
    metrics: Metrics,
    request_ids: RequestIds,
}

/// Parts of [`Gateway`] that `server::Server::bind` builds and shares.
pub struct GatewayParts {
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

/// What every phase of one request reads, taken once as it arrives. Lives
/// on the handler's stack.
struct RequestCtx<'c> {
    started: Instant,
    conn: &'c Peer,
    /// The client as the trusted proxies say (for the per-IP limits and
    /// pinned tokens).
    client: IpAddr,
    request_id: HeaderValue,
    method: Method,
}

/// The normalised request target: what is judged and what is forwarded.
/// Borrowed from the request when it is normal already (the common case:
/// then the request's own URI is forwarded, nothing is copied).
struct Target<'u> {
    path_and_query: Cow<'u, str>,
    path_len: usize,
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
    Deny {
        denial: Denial,
        token_id: Option<i64>,
        retry_after: Option<u64>,
    },
}

impl Outcome {
    /// Refused before any token is known.
    fn deny(denial: Denial) -> Self {
        Self::deny_token(denial, None)
    }

    /// Refused, with the token when there is one.
    fn deny_token(denial: Denial, token_id: Option<i64>) -> Self {
        Outcome::Deny {
            denial,
            token_id,
            retry_after: None,
        }
    }

    /// Over a rate limit; retry after `secs`.
    fn rate_limited(token_id: Option<i64>, secs: u64) -> Self {
        Outcome::Deny {
            denial: Denial::RateLimited,
            token_id,
            retry_after: Some(secs),
        }
    }
}

/// The identity a request is forwarded with.
struct Identity<'a> {
    token: &'a Hit<Resolved>,
    action: Option<&'a str>,
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Gateway {
    pub fn new(cfg: &Config, parts: GatewayParts) -> Self {
        Self {
            policy: RwLock::new(Arc::new(Policy::from_config(cfg))),
            names: IdentityNames::new(&cfg.identity.header_prefix),
            signer: cfg
                .identity
                .signing_key
                .as_ref()
                .map(|k| Signer::new(k.expose())),
            forward_authorization: cfg.identity.forward_authorization,
            max_uri_bytes: cfg.server.max_uri_bytes,
            forwarding: cfg.server.forwarding.clone(),
            lookup: parts.lookup,
            upstream: parts.upstream,
            usage: parts.usage,
            limiter: parts.limiter,
            metrics: parts.metrics,
            request_ids: RequestIds::new(),
        }
    }

    /// Swap the reloadable policy (route tables, content types, actions).
    pub fn set_policy(&self, p: Policy) {
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(p);
    }

    /// The route table in force now: after a reload or a change of
    /// Strapi's content types, the new one. The management listener reads
    /// the same one (its permission checks and catalogs).
    pub fn routes(&self) -> Arc<RouteTable> {
        self.policy().routes.clone()
    }

    fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The per-connection state of a new client connection.
    pub fn open(&self, addr: SocketAddr, tls: bool) -> ClientConn {
        ClientConn {
            peer: Peer::new(addr, tls),
            upstream: self.upstream.pin(),
            recent: Recent::default(),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn names(&self) -> &IdentityNames {
        &self.names
    }

    /// Handle one request end to end (accepted by `server::Connection`),
    /// phase by phase.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        conn: &ClientConn,
    ) -> Response<ResponseBody> {
        let cx = self.context(&req, &conn.peer);
        // A second handle on the URI (its bytes are shared, not copied) that
        // the target and the route borrow while the request moves on.
        let uri = req.uri().clone();
        let mut req = req.map(Either::Left);
        let policy = self.policy();

        // Parse: the request target, normalised. The normal form is what is
        // judged and what is forwarded.
        let target = match self.parse_target(&uri) {
            Ok(t) => t,
            Err(denial) => return self.refuse_target(&cx, denial),
        };
        // Normalise + judge: the route every reading of the raw path gives.
        let Ok(route) = policy
            .routes
            .judge(&cx.method, uri.path(), uri.query(), target.path())
        else {
            return self.refuse_target(&cx, Denial::InvalidPath);
        };

        // Precheck, look up, decide.
        let outcome = match self.precheck(&cx, &route, req.headers(), &policy).await {
            Err(settled) => settled,
            Ok(key) => match self.look_up(&cx, &conn.recent, key).await {
                Err(unavailable) => unavailable,
                Ok(found) => self.decide(&cx, &route, found, &mut req, &policy).await,
            },
        };

        // Forward with identity, or answer with the error envelope.
        let resp = match &outcome {
            Outcome::Deny {
                denial,
                retry_after,
                ..
            } => error_response(*denial, &cx.request_id, *retry_after),
            Outcome::Pass => self.forward(&cx, conn, req, &target, None).await,
            Outcome::Allow(token) => {
                let action = route.action.name();
                let identity = Identity { token, action };
                self.forward(&cx, conn, req, &target, Some(identity)).await
            }
        };

        // Log + metrics.
        self.finish(&cx, target.path(), route.class, &outcome, resp.status());
        resp
    }

    /// What the phases share: the clock, the connection, the client, the
    /// request id and the method.
    fn context<'c>(&self, req: &Request<Incoming>, conn: &'c Peer) -> RequestCtx<'c> {
        let started = Instant::now();
        RequestCtx {
            started,
            conn,
            request_id: self.request_ids.take(req.headers()),
            client: self.forwarding.client_ip(req.headers(), conn.addr),
            method: req.method().clone(),
        }
    }

    /// Phase: parse the request target (bounded length) into its normal form.
    fn parse_target<'u>(&self, uri: &'u Uri) -> Result<Target<'u>, Denial> {
        let uri_len = uri.path_and_query().map_or(0, |pq| pq.as_str().len());
        if uri_len > self.max_uri_bytes {
            return Err(Denial::UriTooLong);
        }
        let path = route::normalise(uri.path()).map_err(|_| Denial::InvalidPath)?;
        let path_len = path.len();
        let path_and_query = match (path, uri.query()) {
            (Cow::Borrowed(_), _) => {
                Cow::Borrowed(uri.path_and_query().map_or("/", |pq| pq.as_str()))
            }
            (Cow::Owned(p), Some(q)) => Cow::Owned(format!("{p}?{q}")),
            (Cow::Owned(p), None) => Cow::Owned(p),
        };
        Ok(Target {
            path_and_query,
            path_len,
        })
    }

    /// Answer a request whose target cannot be judged (too long, not
    /// normal, read differently by what is behind us): never forwarded.
    fn refuse_target(&self, cx: &RequestCtx<'_>, denial: Denial) -> Response<ResponseBody> {
        let resp = error_response(denial, &cx.request_id, None);
        let outcome = Outcome::deny(denial);
        self.finish(cx, "-", RouteClass::Unprotected, &outcome, resp.status());
        resp
    }

    /// Phase: precheck the credential, then the per-IP limit. `Ok`: the key
    /// to look up; `Err`: settled without a lookup (passed or refused).
    async fn precheck<'h>(
        &self,
        cx: &RequestCtx<'_>,
        route: &route::Route<'_>,
        headers: &'h HeaderMap,
        policy: &Policy,
    ) -> Result<&'h [u8], Outcome> {
        let cred = authz::parse_authorization(
            headers
                .get_all(header::AUTHORIZATION)
                .iter()
                .map(|v| v.as_bytes()),
        );
        match authz::precheck(route, cred, policy.sessions) {
            Precheck::Pass => Err(Outcome::Pass),
            Precheck::Deny(denial) => {
                if denial == Denial::InvalidCredentials {
                    self.limiter.note_failed_auth(cx.client).await;
                }
                Err(Outcome::deny(denial))
            }
            Precheck::Lookup(key) => match self.limiter.ip_blocked(cx.client).await {
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
                tracing::error!(%reason, request_id = cx.request_id.to_str().unwrap_or("-"), "token lookup failed");
            }
            Outcome::deny(Denial::StoreUnavailable)
        })
    }

    /// Phase: decide on a looked-up token (reading a GraphQL operation when
    /// a read-only token needs it), note its use, then its rate limit.
    async fn decide(
        &self,
        cx: &RequestCtx<'_>,
        route: &route::Route<'_>,
        found: Option<Hit<Resolved>>,
        req: &mut Request<ForwardBody>,
        policy: &Policy,
    ) -> Outcome {
        let now = SystemTime::now();
        let record = found.as_deref().map(|r| &r.record);
        let verdict = verdict(route, record, req, policy.graphql_max_body, now, cx.client).await;
        let token_id = record.map(|r| r.id);
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
        match verdict {
            Verdict::Allow => {
                let r = found.unwrap_or_else(|| unreachable!("allow needs a record"));
                self.token_limit(r).await
            }
            Verdict::Deny { denial, .. } => {
                if !authenticated {
                    self.limiter.note_failed_auth(cx.client).await;
                }
                Outcome::deny_token(denial, token_id)
            }
            Verdict::NeedGraphQlOperation => Outcome::deny_token(Denial::Forbidden, token_id),
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
        target: &Target<'_>,
        identity: Option<Identity<'_>>,
    ) -> Response<ResponseBody> {
        let path_and_query = target.path_and_query.as_ref();
        let request_id = &cx.request_id;
        let (mut parts, body) = req.into_parts();
        // A WebSocket upgrade, with the `Sec-WebSocket-Accept` the upstream
        // must answer: without one the 101 is not a WebSocket handshake.
        let upgrade = upgrade_requested(&parts.headers)
            .then(|| websocket_accept(&parts.headers))
            .flatten()
            .and_then(|accept| {
                let on = parts.extensions.remove::<hyper::upgrade::OnUpgrade>()?;
                Some((on, accept))
            });
        let upgrade_value = parts.headers.get(header::UPGRADE).cloned();
        let mut added = prepare_request_headers(
            &mut parts.headers,
            &self.names,
            self.forward_authorization,
            &self.forwarding,
            cx.conn,
            request_id,
        );
        if let (Some(_), Some(v)) = (&upgrade, upgrade_value) {
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(header::UPGRADE, v);
        }
        if let Some(Identity { token, action }) = identity {
            self.names.write(&mut added, &token.record, action);
            if let Some(s) = &self.signer {
                s.sign(
                    &self.names,
                    parts.method.as_str(),
                    path_and_query,
                    unix_secs(SystemTime::now()),
                    &mut added,
                );
            }
        }
        // Origin-form: the request's own URI when it is already that and
        // normal, else one made from the normal form.
        let own = matches!(target.path_and_query, Cow::Borrowed(_)) && parts.uri.scheme().is_none();
        if !own {
            match Uri::try_from(path_and_query) {
                Ok(u) => parts.uri = u,
                Err(_) => return error_response(Denial::InvalidPath, request_id, None),
            }
        }
        self.send(&conn.upstream, &parts, body, &added, upgrade, request_id)
            .await
    }

    async fn send(
        &self,
        upstream: &Pinned,
        parts: &http::request::Parts,
        body: ForwardBody,
        added: &AddedHeaders,
        client_upgrade: Option<(hyper::upgrade::OnUpgrade, HeaderValue)>,
        request_id: &HeaderValue,
    ) -> Response<ResponseBody> {
        let t = Instant::now();
        let result = upstream.send(parts, body, added).await;
        self.metrics
            .upstream_duration
            .observe(t.elapsed().as_secs_f64());
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => {
                let (denial, kind) = match &e {
                    UpstreamError::Timeout => (Denial::GatewayTimeout, "timeout"),
                    UpstreamError::Connect(_) => (Denial::BadGateway, "connect"),
                    UpstreamError::Protocol(_) => (Denial::BadGateway, "protocol"),
                };
                self.metrics
                    .upstream_errors
                    .with_label_values(&[kind])
                    .inc();
                tracing::warn!(error = %e, request_id = %request_id.to_str().unwrap_or("-"), "upstream request failed");
                return error_response(denial, request_id, None);
            }
        };
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            // The tunnel carries what the client sends unchecked from here
            // on: open it only for the WebSocket handshake that was asked
            // for and that the upstream answered as one.
            let answered = resp.headers().get("sec-websocket-accept");
            match client_upgrade {
                Some((client, accept)) if answered == Some(&accept) => {
                    let (parts, body) = resp.into_parts();
                    if let Some((upstream, early)) = body.into_tunnel() {
                        tokio::spawn(tunnel(client, upstream, early));
                    }
                    return Response::from_parts(parts, Either::Left(UpstreamBody::empty()));
                }
                _ => {
                    self.metrics
                        .upstream_errors
                        .with_label_values(&["protocol"])
                        .inc();
                    tracing::warn!(request_id = %request_id.to_str().unwrap_or("-"), "upstream switched protocols without a matching WebSocket handshake");
                    return error_response(Denial::BadGateway, request_id, None);
                }
            }
        }
        // The upstream client left the hop-by-hop headers behind.
        resp.headers_mut().insert(X_REQUEST_ID, request_id.clone());
        resp.map(Either::Left)
    }

    /// Phase: log and count.
    fn finish(
        &self,
        cx: &RequestCtx<'_>,
        path: &str,
        class: RouteClass,
        outcome: &Outcome,
        status: StatusCode,
    ) {
        let elapsed = cx.started.elapsed();
        let status_u = status.as_u16();
        let (decision, token_id) = match outcome {
            Outcome::Pass => (Decision::Pass, None),
            Outcome::Allow(r) => (Decision::Allow, Some(r.record.id)),
            Outcome::Deny {
                denial, token_id, ..
            } => (Decision::Deny(*denial), *token_id),
        };
        self.metrics.hot.record(class, decision, status_u, elapsed);
        if tracing::enabled!(target: "authgate::access", tracing::Level::INFO) {
            let (decision, reason) = match decision {
                Decision::Allow => ("allow", ""),
                Decision::Pass => ("pass", ""),
                Decision::Deny(d) => ("deny", d.label()),
            };
            tracing::info!(
                target: "authgate::access",
                method = %cx.method,
                path = %path,
                route_class = class.as_str(),
                decision,
                reason,
                status = status_u,
                token_id = token_id.unwrap_or(0),
                latency_us = elapsed.as_micros() as u64,
                request_id = cx.request_id.to_str().unwrap_or("-"),
                "request"
            );
        }
    }
}

/// Join an upgraded client connection to the upstream's, once the client's
/// side is handed over: first what the upstream wrote right after its
/// 101, then both ways until either side closes.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    mut upstream: crate::upstream::Io,
    early: Bytes,
) {
    use tokio::io::AsyncWriteExt;
    let client = match client.await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let mut client = hyper_util::rt::TokioIo::new(client);
    if !early.is_empty() && client.write_all(&early).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// `authz::decide`, first reading the GraphQL operation when a read-only
/// token needs it (the body, when read, is forwarded from the buffer).
async fn verdict(
    route: &route::Route<'_>,
    record: Option<&TokenRecord>,
    req: &mut Request<ForwardBody>,
    graphql_max_body: usize,
    now: SystemTime,
    client: IpAddr,
) -> Verdict {
    let verdict = authz::decide(route, record, None, now, client);
    if verdict != Verdict::NeedGraphQlOperation {
        return verdict;
    }
    match graphql_operation(req, graphql_max_body).await {
        Ok(op) => authz::decide(route, record, Some(op), now, client),
        Err(denial) => Verdict::Deny {
            denial,
            authenticated: true,
        },
    }
}

/// Read the GraphQL operation type from the query string (GET) or from a
/// body of at most `max` bytes, which is then forwarded from the buffer.
async fn graphql_operation(
    req: &mut Request<ForwardBody>,
    max: usize,
) -> Result<GraphQlOperation, Denial> {
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
        return Err(Denial::PayloadTooLarge);
    }
    let body = std::mem::replace(req.body_mut(), Either::Right(Full::new(Bytes::new())));
    match Limited::new(body, max).collect().await {
        Ok(collected) => {
            let bytes = collected.to_bytes();
            let op = crate::graphql::json_body(&bytes);
            *req.body_mut() = Either::Right(Full::new(bytes));
            Ok(op)
        }
        Err(_) => Err(Denial::PayloadTooLarge),
    }
}

/// The one place a denial becomes a response: Strapi's error envelope.
pub fn error_response(
    denial: Denial,
    request_id: &HeaderValue,
    retry_after: Option<u64>,
) -> Response<ResponseBody> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from(denial.body()))));
    *resp.status_mut() =
        StatusCode::from_u16(denial.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h.insert(X_REQUEST_ID, request_id.clone());
    if let Some(secs) = retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    resp
}

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Does the client ask for a WebSocket upgrade? Only `websocket` is passed
/// on: an upgrade turns the connection into a tunnel the gateway no longer
/// inspects, and an `h2c` upgrade would let later HTTP/2 requests on it skip
/// authentication (a known smuggling class). Other upgrades are dropped as
/// the hop-by-hop headers they are.
fn upgrade_requested(h: &HeaderMap) -> bool {
    let upgrade = h.get_all(header::UPGRADE).iter().collect::<Vec<_>>();
    upgrade.len() == 1
        && upgrade[0].as_bytes().eq_ignore_ascii_case(b"websocket")
        && h.get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// The `Sec-WebSocket-Accept` an upstream must answer to this request's
/// `Sec-WebSocket-Key` (RFC 6455 §4.2.2); `None` without exactly one key.
fn websocket_accept(h: &HeaderMap) -> Option<HeaderValue> {
    use base64::Engine as _;
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut keys = h.get_all("sec-websocket-key").iter();
    let (Some(key), None) = (keys.next(), keys.next()) else {
        return None;
    };
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID);
    let accept = base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes());
    HeaderValue::from_str(&accept).ok()
}

/// Remove the hop-by-hop headers, every header `Connection` names, and
/// every header `also` picks, in one pass over the names: only headers
/// that are there are removed (a removal hashes the name; most requests
/// carry none of the many names this guards against).
fn strip_headers(h: &mut HeaderMap, also: impl Fn(&HeaderName) -> bool) {
    // `Connection` usually says only `keep-alive` or `close`; any other
    // token names a header to remove.
    let names_others = h
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .any(|t| !t.eq_ignore_ascii_case(b"keep-alive") && !t.eq_ignore_ascii_case(b"close"));
    let listed = |name: &HeaderName| {
        names_others
            && h.get_all(header::CONNECTION)
                .iter()
                .flat_map(|v| v.as_bytes().split(|b| *b == b','))
                .any(|t| {
                    t.trim_ascii()
                        .eq_ignore_ascii_case(name.as_str().as_bytes())
                })
    };
    let doomed: Vec<HeaderName> = h
        .keys()
        .filter(|name| is_hop_by_hop(name.as_str()) || also(name) || listed(name))
        .cloned()
        .collect();
    for name in doomed {
        h.remove(name);
    }
}

/// Make the client's headers fit to forward: hop-by-hop and identity
/// headers out (and, from an untrusted peer, those that would override the
/// route, method or client), forwarding headers and the request id set to
/// what the gateway saw. One pass over the client's headers decides what
/// goes; what the gateway sets itself is returned as lines to add.
pub fn prepare_request_headers(
    h: &mut HeaderMap,
    names: &IdentityNames,
    forward_authorization: bool,
    forwarding: &Forwarding,
    conn: &Peer,
    request_id: &HeaderValue,
) -> AddedHeaders {
    let trusted = forwarding.trusts(conn);
    strip_headers(h, |name| {
        let n = name.as_str();
        names.is_identity(n)
            || name == X_REQUEST_ID
            || (!forward_authorization && name == header::AUTHORIZATION)
            || (!trusted
                && (crate::forwarding::is_overriding(n) || crate::forwarding::is_set_here(n)))
    });
    let mut added = AddedHeaders::new();
    forwarding.set(h, conn, trusted, &mut added);
    added.push_value(&X_REQUEST_ID, request_id);
    added
}

/// Request ids: the client's when it is sane, else a fresh one (the proxy's
/// and the management listener's).
pub struct RequestIds {
    /// 12 hex digits, random per process.
    prefix: [u8; 12],
    next: AtomicU64,
}

impl Default for RequestIds {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestIds {
    pub fn new() -> Self {
        let mut seed = [0u8; 6];
        // A weak prefix only costs uniqueness across restarts, not safety.
        let _ = getrandom::fill(&mut seed);
        let mut prefix = [0u8; 12];
        let _ = hex::encode_to_slice(seed, &mut prefix);
        Self {
            prefix,
            next: AtomicU64::new(1),
        }
    }

    pub fn take(&self, h: &HeaderMap) -> HeaderValue {
        if let Some(v) = h.get(X_REQUEST_ID) {
            let b = v.as_bytes();
            if !b.is_empty()
                && b.len() <= 128
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'))
            {
                return v.clone();
            }
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // `prefix-hex(n)`, written in place: one allocation (the value's own).
        let mut buf = [0u8; 12 + 1 + 16];
        buf[..12].copy_from_slice(&self.prefix);
        buf[12] = b'-';
        let digits = (64 - n.leading_zeros()).div_ceil(4).max(1) as usize;
        for (i, slot) in buf[13..13 + digits].iter_mut().enumerate() {
            let shift = 4 * (digits - 1 - i);
            *slot = b"0123456789abcdef"[((n >> shift) & 0xf) as usize];
        }
        HeaderValue::from_bytes(&buf[..13 + digits]).unwrap_or(HeaderValue::from_static("-"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_listed_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-auth-token-id, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_headers(&mut h, |_| false);
        assert_eq!(
            h.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            vec!["x-keep"]
        );
    }

    #[test]
    fn only_websocket_upgrades_pass() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        assert!(upgrade_requested(&h));
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        assert!(!upgrade_requested(&h));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        assert!(!upgrade_requested(&h));
    }

    #[test]
    fn websocket_accept_is_rfc6455s() {
        let mut h = HeaderMap::new();
        assert_eq!(websocket_accept(&h), None);
        // The example handshake of RFC 6455 §1.3.
        h.insert(
            "sec-websocket-key",
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        assert_eq!(
            websocket_accept(&h).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        h.append("sec-websocket-key", HeaderValue::from_static("x"));
        assert_eq!(websocket_accept(&h), None);
    }

    #[test]
    fn forwarding_headers_are_replaced() {
        let names = IdentityNames::new("x-auth-");
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.insert("forwarded", HeaderValue::from_static("for=6.6.6.6"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert(header::HOST, HeaderValue::from_static("cms.example"));
        h.insert("x-auth-owner-id", HeaderValue::from_static("1"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        h.insert(X_REQUEST_ID, HeaderValue::from_static("client-id"));
        let id = HeaderValue::from_static("rid");
        let added = prepare_request_headers(
            &mut h,
            &names,
            false,
            &Forwarding::default(),
            &Peer::new("10.0.0.9:5555".parse().unwrap(), false),
            &id,
        );
        // The client's are gone from the map; the gateway's are added.
        for name in [
            "x-forwarded-for",
            "x-forwarded-proto",
            "forwarded",
            "x-request-id",
        ] {
            assert!(!h.contains_key(name), "{name}");
        }
        assert_eq!(
            added.wire(),
            &b"x-forwarded-for: 10.0.0.9\r\nforwarded: for=10.0.0.9;proto=http\r\n\
               x-forwarded-proto: http\r\nx-forwarded-host: cms.example\r\nx-request-id: rid\r\n"[..]
        );
        assert_eq!(h[header::HOST], "cms.example");
        assert!(!h.contains_key("x-auth-owner-id"));
        assert!(!h.contains_key(header::AUTHORIZATION));
    }

    #[test]
    fn request_ids() {
        let ids = RequestIds::new();
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(ids.take(&h), "abc-123");
        h.insert(X_REQUEST_ID, HeaderValue::from_static("bad value!"));
        let fresh = ids.take(&h);
        assert_ne!(fresh, "bad value!");
        assert_ne!(ids.take(&HeaderMap::new()), fresh);
        // `prefix-n` in hex, n counting from 1.
        let ids = RequestIds::new();
        let prefix = String::from_utf8(ids.prefix.to_vec()).unwrap();
        for n in [1u64, 2, 15, 16, 255, 4096] {
            ids.next.store(n, Ordering::Relaxed);
            assert_eq!(
                ids.take(&HeaderMap::new()),
                format!("{prefix}-{n:x}").as_str()
            );
        }
        ids.next.store(u64::MAX, Ordering::Relaxed);
        assert_eq!(
            ids.take(&HeaderMap::new()),
            format!("{prefix}-ffffffffffffffff").as_str()
        );
    }

    #[test]
    fn error_envelope_response() {
        let r = error_response(Denial::RateLimited, &HeaderValue::from_static("r"), Some(3));
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()[header::RETRY_AFTER], "3");
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/json; charset=utf-8"
        );
    }
}
