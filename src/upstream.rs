//! The pooled client to the CMS.
//!
//! One hyper-util client with a keep-alive pool, HTTP or HTTPS (rustls with
//! the system roots or a configured CA file). Bodies stream both ways. The
//! connect timeout is the connector's; the request timeout bounds the time
//! to the response head, so a stuck upstream yields 504 rather than a hang.

use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

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

/// The upstream: where, and the pooled client that goes there.
#[derive(Clone)]
pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, ForwardBody>,
    scheme: Scheme,
    authority: Authority,
    request_timeout: Duration,
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
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .pool_max_idle_per_host(cfg.pool_max_idle)
            .set_host(false)
            .build(connector);
        Ok(Self {
            client,
            scheme: cfg.url.scheme().cloned().unwrap_or(Scheme::HTTP),
            authority: cfg
                .url
                .authority()
                .cloned()
                .unwrap_or_else(|| Authority::from_static("127.0.0.1")),
            request_timeout: cfg.request_timeout,
        })
    }

    /// The upstream URI for a (normalised) path and query.
    pub fn uri(&self, path_and_query: &str) -> Result<Uri, http::Error> {
        let pq = PathAndQuery::try_from(path_and_query)?;
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
    }

    /// Send a request; the response body streams.
    pub async fn send(
        &self,
        mut req: Request<ForwardBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        if !req.headers().contains_key(http::header::HOST) {
            if let Ok(v) = http::HeaderValue::from_str(self.authority.as_str()) {
                req.headers_mut().insert(http::header::HOST, v);
            }
        }
        match tokio::time::timeout(self.request_timeout, self.client.request(req)).await {
            Err(_) => Err(UpstreamError::Timeout),
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) if e.is_connect() => Err(UpstreamError::Connect(error_chain(&e))),
            Ok(Err(e)) => Err(UpstreamError::Protocol(error_chain(&e))),
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
