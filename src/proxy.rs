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
//! one function, [`crate::answer::response`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::answer::{self, Refusal};
use crate::body::ForwardBody;
use crate::forward::upgrade::{self, Handshake};
use crate::forward::{Allowed, Outgoing, Peer};
use crate::gate::{Body, Door, Gate, Judged, Outcome, Presented, RequestCtx};
use crate::lookup::Recent;
use crate::request_id::X_REQUEST_ID;
use crate::upstream::{Pinned, Upstream, UpstreamBody, UpstreamError};

/// The body of every response the gateway sends: the upstream's, or one it
/// made itself (an error envelope).
pub type ResponseBody = Either<UpstreamBody, Full<Bytes>>;

/// The proxy: the gate, and the upstream it forwards to.
pub struct Gateway {
    gate: Arc<Gate>,
    upstream: Upstream,
}

/// What the gateway keeps per client connection: who is on the other end,
/// and the upstream connection pinned to it (see [`crate::upstream`]).
pub struct ClientConn {
    pub peer: Peer,
    upstream: Pinned,
    /// The key it sent last, as the look-up phase remembers it.
    recent: Recent,
}

impl Gateway {
    pub fn new(gate: Arc<Gate>, upstream: Upstream) -> Self {
        Self { gate, upstream }
    }

    /// The per-connection state of a new client connection.
    pub fn open(&self, addr: SocketAddr, tls: bool) -> ClientConn {
        ClientConn {
            peer: Peer::new(addr, tls),
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
        let judged = gate
            .decide(&held, &conn.peer, presented, &conn.recent)
            .await;

        // Forward with identity, or answer with the refusal.
        let mut failed = None;
        let rid = judged.request_id();
        let resp = match &judged {
            Judged::Judged {
                ctx,
                outcome: outcome @ (Outcome::Pass | Outcome::Allow(_) | Outcome::Reported { .. }),
            } => {
                let req = Request::from_parts(parts, body);
                match self.forward(ctx, conn, req, outcome.allowed(ctx)).await {
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
        gate.finish(&judged, failed.as_ref(), resp.status());
        resp
    }

    /// Forward to the upstream, with identity when allowed.
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
        let out = Outgoing {
            peer: cx.arrival.peer,
            requested_host: cx.host.as_ref(),
            request_id: &cx.arrival.request_id,
            path_and_query: cx.target.path_and_query.as_ref(),
            allowed,
            upgrade: handshake.is_some(),
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
        let t = Instant::now();
        let result = conn.upstream.send(&parts, body, &head).await;
        self.gate
            .metrics()
            .upstream_duration
            .observe(t.elapsed().as_secs_f64());
        let mut resp = result?;
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            // The tunnel carries what the client sends unchecked from here
            // on: open it only for the WebSocket handshake that was asked
            // for and that the upstream answered as one.
            let Some((_, client)) = handshake.filter(|(hs, _)| hs.accepts(resp.headers())) else {
                return Err(UpstreamError::UnaskedSwitch);
            };
            let (parts, body) = resp.into_parts();
            if let Some((upstream, early)) = body.into_tunnel() {
                tokio::spawn(upgrade::tunnel(client, upstream, early));
            }
            return Ok(Response::from_parts(
                parts,
                Either::Left(UpstreamBody::empty()),
            ));
        }
        resp.headers_mut()
            .insert(X_REQUEST_ID, cx.arrival.request_id.clone());
        Ok(resp.map(Either::Left))
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
