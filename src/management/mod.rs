//! The management listener: what a legacy CMS behind authgate lacks, its
//! "API Tokens" and "Admin Tokens" settings, as a REST API shaped like
//! Strapi's admin API and as a server-rendered web page.
//!
//! It listens on a port of its own (`[management] listen`, default
//! `127.0.0.1:9091`), never on the proxy port: the management surface is
//! not something to expose next to the CMS.
//!
//! ```text
//! accept -> /admin/... ? api::handle : ui::handle
//!   api: route (api::ROUTES) -> authenticate the bearer (auth, authz::decide)
//!        -> control::Manager (the rules) -> {"data": ...} | the error envelope
//!   ui:  session cookie -> authenticate the session's token (auth)
//!        -> CSRF check on POST -> control::Manager -> HTML
//! ```
//!
//! | module | owns |
//! | --- | --- |
//! | [`auth`] | an admin token's key -> the acting user, with the gateway's own checks |
//! | [`api`] | the REST route table (introspectable for `openapi.yaml`), JSON shapes, the error envelope |
//! | [`ui`] | the pages and their forms |
//! | [`html`] | escaping and the page layout |
//! | [`session`] | server-side sessions, cookies, CSRF tokens |
//! | [`form`] | `application/x-www-form-urlencoded` bodies |
//!
//! Every rule about who may do what to which token lives in
//! [`crate::control`], shared with the CLI; this module only translates
//! HTTP to those calls and their results back to HTTP.
//!
//! At start, `[management] bootstrap_token_file` (a mounted Secret) is read
//! and, in the background until the database answers, turned into the first
//! super-admin token ([`crate::control::Manager::bootstrap`]), once per
//! key: a key whose token was since deleted or regenerated is consumed and
//! provisions nothing (one log line says so).
//!
//! Every request gets authgate's own request id (answered as
//! `x-request-id`, recorded as the audit event's `request_id`); the
//! client's `X-Request-Id`, when it is a plain id, is only kept apart
//! ([`RequestInfo::client_request_id`]).

pub mod api;
pub mod auth;
pub mod form;
pub mod html;
pub mod session;
pub mod ui;

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use crate::audit::{Origin, Via};
use crate::config::Config;
use crate::control::{Bootstrapped, ControlError, Manager};
use crate::last_used::UsageRecorder;
use crate::metrics::{status_class, Metrics};
use crate::policy::PolicyHandle;
use crate::request_id::{RequestIds, X_REQUEST_ID};
use crate::serve_error::ServeError;
use crate::store::Store;
use crate::tls::ReloadableAcceptor;

/// Largest request body read (JSON or form).
pub const MAX_BODY: usize = 64 * 1024;
/// Concurrent connections to the management listener.
const MAX_CONNECTIONS: usize = 256;

/// The response body of every management response.
pub type Body = Full<Bytes>;

/// What every handler shares.
pub struct State {
    pub cfg: Config,
    /// The policy in force (routes and content types after reloads);
    /// `cfg` is the config the process started with.
    pub policy: PolicyHandle,
    pub store: Store,
    pub usage: Arc<UsageRecorder>,
    pub sessions: session::Sessions,
    pub metrics: Metrics,
    pub request_ids: RequestIds,
}

impl State {
    /// The management service, recording what it does as coming from `origin`.
    pub fn manager(&self, origin: Origin) -> Manager<'_> {
        Manager::new(&self.store, &self.cfg)
            .with_routes(self.policy.routes())
            .with_origin(origin)
    }
}

/// Who sent a management request, for the audit trail: set by [`handle`]
/// as a request extension.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// authgate's own id of this request, always made here.
    pub request_id: String,
    /// The client's `X-Request-Id` when it is a plain id
    /// ([`crate::request_id::is_sane`]: 1 to 128 of letters, digits and
    /// `-_.:`), recorded apart; anything else is dropped.
    pub client_request_id: Option<String>,
    pub client_ip: IpAddr,
}

/// The [`Origin`] of a request that came in through `via`.
pub fn origin(ext: &http::Extensions, via: Via) -> Origin {
    let info = ext.get::<RequestInfo>();
    Origin {
        via,
        request_id: info.map(|i| i.request_id.clone()),
        client_request_id: info.and_then(|i| i.client_request_id.clone()),
        client_ip: info.map(|i| i.client_ip),
    }
}

/// The client address of a request (see [`RequestInfo`]). [`handle`]
/// sets it on every request; were it missing, `::` stands in, which only
/// `::/0` admits, so a pinned token is refused rather than let through.
pub fn client_ip(ext: &http::Extensions) -> IpAddr {
    ext.get::<RequestInfo>()
        .map_or(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), |i| i.client_ip)
}

/// A bound, not yet serving management listener.
pub struct Management {
    listener: TcpListener,
    tls: Option<ReloadableAcceptor>,
    state: Arc<State>,
    header_timeout: Duration,
    bootstrap_key: Option<Zeroizing<String>>,
}

impl Management {
    /// Bind the listener (when `[management] listen` is set) and read the
    /// bootstrap key file. A missing or malformed key file fails the start.
    pub async fn bind(
        cfg: &Config,
        store: Store,
        policy: PolicyHandle,
        usage: Arc<UsageRecorder>,
        tls: Option<ReloadableAcceptor>,
        metrics: Metrics,
    ) -> Result<Option<Self>, ServeError> {
        let Some(addr) = cfg.management.listen else {
            return Ok(None);
        };
        let bootstrap_key = match &cfg.management.bootstrap_token_file {
            Some(path) => Some(read_bootstrap_key(path)?),
            None => None,
        };
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        Ok(Some(Self {
            listener,
            tls,
            header_timeout: cfg.server.request_header_timeout,
            state: Arc::new(State {
                sessions: session::Sessions::new(cfg.management.session_ttl),
                cfg: cfg.clone(),
                policy,
                store,
                usage,
                metrics,
                request_ids: RequestIds::new(),
            }),
            bootstrap_key,
        }))
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serve until `stop` resolves; provision the bootstrap token meanwhile.
    pub async fn serve(self, stop: impl Future<Output = ()>) {
        let Management {
            listener,
            tls,
            state,
            header_timeout,
            bootstrap_key,
        } = self;
        let bootstrap = bootstrap_key.map(|key| tokio::spawn(bootstrap(state.clone(), key)));
        let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        tokio::pin!(stop);
        loop {
            let permit = tokio::select! {
                p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = &mut stop => break,
            };
            let (stream, peer) = tokio::select! {
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "management: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut stop => break,
            };
            let (state, acceptor) = (
                state.clone(),
                tls.as_ref().map(ReloadableAcceptor::acceptor),
            );
            tokio::spawn(async move {
                serve_connection(state, stream, peer, acceptor, header_timeout).await;
                drop(permit);
            });
        }
        if let Some(b) = bootstrap {
            b.abort();
        }
    }
}

async fn serve_connection(
    state: Arc<State>,
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    header_timeout: Duration,
) {
    let _ = stream.set_nodelay(true);
    match tls {
        Some(acceptor) => match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await
        {
            Ok(Ok(s)) => serve_io(state, TokioIo::new(s), peer, true, header_timeout).await,
            Ok(Err(e)) => tracing::debug!(error = %e, %peer, "management: TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "management: TLS handshake timed out"),
        },
        None => serve_io(state, TokioIo::new(stream), peer, false, header_timeout).await,
    }
}

async fn serve_io<I>(
    state: Arc<State>,
    io: I,
    peer: SocketAddr,
    tls: bool,
    header_timeout: Duration,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = service_fn(move |req: Request<Incoming>| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(&state, req, tls, peer).await) }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(64 * 1024)
        .serve_connection(io, svc)
        .await
    {
        tracing::debug!(error = %e, %peer, "management: connection error");
    }
}

/// Is this path the REST API's (`/admin/...`, any ASCII case)?
fn is_api_path(path: &str) -> bool {
    path.trim_start_matches('/')
        .split('/')
        .next()
        .is_some_and(|s| s.eq_ignore_ascii_case("admin"))
}

/// One request: the REST API under `/admin`, the web page everywhere else.
pub async fn handle(
    state: &State,
    mut req: Request<Incoming>,
    tls: bool,
    peer: SocketAddr,
) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let mgmt = &state.cfg.management;
    match crate::forward::host::requested(req.version(), req.uri(), req.headers()) {
        Ok(Some(host)) if mgmt.admits_host(host.to_str().unwrap_or("")) => {}
        _ => {
            tracing::warn!(target: "authgate::management", %peer, "request for a Host this listener does not answer to (management.allowed_hosts)");
            let mut r = Response::new(Full::new(Bytes::from_static(
                b"misdirected request: this listener does not answer to that Host (management.allowed_hosts)\n",
            )));
            *r.status_mut() = http::StatusCode::MISDIRECTED_REQUEST;
            return r;
        }
    }
    // The page is HTTPS when this listener serves TLS, or when a trusted
    // TLS-terminating proxy in front says so: its cookies are then
    // `__Host-` prefixed and `Secure`.
    let tls = tls
        || (mgmt.proxies.is_trusted(peer.ip())
            && req
                .headers()
                .get("x-forwarded-proto")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https")));
    // The audit trail records authgate's own id: a client chooses what it
    // sends, so its id is kept only apart, labelled as the client's.
    let rid = state.request_ids.fresh();
    let info = RequestInfo {
        request_id: rid.to_str().unwrap_or("-").to_owned(),
        client_request_id: req
            .headers()
            .get(X_REQUEST_ID)
            .filter(|v| crate::request_id::is_sane(v.as_bytes()))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        client_ip: state.cfg.management.proxies.client_ip(req.headers(), peer),
    };
    req.extensions_mut().insert(info);
    let (surface, mut resp) = if is_api_path(&path) {
        ("api", api::handle(state, req).await)
    } else {
        ("ui", ui::handle(state, req, tls).await)
    };
    resp.headers_mut().insert(X_REQUEST_ID, rid);
    let status = resp.status().as_u16();
    state
        .metrics
        .management_requests
        .with_label_values(&[surface, status_class(status)])
        .inc();
    tracing::info!(
        target: "authgate::management",
        method = %method,
        path = %path,
        surface,
        status,
        "management request"
    );
    resp
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body larger than {MAX_BODY} bytes")]
    TooLarge,
    #[error("request body could not be read")]
    Read,
}

/// Read a request body of at most [`MAX_BODY`] bytes.
pub async fn read_body(body: Incoming) -> Result<Bytes, BodyError> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Read),
    }
}

/// Read and check the bootstrap key file (never logging its content).
fn read_bootstrap_key(path: &std::path::Path) -> Result<Zeroizing<String>, ServeError> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
        ServeError::Management(format!(
            "cannot read bootstrap_token_file {}: {e}",
            path.display()
        ))
    })?);
    let key = Zeroizing::new(text.trim().to_owned());
    if !crate::token::looks_like_key(key.as_bytes()) {
        return Err(ServeError::Management(format!(
            "bootstrap_token_file {} must hold one key of 256 lower-case hex characters (e.g. `openssl rand -hex 128`)",
            path.display()
        )));
    }
    Ok(key)
}

/// Provision the bootstrap token, retrying until the database answers (and
/// has been migrated), so a start before Postgres is no failure.
async fn bootstrap(state: Arc<State>, key: Zeroizing<String>) {
    let mut wait = Duration::from_millis(250);
    loop {
        match state.manager(Origin::bootstrap()).bootstrap(&key).await {
            Ok(Bootstrapped::Present(id)) => {
                tracing::info!(token_id = id, "management: bootstrap token present");
                return;
            }
            Ok(Bootstrapped::Created(id)) => {
                tracing::info!(
                    token_id = id,
                    owner = crate::control::BOOTSTRAP_EMAIL,
                    "management: bootstrap token created"
                );
                return;
            }
            Ok(Bootstrapped::Rotated(id)) => {
                tracing::info!(
                    token_id = id,
                    "management: bootstrap token has the new key from bootstrap_token_file; the old key no longer works"
                );
                return;
            }
            Ok(Bootstrapped::Consumed) => {
                tracing::warn!(
                    "management: bootstrap_token_file is consumed: its key provisioned the bootstrap token once, and that token was since deleted or regenerated, so the key grants nothing; put a new key in the file to provision a new one"
                );
                return;
            }
            Err(ControlError::Invalid(m)) => {
                // Not something a retry fixes (e.g. the key is a content-API token's).
                tracing::error!(error = %m, "management: bootstrap token not provisioned");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?wait, "management: cannot provision the bootstrap token yet");
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths() {
        assert!(is_api_path("/admin/api-tokens"));
        assert!(is_api_path("/ADMIN/users"));
        assert!(is_api_path("/admin"));
        assert!(!is_api_path("/admin-tokens"));
        assert!(!is_api_path("/"));
        assert!(!is_api_path("/api-tokens/1"));
    }
}
