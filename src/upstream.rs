//! Connections to the CMS: one pinned to each client connection.
//!
//! The HTTP/1.1 spoken on them is the gateway's own ([`wire`] for the
//! bytes, [`conn`] for one exchange), run in the client connection's task:
//! no second task, channel or header map per request on this side.
//!
//! A client connection of HTTP/1.1 carries one request at a time, so the
//! upstream connection it used last is free again when its next request
//! arrives. Each client connection therefore keeps its own upstream
//! connection ([`Pinned`]) for as long as it is open: a request takes no
//! pool lock, makes no pool checkout and spawns nothing; it is written to
//! the connection that served the one before. When a client connection
//! closes, its upstream connection is parked in a small idle list (at most
//! `upstream.pool_max_idle`, each for at most `upstream.pool_idle_timeout`)
//! that the next new client connection takes from, so short-lived clients
//! do not pay a connect each.
//!
//! HTTP or HTTPS (rustls with the system roots or a configured CA file).
//! Bodies stream both ways. The connect timeout covers the TCP connect and
//! the TLS handshake; the request timeout bounds the time to the response
//! head (the request body's upload included), so a stuck upstream yields
//! 504 rather than a hang; the body idle timeout bounds each silence of the
//! upstream once the head is in (the body then fails, which closes the
//! client connection, and `authgate_upstream_errors_total{kind="body_timeout"}`
//! counts it). A request that could not be written because a reused
//! connection had just been closed by the upstream (the keep-alive race) is
//! sent again on a new connection; one that was written is never sent
//! twice. A connection is kept for another request only after a response
//! framed exactly (a length or chunked, kept alive, nothing read past it),
//! and is checked again when it is next taken, from its slot or from the
//! parked list: closed, or holding bytes nobody asked for, it is replaced,
//! so an unasked response never answers another request.

mod conn;
mod wire;

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::uri::Scheme;
use http::Response;
use hyper::body::Body as _;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub use conn::{BodyError, ExchangeFailure, Io, UpstreamBody};
use conn::{BodyIdle, Conn, ExchangeError, Home};
use wire::RequestFraming;

use crate::body::ForwardBody;
use crate::config::UpstreamConfig;
use crate::forward::Head;
use crate::metrics::Metrics;

/// Upstream failures, as the client sees them; each keeps its cause
/// (`telemetry::Chain` writes the chain in the one log line).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream unreachable")]
    Connect(#[source] ConnectError),
    #[error("upstream did not answer in time")]
    Timeout,
    #[error("upstream protocol error")]
    Protocol(#[source] ExchangeFailure),
    #[error("upstream switched protocols without a matching WebSocket handshake")]
    UnaskedSwitch,
}

impl UpstreamError {
    /// A bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Connect(_) => "connect",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Protocol(_) | UpstreamError::UnaskedSwitch => "protocol",
        }
    }
}

/// Why no connection could carry the request.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connecting to {host}:{port}")]
    Tcp {
        host: String,
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS handshake")]
    Tls(#[source] std::io::Error),
    #[error("connect timed out")]
    TimedOut,
    #[error("the new connection closed before the request")]
    ClosedBeforeRequest(#[source] std::io::Error),
}

/// The response parsers, for the fuzz target `fuzz_targets/response.rs`:
/// not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use super::wire::{parse_response_head, BodyFraming, Chunked, ResponseHead, WireError};
}

/// What the upstream answered.
pub enum Answer {
    /// A response; its body streams ([`UpstreamBody`]).
    Response(Response<UpstreamBody>),
    /// `101 Switching Protocols`: the connection is HTTP no more. Its head
    /// (hop-by-hop headers but `Connection` and `Upgrade` removed), the
    /// stream, and what the upstream wrote right after the head. Whether
    /// it becomes a tunnel is the caller's call (`forward::upgrade`); the
    /// connection never goes back to a pool.
    Switched {
        head: Response<()>,
        io: Io,
        early: bytes::Bytes,
    },
}

/// The upstream: where, how to connect, and the connections parked
/// between client connections. Cheap to clone.
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

struct Inner {
    /// Host name or address literal, as connected to.
    host: String,
    port: u16,
    /// TLS, for an `https` upstream: the connector and the name checked.
    tls: Option<(TlsConnector, ServerName<'static>)>,
    connect_timeout: Duration,
    request_timeout: Duration,
    body_idle: BodyIdle,
    parked: Mutex<Vec<Parked>>,
    max_parked: usize,
    park_for: Duration,
}

struct Parked {
    conn: Conn,
    since: Instant,
}

impl Upstream {
    pub fn new(cfg: &UpstreamConfig, metrics: &Metrics) -> Result<Self, crate::tls::TlsError> {
        let https = cfg.url.scheme() == Some(&Scheme::HTTPS);
        let authority = cfg.url.authority();
        let host = authority.map_or("127.0.0.1", |a| a.host());
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = authority
            .and_then(|a| a.port_u16())
            .unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let mut config = crate::tls::client_config(cfg.ca_file.as_deref())?;
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let name = ServerName::try_from(host.clone())
                .map_err(|e| crate::tls::TlsError::ServerName(format!("{host}: {e}")))?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Self {
            inner: Arc::new(Inner {
                host,
                port,
                tls,
                connect_timeout: cfg.connect_timeout,
                request_timeout: cfg.request_timeout,
                body_idle: BodyIdle {
                    after: cfg.body_idle_timeout,
                    expired: metrics.upstream_errors.with_label_values(&["body_timeout"]),
                },
                parked: Mutex::new(Vec::new()),
                max_parked: cfg.pool_max_idle,
                park_for: cfg.pool_idle_timeout,
            }),
        })
    }

    /// Where it is: scheme, host (without brackets) and port.
    pub fn origin(&self) -> (&'static str, &str, u16) {
        let scheme = if self.inner.tls.is_some() {
            "https"
        } else {
            "http"
        };
        (scheme, &self.inner.host, self.inner.port)
    }

    /// The upstream side of a new client connection: no connection yet (a
    /// parked one, or a new one, is taken at its first request).
    pub fn pin(&self) -> Pinned {
        Pinned {
            upstream: self.clone(),
            home: Arc::new(Mutex::new(None)),
            timer: Mutex::new(None),
        }
    }

    /// Open a new connection (TCP, then TLS for `https`), within the
    /// connect timeout.
    async fn connect(&self) -> Result<Conn, UpstreamError> {
        let inner = &self.inner;
        let open = async {
            let tcp = TcpStream::connect((inner.host.as_str(), inner.port))
                .await
                .map_err(|source| ConnectError::Tcp {
                    host: inner.host.clone(),
                    port: inner.port,
                    source,
                })?;
            let _ = tcp.set_nodelay(true);
            let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(30));
            let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
            let io = match &inner.tls {
                None => Io::Plain(tcp),
                Some((connector, name)) => {
                    let tls = connector
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(ConnectError::Tls)?;
                    Io::Tls(Box::new(tls))
                }
            };
            Ok(Conn::new(io))
        };
        tokio::time::timeout(inner.connect_timeout, open)
            .await
            .unwrap_or(Err(ConnectError::TimedOut))
            .map_err(UpstreamError::Connect)
    }

    /// A parked connection, newest first; expired ones are dropped.
    fn unpark(&self) -> Option<Conn> {
        let mut parked = self.inner.parked.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(p) = parked.pop() {
            if p.since.elapsed() < self.inner.park_for {
                return Some(p.conn);
            }
        }
        None
    }

    /// Keep an idle connection for the next client connection, when there
    /// is room; expired ones make room first.
    fn park(&self, conn: Conn) {
        let mut parked = self.inner.parked.lock().unwrap_or_else(|p| p.into_inner());
        let park_for = self.inner.park_for;
        parked.retain(|p| p.since.elapsed() < park_for);
        if parked.len() < self.inner.max_parked {
            parked.push(Parked {
                conn,
                since: Instant::now(),
            });
        }
    }
}

/// The upstream connection of one client connection. Dropped with the
/// client connection, it parks its upstream connection for another.
pub struct Pinned {
    upstream: Upstream,
    /// Empty while a request is in flight or its body still streams; the
    /// connection comes back here when the response is over (the client
    /// connection sends no other request before that).
    home: Home,
    /// The request timeout's timer, kept between requests.
    timer: Mutex<Option<Pin<Box<tokio::time::Sleep>>>>,
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let conn = self.home.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(conn) = conn {
            self.upstream.park(conn);
        }
    }
}

impl Pinned {
    /// Send a request (origin-form URI, as HTTP/1.1); the response body
    /// streams. `head`: the `Host` and the lines the gateway adds (written
    /// after the client's), as `forward` made them.
    pub async fn send(
        &self,
        parts: &http::request::Parts,
        body: ForwardBody,
        head: &Head,
    ) -> Result<Answer, UpstreamError> {
        let framing = RequestFraming::for_body(
            &parts.method,
            parts.headers.contains_key(http::header::CONTENT_LENGTH),
            body.is_end_stream(),
            body.size_hint().exact(),
        );
        let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let mut bytes = Vec::with_capacity(1024);
        wire::write_request_head(
            &mut bytes,
            &parts.method,
            target,
            &head.host,
            &parts.headers,
            head.added.wire(),
            framing,
        );
        let req = conn::Request::new(parts.method.clone(), bytes, body, framing).await;
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

    fn take(&self) -> Option<Conn> {
        self.home.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Write the request to this client connection's upstream connection
    /// (or a parked or new one), once more on a new connection if a reused
    /// one turned out closed before the request was written.
    async fn exchange(&self, mut req: conn::Request) -> Result<Answer, UpstreamError> {
        let upstream = &self.upstream;
        let mut idle = self.take().or_else(|| upstream.unpark());
        loop {
            let (mut conn, fresh) = match idle.take() {
                Some(mut c) => match c.is_fit().await {
                    true => (c, false),
                    false => (upstream.connect().await?, true),
                },
                None => (upstream.connect().await?, true),
            };
            match conn.exchange(req).await {
                Ok((head, _)) if head.status == http::StatusCode::SWITCHING_PROTOCOLS => {
                    let (io, early) = conn.into_parts();
                    let mut resp = Response::new(());
                    *resp.status_mut() = head.status;
                    *resp.version_mut() = head.version;
                    *resp.headers_mut() = head.headers;
                    return Ok(Answer::Switched {
                        head: resp,
                        io,
                        early,
                    });
                }
                Ok((head, whole)) => {
                    let body = conn.into_body(&head, whole, &self.home, &upstream.inner.body_idle);
                    let mut resp = Response::new(body);
                    *resp.status_mut() = head.status;
                    *resp.version_mut() = head.version;
                    *resp.headers_mut() = head.headers;
                    return Ok(Answer::Response(resp));
                }
                Err(ExchangeError::Unsent(unsent, _)) if !fresh => req = unsent,
                Err(ExchangeError::Unsent(_, e)) => {
                    return Err(UpstreamError::Connect(ConnectError::ClosedBeforeRequest(e)))
                }
                Err(ExchangeError::Failed(e)) => return Err(UpstreamError::Protocol(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests;
