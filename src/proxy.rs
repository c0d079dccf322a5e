//! The proxy door: authgate as the hop in front of the CMS.
//!
//! ```text
//! judge (gate::Gate::decide) -> forward with identity (forward, upstream)
//!                             | answer the refusal (answer)
//!   -> log + metrics (gate::Gate::finish)
//! ```
//!
//! [`Gateway::handle`] reads top to bottom in that order. The judgement is
//! the gate's, the same for every door; what is the proxy's own is the
//! forwarding: the head [`crate::forward::Forwarder`] makes, the client
//! connection's pinned upstream connection ([`crate::upstream`]), and a
//! WebSocket handshake turned into a tunnel. Refusals become responses in
//! one function, [`crate::answer::response`]. A recorded request's
//! exchange with the CMS is a CLIENT span of its trace, and the CMS's
//! `traceparent` names it as the parent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::accept::Admission;
use crate::answer::{self, Refusal};
use crate::body::ForwardBody;
use crate::forward::upgrade::Handshake;
use crate::forward::{Outgoing, Peer};
use crate::gate::{Body, Door, Gate, Judged, Outcome, Presented, RequestCtx};
use crate::lookup::Recent;
use crate::request_id::X_REQUEST_ID;
use crate::trace::{attr, Kind, Propagate, RequestTrace, Span};
use crate::tunnel;
use crate::upstream::{Answer, Pinned, Upstream, UpstreamBody, UpstreamError};

/// The body of every response the gateway sends: the upstream's, or one it
/// made itself (an error envelope).
pub type ResponseBody = Either<UpstreamBody, Full<Bytes>>;

/// The proxy: the gate, the upstream it forwards to, and what its
/// WebSocket tunnels are held to.
pub struct Gateway {
    gate: Arc<Gate>,
    upstream: Upstream,
    tunnels: tunnel::Limits,
}

/// What the gateway keeps per client connection: who is on the other end,
/// its place under the connection cap, and the upstream connection pinned
/// to it (see [`crate::upstream`]).
pub struct ClientConn {
    pub peer: Peer,
    /// Shared with a tunnel the connection becomes (see [`crate::tunnel`]).
    admission: Arc<Admission>,
    upstream: Pinned,
    /// The key it sent last, as the look-up phase remembers it.
    recent: Recent,
}

impl Gateway {
    pub fn new(gate: Arc<Gate>, upstream: Upstream, tunnels: tunnel::Limits) -> Self {
        Self {
            gate,
            upstream,
            tunnels,
        }
    }

    /// The per-connection state of a new client connection.
    pub fn open(&self, addr: SocketAddr, tls: bool, admission: Arc<Admission>) -> ClientConn {
        ClientConn {
            peer: Peer::new(addr, tls),
            admission,
            upstream: self.upstream.pin(),
            recent: Recent::default(),
        }
    }

    /// Handle one request end to end (accepted by `server::Connection`).
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        conn: &ClientConn,
    ) -> Response<ResponseBody> {
        let (parts, body) = req.into_parts();
        let mut body: ForwardBody = Either::Left(body);
        let gate = &self.gate;
        let held = gate.hold(
            Door::Proxy,
            parts.method.clone(),
            parts.uri.clone(),
            parts.version,
        );
        let client = gate
            .forwarder()
            .proxies()
            .client_ip(&parts.headers, conn.peer.addr);
        let presented = Presented {
            headers: &parts.headers,
            client,
            body: Body::Stream(&mut body),
        };
        let mut judged = gate
            .decide(&held, &conn.peer, presented, &conn.recent)
            .await;
        let mut trace = judged.take_trace();

        // Forward with identity, or answer with the refusal.
        let mut failed = None;
        let rid = judged.request_id();
        let resp = match &judged {
            Judged::Judged {
                ctx,
                outcome: outcome @ (Outcome::Pass | Outcome::Allow(_) | Outcome::Reported { .. }),
                ..
            } => {
                let req = Request::from_parts(parts, body);
                match self.forward(ctx, conn, req, outcome, &mut trace).await {
                    Ok(resp) => resp,
                    Err(error) => {
                        let (f, refusal) = Outcome::failed(error);
                        failed = Some(f);
                        refused(refusal, None, rid)
                    }
                }
            }
            Judged::Judged {
                outcome:
                    Outcome::Refuse {
                        refusal,
                        retry_after,
                        ..
                    },
                ..
            } => refused(*refusal, *retry_after, rid),
            Judged::Judged {
                outcome: Outcome::Failed { refusal, .. },
                ..
            }
            | Judged::Unjudged { refusal, .. } => refused(*refusal, None, rid),
        };

        // Log + metrics.
        gate.finish(&judged, failed.as_ref(), resp.status(), trace);
        resp
    }

    /// Forward to the upstream, with identity when allowed. A recorded
    /// request's exchange is a CLIENT span under `trace`, named in the
    /// CMS's `traceparent`.
    async fn forward(
        &self,
        cx: &RequestCtx<'_>,
        conn: &ClientConn,
        req: Request<ForwardBody>,
        outcome: &Outcome,
        trace: &mut RequestTrace,
    ) -> Result<Response<ResponseBody>, UpstreamError> {
        let allowed = outcome.allowed(cx);
        let (mut parts, body) = req.into_parts();
        // A WebSocket handshake, when the client's side can be handed over.
        let handshake = Handshake::requested(&parts.headers).and_then(|hs| {
            let on = parts.extensions.remove::<hyper::upgrade::OnUpgrade>()?;
            Some((hs, on))
        });
        let mut exchange = trace.child(crate::trace::span_name(&parts.method), Kind::Client);
        let traceparent = trace.traceparent_for_upstream(&exchange);
        let out = Outgoing {
            peer: cx.arrival.peer,
            requested_host: cx.host.as_ref(),
            request_id: &cx.arrival.request_id,
            path_and_query: cx.target.path_and_query.as_ref(),
            allowed,
            upgrade: handshake.is_some(),
            trace: traceparent.as_ref().map(|traceparent| Propagate {
                traceparent,
                tracestate: trace.tracestate(),
            }),
        };
        let head = self
            .gate
            .forwarder()
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
        if exchange.is_recording() {
            self.describe(&mut exchange, &parts.method, cx.target.path());
        }
        let t = Instant::now();
        let result = conn.upstream.send(&parts, body, &head).await;
        self.gate
            .metrics()
            .upstream_duration
            .observe(t.elapsed().as_secs_f64());
        // The span ends with the response head; the body streams after.
        if exchange.is_recording() {
            match &result {
                Ok(Answer::Response(resp)) => exchange.set_http_status(resp.status().as_u16()),
                Ok(Answer::Switched { head, .. }) => {
                    exchange.set_http_status(head.status().as_u16())
                }
                Err(e) => exchange.set_error(e.kind(), e.to_string()),
            }
            trace.end_child(exchange);
        }
        let (head, io, early) = match result? {
            Answer::Response(mut resp) => {
                resp.headers_mut()
                    .insert(X_REQUEST_ID, cx.arrival.request_id.clone());
                return Ok(resp.map(Either::Left));
            }
            Answer::Switched { head, io, early } => (head, io, early),
        };
        // The tunnel carries what the client sends unchecked from here on:
        // open it only for the WebSocket handshake that was asked for and
        // that the upstream answered as one.
        let Some((_, client)) = handshake.filter(|(hs, _)| hs.accepts(head.headers())) else {
            return Err(UpstreamError::UnaskedSwitch);
        };
        let valid = match outcome {
            Outcome::Allow(token) => self.gate.tunnel_validity(token),
            _ => None,
        };
        tokio::spawn(tunnel::run(
            client,
            io,
            early,
            conn.admission.clone(),
            self.tunnels.clone(),
            valid,
        ));
        Ok(head.map(|()| Either::Left(UpstreamBody::empty())))
    }
}

impl Gateway {
    /// The exchange's attributes: the CMS's address, and `url.full`
    /// without the query string (which may carry what must not leave in a
    /// trace).
    fn describe(&self, span: &mut Span, method: &http::Method, path: &str) {
        let (scheme, host, port) = self.upstream.origin();
        span.set_attr(attr::HTTP_REQUEST_METHOD, crate::trace::method_attr(method));
        span.set_attr(attr::SERVER_ADDRESS, host.to_owned());
        span.set_attr(attr::SERVER_PORT, port);
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        span.set_attr(attr::URL_FULL, format!("{scheme}://{host}:{port}{path}"));
        span.set_attr(attr::NETWORK_PROTOCOL_VERSION, "1.1");
    }
}

/// A refusal's response, in the proxy's body type.
fn refused(
    refusal: Refusal,
    retry_after: Option<u64>,
    request_id: &HeaderValue,
) -> Response<ResponseBody> {
    answer::response(refusal, request_id, retry_after).map(Either::Right)
}
