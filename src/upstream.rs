//! Connections to the CMS: one pinned to each client connection.
//!
//! A client connection of HTTP/1.1 carries one request at a time, so the
//! upstream connection it used last is free again when its next request
//! arrives. Each client connection therefore keeps its own upstream
//! connection ([`Pinned`], hyper's connection-level client) for as long as
//! it is open: a request takes no pool lock, makes no pool checkout and
//! spawns nothing; it is written to the connection that served the one
//! before. When a client connection closes, its upstream connection is
//! parked in a small idle list (at most `upstream.pool_max_idle`, each for
//! at most `upstream.pool_idle_timeout`) that the next new client
//! connection takes from, so short-lived clients do not pay a connect each.
//!
//! HTTP or HTTPS (rustls with the system roots or a configured CA file).
//! Bodies stream both ways. The connect timeout is the connector's; the
//! request timeout bounds the time to the response head, so a stuck
//! upstream yields 504 rather than a hang. A request that could not be
//! written because a reused connection had just been closed by the
//! upstream (the keep-alive race) is sent again on a new connection; one
//! that was written is never sent twice.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service;

use crate::body::ForwardBody;
use crate::config::UpstreamConfig;

/// Upstream failures, as the client sees them.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream unreachable: {0}")]
    Connect(String),
    #[error("upstream did not answer in time")]
    Timeout,
    #[error("upstream protocol error: {0}")]
    Protocol(String),
}

/// The upstream: where, how to connect, and the connections parked
/// between client connections. Cheap to clone.
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

struct Inner {
    connector: HttpsConnector<HttpConnector>,
    /// `scheme://authority/`, what the connector is asked for.
    origin: Uri,
    /// The `Host` sent when neither the client nor `upstream.host` set one.
    host: Option<HeaderValue>,
    http1: http1::Builder,
    request_timeout: Duration,
    parked: Mutex<Vec<Parked>>,
    max_parked: usize,
    park_for: Duration,
}

struct Parked {
    send: SendRequest<ForwardBody>,
    since: Instant,
}

impl Upstream {
    pub fn new(cfg: &UpstreamConfig) -> Result<Self, crate::tls::TlsError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(cfg.connect_timeout));
        http.set_nodelay(true);
        http.set_keepalive(Some(Duration::from_secs(30)));
        let tls = crate::tls::client_config(cfg.ca_file.as_deref())?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let scheme = cfg.url.scheme().cloned().unwrap_or(Scheme::HTTP);
        let authority = cfg
            .url
            .authority()
            .cloned()
            .unwrap_or_else(|| Authority::from_static("127.0.0.1"));
        let host = HeaderValue::from_str(authority.as_str()).ok();
        let origin = Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query("/")
            .build()
            .unwrap_or_else(|_| unreachable!("a scheme and an authority make a URI"));
        Ok(Self {
            inner: Arc::new(Inner {
                connector,
                origin,
                host,
                http1: {
                    let mut b = http1::Builder::new();
                    b.writev(false);
                    b
                },
                request_timeout: cfg.request_timeout,
                parked: Mutex::new(Vec::new()),
                max_parked: cfg.pool_max_idle,
                park_for: cfg.pool_idle_timeout,
            }),
        })
    }

    /// The upstream side of a new client connection: no connection yet (a
    /// parked one, or a new one, is taken at its first request).
    pub fn pin(&self) -> Pinned {
        Pinned {
            upstream: self.clone(),
            send: Mutex::new(None),
            timer: Mutex::new(None),
        }
    }

    /// Open a new connection, its I/O driven by a task of its own.
    async fn connect(&self) -> Result<SendRequest<ForwardBody>, UpstreamError> {
        let mut connector = self.inner.connector.clone();
        let io = connector
            .call(self.inner.origin.clone())
            .await
            .map_err(|e| UpstreamError::Connect(error_chain(&*e)))?;
        let (send, conn) = self
            .inner
            .http1
            .handshake(io)
            .await
            .map_err(|e| UpstreamError::Connect(error_chain(&e)))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(send)
    }

    /// A parked connection, newest first; closed or expired ones are dropped.
    fn unpark(&self) -> Option<SendRequest<ForwardBody>> {
        let mut parked = self.inner.parked.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(p) = parked.pop() {
            if !p.send.is_closed() && p.since.elapsed() < self.inner.park_for {
                return Some(p.send);
            }
        }
        None
    }

    /// Keep an idle connection for the next client connection, when there
    /// is room; expired ones make room first.
    fn park(&self, send: SendRequest<ForwardBody>) {
        if send.is_closed() || !send.is_ready() {
            return;
        }
        let mut parked = self.inner.parked.lock().unwrap_or_else(|p| p.into_inner());
        let park_for = self.inner.park_for;
        parked.retain(|p| !p.send.is_closed() && p.since.elapsed() < park_for);
        if parked.len() < self.inner.max_parked {
            parked.push(Parked {
                send,
                since: Instant::now(),
            });
        }
    }
}

/// The upstream connection of one client connection. Dropped with the
/// client connection, it parks its upstream connection for another.
pub struct Pinned {
    upstream: Upstream,
    /// Taken while a request is in flight, put back once its response head
    /// has arrived (the client connection sends no other request before
    /// that response is over).
    send: Mutex<Option<SendRequest<ForwardBody>>>,
    /// The request timeout's timer, kept between requests.
    timer: Mutex<Option<Pin<Box<tokio::time::Sleep>>>>,
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let send = self
            .send
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(send) = send {
            self.upstream.park(send);
        }
    }
}

impl Pinned {
    /// Send a request (origin-form URI); the response body streams.
    pub async fn send(
        &self,
        mut req: Request<ForwardBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        if !req.headers().contains_key(http::header::HOST) {
            if let Some(host) = &self.upstream.inner.host {
                req.headers_mut().insert(http::header::HOST, host.clone());
            }
        }
        // The connection's own timer, reset for each request rather than a
        // new one made and dropped each time.
        let timeout = self.upstream.inner.request_timeout;
        let mut timer = self
            .timer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_else(|| Box::pin(tokio::time::sleep(timeout)));
        timer.as_mut().reset(tokio::time::Instant::now() + timeout);
        let r = tokio::select! {
            biased;
            r = self.exchange(req) => r,
            _ = timer.as_mut() => Err(UpstreamError::Timeout),
        };
        *self.timer.lock().unwrap_or_else(|p| p.into_inner()) = Some(timer);
        r
    }

    fn take(&self) -> Option<SendRequest<ForwardBody>> {
        self.send.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    fn put(&self, send: SendRequest<ForwardBody>) {
        *self.send.lock().unwrap_or_else(|p| p.into_inner()) = Some(send);
    }

    /// Write the request to this client connection's upstream connection
    /// (or a parked or new one), once more on a new connection if a reused
    /// one turned out closed before the request was written.
    async fn exchange(
        &self,
        mut req: Request<ForwardBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let upstream = &self.upstream;
        let (mut send, mut reused) = match self.take().or_else(|| upstream.unpark()) {
            Some(s) => (s, true),
            None => (upstream.connect().await?, false),
        };
        loop {
            if send.ready().await.is_err() {
                if reused {
                    (send, reused) = (upstream.connect().await?, false);
                    continue;
                }
                return Err(UpstreamError::Connect(
                    "the new connection closed before the request".into(),
                ));
            }
            match send.try_send_request(req).await {
                Ok(resp) => {
                    self.put(send);
                    return Ok(resp);
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => {
                        req = unsent;
                        (send, reused) = (upstream.connect().await?, false);
                    }
                    _ => return Err(UpstreamError::Protocol(error_chain(e.error()))),
                },
            }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}
