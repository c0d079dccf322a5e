//! The decision listener: authgate as the external authorizer of a front
//! proxy the cluster already runs.
//!
//! ```text
//! accept (trusted_callers? else 403) ─► HTTP/1.1 or HTTP/2 (one port, sniffed)
//!   /forward-auth       ─► reading::forward_auth ─┐
//!   /ext-authz/<target> ─► reading::ext_authz    ─┼─► gate::Gate::decide ─► answer::{allow, deny}
//!   gRPC Check          ─► grpc_wire ─► decision::grpc::check (the gate too) ─► GrpcReply
//!                                                   └─► gate::Gate::finish (log + metrics, by door)
//! ```
//!
//! A door only reads which request it is asked about ([`reading`]) and
//! writes the answer its caller understands ([`answer`], [`grpc_wire`]);
//! the judgement is the gate's, the proxy's own, function for function
//! (route under every reading of the raw target, `Authorization`
//! precheck, lookup, `authz::decide`, pinned networks, rate limits,
//! `last_used_at`).
//!
//! **Who may ask.** The caller is the front proxy, and it speaks for the
//! client: its forwarded method, target and host are judged, and the
//! client address is the rightmost `X-Forwarded-For` entry that is not one
//! of `server.trusted_proxies` (the caller's own address when the chain
//! names none). That is only sound when the caller is one of ours, so only
//! peers in `decision.trusted_callers` (default: loopback) are answered;
//! anyone else gets 403 and is counted
//! (`authgate_decision_callers_refused_total`). The entries of
//! `X-Forwarded-For` are not matched against `trusted_callers`: a client
//! that is itself inside those blocks could otherwise hide behind a forged
//! entry to its left. An untrusted gRPC `Check` is denied in a
//! `CheckResponse` (status 7, 403), not failed, so that Envoy's
//! `failure_mode_allow` cannot turn it into an allow.
//!
//! **What the client may not send.** An HTTP decision door cannot remove
//! headers from the request the front proxy forwards. A client's own
//! identity header (`x-auth-*`, any spelling) that reaches a door is
//! therefore refused (400, `forged_identity`) rather than allowed next to
//! it, and so is a method or route override the proxy door would remove
//! (`X-HTTP-Method-Override`, `X-HTTP-Method`, `X-Method-Override`,
//! `X-Rewrite-URL`: 400, `overriding_header`); the documented configs
//! remove identity headers before asking, and overwrite every name
//! authgate sets with its answer. The gRPC door can (Envoy applies
//! `ok_response.headers_to_remove`): it judges as the proxy does and names
//! those headers there instead ([`Asked::removes`], [`grpc`]).
//!
//! **Bodies.** A forward-auth call carries none ([`crate::gate::Body::Absent`]):
//! a read-only token on a GraphQL `POST` is then refused, since its
//! operation cannot be read. Envoy's `with_request_body` sends it to
//! `/ext-authz` and in the gRPC `CheckRequest`, where the gate reads it
//! when it needs it (a body Envoy cut short, `x-envoy-auth-partial-body:
//! true`, counts as none).

pub mod answer;
pub mod grpc;
pub mod grpc_wire;
pub mod reading;

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::answer::Refusal;
use crate::cidr::Cidr;
use crate::config::Config;
use crate::forward::{IdentityNames, Peer};
use crate::gate::{Body, Door, Gate, Judged, Presented};
use crate::lookup::Recent;
use crate::serve_error::ServeError;
use crate::tls::ReloadableAcceptor;
use grpc_wire::{Code, GrpcBody, GrpcReply};
use reading::{Reading, ReadingError};

/// The body of every decision answer: the HTTP doors' or a gRPC reply.
pub type DecisionBody = Either<Full<Bytes>, GrpcBody>;

/// The path of the forward-auth door.
pub const FORWARD_AUTH: &str = "/forward-auth";

/// Envoy sets it when `with_request_body` cut the body short.
const PARTIAL_BODY: &str = "x-envoy-auth-partial-body";

/// The largest gRPC `CheckRequest` read: the GraphQL bound (a
/// `with_request_body` body) plus room for the request's other fields.
fn max_grpc_request(graphql_max_body: usize) -> usize {
    graphql_max_body.saturating_add(64 * 1024)
}

/// One connection's caller: the front proxy on the other end.
pub struct Caller {
    pub peer: Peer,
    /// The key its requests sent last (a fingerprint, see `lookup`).
    pub recent: Recent,
    /// Is it one of `decision.trusted_callers`?
    trusted: bool,
}

/// What every decision connection shares.
struct Doors {
    gate: Arc<Gate>,
    callers: Vec<Cidr>,
    graphql_max_body: usize,
}

/// A bound, not yet serving decision listener.
pub struct Decision {
    listener: TcpListener,
    tls: Option<ReloadableAcceptor>,
    doors: Arc<Doors>,
    http: Arc<auto::Builder<TokioExecutor>>,
    header_timeout: Duration,
    max_connections: usize,
}

impl Decision {
    /// Bind the listener when `[decision] listen` is set.
    pub async fn bind(cfg: &Config, gate: Arc<Gate>) -> Result<Option<Self>, ServeError> {
        let d = &cfg.decision;
        let Some(addr) = d.listen else {
            return Ok(None);
        };
        let tls = d
            .tls
            .clone()
            .map(|f| ReloadableAcceptor::with_alpn(f, crate::tls::H2_AND_HTTP1))
            .transpose()?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        for door in [Door::ForwardAuth, Door::ExtAuthzHttp, Door::ExtAuthzGrpc] {
            gate.metrics().hot.open(door);
        }
        Ok(Some(Self {
            listener,
            tls,
            doors: Arc::new(Doors {
                gate,
                callers: d.trusted_callers.clone(),
                graphql_max_body: cfg.graphql_max_body,
            }),
            http: Arc::new(http_builder(cfg)),
            header_timeout: cfg.server.request_header_timeout,
            max_connections: cfg.server.max_connections,
        }))
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// The inbound TLS acceptor, for reloads.
    pub fn tls(&self) -> Option<ReloadableAcceptor> {
        self.tls.clone()
    }

    /// Serve until `stop` resolves; then let open calls finish (briefly).
    pub async fn serve(self, stop: impl Future<Output = ()>) {
        let limit = Arc::new(Semaphore::new(self.max_connections));
        let graceful = GracefulShutdown::new();
        tokio::pin!(stop);
        loop {
            let permit = tokio::select! {
                p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = &mut stop => break,
            };
            let (stream, peer) = tokio::select! {
                a = crate::accept::next(&self.listener, "decision") => a,
                _ = &mut stop => break,
            };
            let conn = Conn {
                doors: self.doors.clone(),
                http: self.http.clone(),
                tls: self.tls.as_ref().map(ReloadableAcceptor::acceptor),
                header_timeout: self.header_timeout,
                watcher: graceful.watcher(),
            };
            tokio::spawn(async move {
                conn.serve(stream, peer).await;
                drop(permit);
            });
        }
        drop(self.listener);
        let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
    }
}

/// HTTP/1.1 and HTTP/2 (prior knowledge) on one port, told apart by the
/// HTTP/2 preface; the proxy listener's limits on a request head.
fn http_builder(cfg: &Config) -> auto::Builder<TokioExecutor> {
    let s = &cfg.server;
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(s.request_header_timeout)
        .keep_alive(true)
        .max_buf_size(s.max_header_bytes.max(8192) + 8192);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(s.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    b
}

/// One caller connection.
struct Conn {
    doors: Arc<Doors>,
    http: Arc<auto::Builder<TokioExecutor>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    header_timeout: Duration,
    watcher: hyper_util::server::graceful::Watcher,
}

impl Conn {
    async fn serve(self, stream: TcpStream, addr: SocketAddr) {
        let _ = stream.set_nodelay(true);
        match self.tls.clone() {
            Some(acceptor) => {
                match tokio::time::timeout(self.header_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => self.serve_io(TokioIo::new(s), addr, true).await,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, peer = %addr, "decision: TLS handshake failed")
                    }
                    Err(_) => tracing::debug!(peer = %addr, "decision: TLS handshake timed out"),
                }
            }
            None => self.serve_io(TokioIo::new(stream), addr, false).await,
        }
    }

    async fn serve_io<I>(self, io: I, addr: SocketAddr, tls: bool)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let trusted = self.doors.callers.iter().any(|c| c.contains(addr.ip()));
        let caller = Arc::new(Caller {
            peer: Peer::new(addr, tls),
            recent: Recent::default(),
            trusted,
        });
        let doors = self.doors.clone();
        let svc = service_fn(move |req: Request<Incoming>| {
            let (doors, caller) = (doors.clone(), caller.clone());
            async move { Ok::<_, Infallible>(doors.handle(req, &caller).await) }
        });
        let conn = self.http.serve_connection(io, svc);
        if let Err(e) = self.watcher.watch(conn).await {
            tracing::debug!(error = %e, peer = %addr, "decision: connection error");
        }
    }
}

impl Doors {
    /// One call: the caller, then the door its path names.
    async fn handle(&self, req: Request<Incoming>, caller: &Caller) -> Response<DecisionBody> {
        let grpc = grpc_wire::is_grpc(req.headers());
        if !caller.trusted {
            self.gate.metrics().decision_callers_refused.inc();
            tracing::debug!(peer = %caller.peer.addr, "decision: caller not in decision.trusted_callers");
            let path = req.uri().path();
            return match grpc {
                // A Check is denied in a CheckResponse (status 7, HTTP 403
                // and the HTTP doors' envelope), not failed: Envoy's
                // `failure_mode_allow` would let a failed call through.
                true if path == grpc_wire::CHECK_PATH => grpc::answer(refused_caller(), &[])
                    .response()
                    .map(Either::Right),
                true => GrpcReply::status(
                    Code::PermissionDenied,
                    "caller not in decision.trusted_callers",
                )
                .response()
                .map(Either::Right),
                false => refused_caller().map(Either::Left),
            };
        }
        let path = req.uri().path();
        if path == grpc_wire::CHECK_PATH && grpc {
            return self.grpc(req, caller).await.response().map(Either::Right);
        }
        let resp = if path == FORWARD_AUTH {
            self.forward_auth(req, caller).await
        } else if path.starts_with(reading::EXT_AUTHZ_PREFIX) {
            self.ext_authz(req, caller).await
        } else {
            return plain(StatusCode::NOT_FOUND, "NotFoundError", "Not Found").map(Either::Left);
        };
        resp.map(Either::Left)
    }

    /// `/forward-auth`: the request the forwarding headers name; no body.
    async fn forward_auth(&self, req: Request<Incoming>, caller: &Caller) -> Response<Full<Bytes>> {
        let (parts, _body) = req.into_parts();
        let own = own_authority(&parts);
        let reading = reading::forward_auth(&parts.headers, own.as_ref().map(|v| v.as_bytes()))
            .map_err(|e| unread(&parts, e));
        let client = self.client(&parts.headers, caller);
        let asked = Asked {
            door: Door::ForwardAuth,
            reading,
            headers: &parts.headers,
            client,
            body: Body::Absent,
            removes: false,
        };
        judge(&self.gate, asked, caller).await
    }

    /// `/ext-authz/<target>`: the call's own method and `Host`; its body
    /// when Envoy sends one (`with_request_body`), read only if needed.
    async fn ext_authz(&self, req: Request<Incoming>, caller: &Caller) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let own = own_authority(&parts);
        let reading = reading::ext_authz(
            &parts.method,
            &parts.uri,
            own.as_ref().map(|v| v.as_bytes()),
        )
        .map_err(|e| unread(&parts, e));
        let partial = parts
            .headers
            .get(PARTIAL_BODY)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
        let mut body: crate::body::ForwardBody = Either::Left(body);
        let body = match partial {
            true => Body::Absent,
            false => Body::Stream(&mut body),
        };
        let client = self.client(&parts.headers, caller);
        let asked = Asked {
            door: Door::ExtAuthzHttp,
            reading,
            headers: &parts.headers,
            client,
            body,
            removes: false,
        };
        judge(&self.gate, asked, caller).await
    }

    /// The client: the rightmost `X-Forwarded-For` entry that is not one
    /// of `server.trusted_proxies`, else the caller (see the module docs).
    fn client(&self, h: &HeaderMap, caller: &Caller) -> IpAddr {
        self.gate
            .forwarder()
            .proxies()
            .client_in_chain(h, caller.peer.addr.ip())
    }

    /// gRPC `Check`: one `CheckRequest` in, one `GrpcReply` out.
    async fn grpc(&self, req: Request<Incoming>, caller: &Caller) -> GrpcReply {
        let max = max_grpc_request(self.graphql_max_body);
        let body = match Limited::new(req.into_body(), max).collect().await {
            Ok(c) => c.to_bytes(),
            Err(_) => return GrpcReply::status(Code::ResourceExhausted, "CheckRequest too large"),
        };
        let request = match grpc_wire::message(body) {
            Ok(m) => m,
            Err(grpc_wire::FrameError::Compressed) => {
                return GrpcReply::status(
                    Code::Unimplemented,
                    "compressed messages are not accepted",
                )
            }
            Err(grpc_wire::FrameError::Framing) => {
                return GrpcReply::status(Code::InvalidArgument, "not one gRPC message")
            }
        };
        grpc::check(&self.gate, caller, request).await
    }
}

/// What a door asks the gate about.
pub struct Asked<'a> {
    pub door: Door,
    /// The request named, or (when none could be told) the call itself
    /// and the refusal to answer it with.
    pub reading: Result<Reading, (Reading, Refusal)>,
    /// The headers presented (`Authorization`, `x-request-id`, the body's
    /// length; any `x-auth-*` among them is the client's and refused).
    pub headers: &'a HeaderMap,
    /// The client address, as the door resolved it.
    pub client: IpAddr,
    pub body: Body<'a>,
    /// Does the door's caller remove the request headers the door names
    /// (gRPC's `headers_to_remove`)? Then the client's identity and
    /// overriding headers are removed by it ([`removed_at_doors`]) rather
    /// than refused here.
    pub removes: bool,
}

/// Judge what a door was asked (the gate's one judgement), answer as the
/// HTTP doors do, then log and count. The answer's status, headers and
/// body are what any door's reply carries (a gRPC `CheckResponse` is made
/// from them): `200` with the identity headers, or the refusal.
pub async fn judge(gate: &Gate, asked: Asked<'_>, caller: &Caller) -> Response<Full<Bytes>> {
    let (reading, unread) = match asked.reading {
        Ok(r) => (r, None),
        Err((call, refusal)) => (call, Some(refusal)),
    };
    let target = reading.uri.path_and_query().cloned();
    let held = gate.hold(asked.door, reading.method, reading.uri, Version::HTTP_11);
    let presented = Presented {
        headers: asked.headers,
        client: asked.client,
        body: asked.body,
    };
    let unremovable = || match asked.removes {
        true => None,
        false => unremovable(gate, asked.headers),
    };
    let mut judged = match unread.or_else(unremovable) {
        Some(refusal) => gate.refuse_unjudged(&held, &caller.peer, &presented, refusal),
        None => {
            gate.decide(&held, &caller.peer, presented, &caller.recent)
                .await
        }
    };
    // The door adds no spans of its own: the gate's SERVER span is the call.
    let trace = judged.take_trace();
    let rid = judged.request_id();
    let resp = match (&judged, judged.refusal()) {
        (_, Some((refusal, retry_after))) => answer::deny(refusal, retry_after, rid),
        (Judged::Judged { ctx, outcome, .. }, None) => answer::allow(
            gate.forwarder(),
            &ctx.arrival.method,
            target.as_ref().map_or("/", |t| t.as_str()),
            outcome.allowed(ctx),
            rid,
        ),
        // An unjudged request always carries its refusal.
        (Judged::Unjudged { .. }, None) => answer::deny(Refusal::InvalidPath, None, rid),
    };
    gate.finish(&judged, None, resp.status(), trace);
    resp
}

/// A call that names no single request: held as itself (for the log line)
/// with the refusal its reading error gets.
fn unread(parts: &Parts, e: ReadingError) -> (Reading, Refusal) {
    tracing::debug!(error = %e, "decision: no single request to judge");
    let call = Reading {
        method: parts.method.clone(),
        uri: parts.uri.clone(),
    };
    (call, e.refusal())
}

/// Headers the proxy door removes and a decision door cannot (the front
/// proxy forwards what the client sent): the client's identity headers
/// (`x-auth-*`, any spelling: nothing else sets one on the way here), and
/// the headers frameworks behind read as the method or the route. The
/// client-address and `X-Forwarded-*`/`X-Original-*` headers are the front
/// proxy's to send here, and are not among them.
fn unremovable(gate: &Gate, h: &HeaderMap) -> Option<Refusal> {
    let names = gate.forwarder().names();
    h.keys().find_map(|k| removed_at_door(names, k.as_str()))
}

/// The refusal a door that cannot remove header `k` answers with, if the
/// proxy would remove it (see [`unremovable`]).
fn removed_at_door(names: &IdentityNames, k: &str) -> Option<Refusal> {
    if names.is_identity(k) {
        Some(Refusal::ForgedIdentity)
    } else if OVERRIDING_AT_DOORS.contains(&k) {
        Some(Refusal::OverridingHeader)
    } else {
        None
    }
}

/// The names among `h` that a door whose caller removes headers (gRPC's
/// `headers_to_remove`) has removed instead of refusing them: the same
/// rule as [`unremovable`].
pub fn removed_at_doors<'a>(
    names: &'a IdentityNames,
    h: &'a HeaderMap,
) -> impl Iterator<Item = &'a str> + 'a {
    h.keys()
        .map(|k| k.as_str())
        .filter(move |k| removed_at_door(names, k).is_some())
}

/// The method and route overrides a client may add (see
/// `forward::peer::OVERRIDING_HEADERS`, which the proxy removes).
const OVERRIDING_AT_DOORS: [&str; 4] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-rewrite-url",
];

/// The call's own authority: HTTP/2's `:authority`, else its one `Host`.
fn own_authority(parts: &Parts) -> Option<HeaderValue> {
    if let Some(a) = parts.uri.authority() {
        return HeaderValue::from_str(a.as_str()).ok();
    }
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(h), None) => Some(h.clone()),
        _ => None,
    }
}

/// The answer to a caller outside `decision.trusted_callers`.
fn refused_caller() -> Response<Full<Bytes>> {
    plain(
        StatusCode::FORBIDDEN,
        "ForbiddenError",
        "Caller not allowed",
    )
}

/// An answer of the listener's own (not a judgement): a Strapi envelope.
fn plain(status: StatusCode, name: &str, message: &str) -> Response<Full<Bytes>> {
    let body = crate::envelope::render(status.as_u16(), name, message);
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}
