//! The exporter: a background task that batches ended requests' spans and
//! POSTs them to the collector as OTLP/HTTP protobuf
//! (`{endpoint}/v1/traces`, `Content-Type: application/x-protobuf`).
//!
//! * The queue between requests and this task is bounded
//!   ([`ExportSettings::queue`], in requests). A request that finds it
//!   full drops its spans and counts them
//!   (`authgate_trace_spans_dropped_total{reason="queue_full"}`); a
//!   request never waits for the collector.
//! * A batch goes out when it holds [`ExportSettings::max_batch`] spans or
//!   its first request has waited [`ExportSettings::interval`]. While one
//!   export is in flight the queue fills; nothing else is spawned.
//! * Each export is bounded by [`ExportSettings::timeout`] (connect, send
//!   and answer). A batch the collector does not take (no connection, a
//!   timeout, a status other than 2xx) is dropped and counted
//!   (`reason="export_failed"`), not retried: the collector is expected to
//!   be near (an agent or a sidecar), and a retry queue would only hold
//!   memory while it is away. The first failure is logged at warn, the
//!   recovery at info; the ones between only counted.
//! * One HTTP/1.1 connection is kept between exports (hyper's client
//!   connection, over TCP or rustls). A request that a kept connection
//!   could not even start (closed by the collector while idle) is sent
//!   again on a new one; one that was written is never sent twice.
//! * [`Exporter::shutdown`] closes the queue, exports what is in it and
//!   stops, within the time it is given.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::Request;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use prometheus::IntCounter;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use super::active::Ended;
use super::otlp::{self, Resource};
use super::TraceError;
use crate::upstream::Io;

/// How the exporter batches and how long it waits.
#[derive(Debug, Clone, Copy)]
pub struct ExportSettings {
    /// Requests (each with all its spans) waiting for the exporter.
    pub queue: usize,
    /// Spans that make a batch go out at once.
    pub max_batch: usize,
    /// Longest a span waits for its batch to fill.
    pub interval: Duration,
    /// Longest one export may take.
    pub timeout: Duration,
}

impl Default for ExportSettings {
    fn default() -> Self {
        Self {
            queue: 2048,
            max_batch: 512,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Where the spans go: the collector's address and the traces path.
#[derive(Clone)]
pub struct Endpoint {
    host: String,
    port: u16,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    authority: HeaderValue,
    path: http::uri::PathAndQuery,
}

impl Endpoint {
    /// The endpoint of a full traces URL (`http[s]://host[:port]/…/v1/traces`,
    /// as `config::TracingConfig` builds it).
    pub fn new(url: &http::Uri) -> Result<Self, TraceError> {
        let https = url.scheme_str() == Some("https");
        let authority = url
            .authority()
            .ok_or_else(|| TraceError::Endpoint(format!("{url}: no host")))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let mut config = crate::tls::client_config(None).map_err(TraceError::Tls)?;
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let name = ServerName::try_from(host.clone())
                .map_err(|e| TraceError::Endpoint(format!("{host}: {e}")))?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Self {
            authority: HeaderValue::from_str(authority.as_str())
                .map_err(|e| TraceError::Endpoint(format!("{authority}: {e}")))?,
            path: url
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/v1/traces")),
            host,
            port,
            tls,
        })
    }
}

/// Why one export failed.
#[derive(Debug, thiserror::Error)]
enum ExportError {
    #[error("cannot connect to the collector")]
    Connect(#[source] std::io::Error),
    #[error("HTTP exchange with the collector failed")]
    Http(#[source] hyper::Error),
    #[error("the collector answered {0}")]
    Status(u16),
    #[error("the collector did not answer within the export timeout")]
    Timeout,
}

/// The counters the exporter keeps.
#[derive(Clone)]
pub(super) struct Counters {
    pub exported: IntCounter,
    pub failed: IntCounter,
}

/// The running exporter task.
pub struct Exporter {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Exporter {
    /// Start the task (inside a Tokio runtime).
    pub(super) fn spawn(
        endpoint: Endpoint,
        resource: Resource,
        queue: mpsc::Receiver<Ended>,
        settings: ExportSettings,
        counters: Counters,
    ) -> Self {
        let (stop, stopped) = oneshot::channel();
        let task = Task {
            client: Client {
                endpoint,
                conn: None,
            },
            resource,
            settings,
            counters,
            failing: false,
        };
        Self {
            stop,
            task: tokio::spawn(task.run(queue, stopped)),
        }
    }

    /// Export what is queued, then stop; give up after `within` (what is
    /// not out by then is lost).
    pub async fn shutdown(self, within: Duration) {
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(within, &mut task).await.is_err() {
            task.abort();
            tracing::warn!(
                ?within,
                "trace export did not finish in time; queued spans are lost"
            );
        }
    }
}

struct Task {
    client: Client,
    resource: Resource,
    settings: ExportSettings,
    counters: Counters,
    /// The last export failed (the next success is logged).
    failing: bool,
}

impl Task {
    async fn run(mut self, mut queue: mpsc::Receiver<Ended>, mut stopped: oneshot::Receiver<()>) {
        let mut pending: Vec<Ended> = Vec::new();
        let mut spans = 0;
        let mut due: Option<Instant> = None;
        loop {
            let timer = async {
                match due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                // A dropped handle stops the task as a shutdown does.
                _ = &mut stopped => break,
                got = queue.recv() => match got {
                    Some(ended) => {
                        spans += ended.spans.len();
                        pending.push(ended);
                        due.get_or_insert_with(|| Instant::now() + self.settings.interval);
                        if spans >= self.settings.max_batch {
                            self.export(std::mem::take(&mut pending)).await;
                            (spans, due) = (0, None);
                        }
                    }
                    None => break,
                },
                () = timer => {
                    self.export(std::mem::take(&mut pending)).await;
                    (spans, due) = (0, None);
                }
            }
        }
        // Shutting down: nothing more comes in; what is queued goes out.
        queue.close();
        while let Ok(ended) = queue.try_recv() {
            pending.push(ended);
        }
        let mut batch = Vec::new();
        let mut n = 0;
        for ended in pending {
            n += ended.spans.len();
            batch.push(ended);
            if n >= self.settings.max_batch {
                self.export(std::mem::take(&mut batch)).await;
                n = 0;
            }
        }
        self.export(batch).await;
    }

    /// Send one batch; count what happened to its spans.
    async fn export(&mut self, batch: Vec<Ended>) {
        let spans: usize = batch.iter().map(|e| e.spans.len()).sum();
        if spans == 0 {
            return;
        }
        let body = Bytes::from(otlp::encode_request(&self.resource, &batch));
        drop(batch);
        let sent = tokio::time::timeout(self.settings.timeout, self.client.post(body))
            .await
            .unwrap_or_else(|_| {
                // A cut-off exchange leaves the connection unusable.
                self.client.conn = None;
                Err(ExportError::Timeout)
            });
        let n = spans as u64;
        match sent {
            Ok(()) => {
                self.counters.exported.inc_by(n);
                if std::mem::replace(&mut self.failing, false) {
                    tracing::info!("trace export works again");
                }
            }
            Err(e) => {
                self.counters.failed.inc_by(n);
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(
                        error = %crate::telemetry::Chain(&e),
                        spans,
                        "trace export failed; spans are dropped until the collector takes them again"
                    );
                }
            }
        }
    }
}

/// HTTP/1.1 to the collector, one connection kept between exports.
struct Client {
    endpoint: Endpoint,
    conn: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, ExportError> {
        let ep = &self.endpoint;
        let tcp = TcpStream::connect((ep.host.as_str(), ep.port))
            .await
            .map_err(ExportError::Connect)?;
        let _ = tcp.set_nodelay(true);
        let io = match &ep.tls {
            None => Io::Plain(tcp),
            Some((connector, name)) => Io::Tls(Box::new(
                connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(ExportError::Connect)?,
            )),
        };
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(ExportError::Http)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(send)
    }

    fn request(&self, body: Bytes) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = http::Uri::from(self.endpoint.path.clone());
        let h = req.headers_mut();
        h.insert(header::HOST, self.endpoint.authority.clone());
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        h.insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("authgate/", env!("CARGO_PKG_VERSION"))),
        );
        req
    }

    /// POST one encoded request; `Ok` when the collector answered 2xx.
    async fn post(&mut self, body: Bytes) -> Result<(), ExportError> {
        let mut req = self.request(body);
        loop {
            let kept = self.conn.take().filter(|c| !c.is_closed());
            let reused = kept.is_some();
            let mut send = match kept {
                Some(c) => c,
                None => self.connect().await?,
            };
            let ready = send.ready().await;
            let sent = match ready {
                Ok(()) => send.try_send_request(req).await,
                Err(e) if reused => {
                    // Closed while idle: a new connection, same request.
                    tracing::debug!(error = %e, "kept collector connection is gone");
                    continue;
                }
                Err(e) => return Err(ExportError::Http(e)),
            };
            match sent {
                Ok(resp) => {
                    let status = resp.status();
                    // Read the answer (bounded) so the connection can be kept.
                    if Limited::new(resp.into_body(), 64 * 1024)
                        .collect()
                        .await
                        .is_ok()
                    {
                        self.conn = Some(send);
                    }
                    return if status.is_success() {
                        Ok(())
                    } else {
                        Err(ExportError::Status(status.as_u16()))
                    };
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(ExportError::Http(e.into_error())),
                },
            }
        }
    }
}
