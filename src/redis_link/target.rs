//! Where the link's connections go, in each `[redis]` mode, and the one
//! connection type its operations run on.
//!
//! * `url`: one server. A reconnect resolves the name again, so a managed
//!   primary endpoint that moves on failover is followed.
//! * `cluster`: every connection starts from the seed nodes and reads the
//!   slot map then; the client library routes each command by its key's
//!   slot and follows `MOVED`/`READONLY` itself.
//! * `sentinels`: every connection asks the sentinels for the master (and
//!   checks with `ROLE` that it is one), so a reconnect after a failover
//!   reaches the promoted replica.
//!
//! TLS is rustls with ring: `ca_file` is the only trust anchor when set,
//! the system roots otherwise, and no setting skips the check (the
//! library's `#insecure` is refused by the config, and its
//! `tls-rustls-insecure` feature is not built).

use std::path::PathBuf;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, IntoConnectionInfo, RedisError, RedisResult,
    TlsCertificates, TlsMode,
};

use crate::config::{RedisConfig, RedisMode, SentinelConfig};

/// Why a `[redis]` section cannot be turned into a link.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot read redis.ca_file {}: {source}", path.display())]
    CaFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("redis.ca_file {}: no PEM certificate in it", path.display())]
    NoCertificate { path: PathBuf },
    #[error("redis.{key}: {source}")]
    Client {
        key: &'static str,
        #[source]
        source: RedisError,
    },
}

/// How to reach Redis.
pub(super) enum Target {
    Node(Client),
    Cluster(Seeds),
    /// `SentinelClient` asks with `&mut self`: one lookup at a time.
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

/// A cluster's seed nodes and the CA to check them (and the nodes they
/// name) against.
pub(super) struct Seeds {
    nodes: Vec<String>,
    certs: Option<TlsCertificates>,
}

impl Seeds {
    /// A cluster client builder for these seeds.
    pub(super) fn builder(&self) -> ClusterClientBuilder {
        let builder = ClusterClientBuilder::new(self.nodes.iter().map(String::as_str));
        match &self.certs {
            Some(c) => builder.certs(c.clone()),
            None => builder,
        }
    }
}

/// A connection the operations run on: one node's, or the cluster's (which
/// routes each command to the node owning its key).
#[derive(Clone)]
pub(super) enum Conn {
    Node(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Node(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Node(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Node(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

fn client_err(key: &'static str) -> impl Fn(RedisError) -> LinkError {
    move |source| LinkError::Client { key, source }
}

impl Target {
    pub(super) fn new(cfg: &RedisConfig) -> Result<Target, LinkError> {
        // The library builds its rustls configs with the process default
        // provider; make it ring, whatever else may be linked in one day.
        // (Already installed: the same one, or one chosen on purpose.)
        let _ = rustls::crypto::ring::default_provider().install_default();
        let certs = match &cfg.ca_file {
            Some(path) => Some(TlsCertificates {
                client_tls: None,
                root_cert: Some(ca_bundle(path)?),
            }),
            None => None,
        };
        Ok(match &cfg.mode {
            RedisMode::Url(url) => Target::Node(
                match certs {
                    Some(c) if url.expose().starts_with("rediss://") => {
                        Client::build_with_tls(url.expose(), c)
                    }
                    _ => Client::open(url.expose()),
                }
                .map_err(client_err("url"))?,
            ),
            RedisMode::Cluster(nodes) => {
                let seeds = Seeds {
                    nodes: nodes.iter().map(|n| n.expose().to_owned()).collect(),
                    certs,
                };
                // The library's own checks (one password, one scheme), now.
                seeds.builder().build().map_err(client_err("cluster"))?;
                Target::Cluster(seeds)
            }
            RedisMode::Sentinel(s) => {
                Target::Sentinel(tokio::sync::Mutex::new(sentinel_client(s, certs)?))
            }
        })
    }

    /// The mode, for logs.
    pub(super) fn mode(&self) -> &'static str {
        match self {
            Target::Node(_) => "url",
            Target::Cluster(_) => "cluster",
            Target::Sentinel(_) => "sentinel",
        }
    }

    /// A client for one server: the configured one, or the master the
    /// sentinels name now. Not used in cluster mode.
    pub(super) async fn node_client(&self) -> RedisResult<Client> {
        match self {
            Target::Node(c) => Ok(c.clone()),
            Target::Sentinel(s) => s.lock().await.async_get_client().await,
            Target::Cluster(_) => Err(RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "a cluster has no single node",
            ))),
        }
    }

    /// A fresh connection for the operations.
    pub(super) async fn connect(&self, timeout: Duration) -> RedisResult<Conn> {
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        match self {
            Target::Cluster(seeds) => {
                let client = seeds
                    .builder()
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    // Enough for a MOVED or READONLY and its retry; the
                    // caller's own bound ends anything longer.
                    .retries(3)
                    .build()?;
                Ok(Conn::Cluster(client.get_async_connection().await?))
            }
            _ => Ok(Conn::Node(
                self.node_client()
                    .await?
                    .get_multiplexed_async_connection_with_config(&cfg)
                    .await?,
            )),
        }
    }

    /// The publish command: sharded in a cluster (see the module doc of
    /// `redis_link`), classic otherwise.
    pub(super) fn publish_command(&self) -> &'static str {
        match self {
            Target::Cluster(_) => "SPUBLISH",
            _ => "PUBLISH",
        }
    }
}

/// `ca_file`'s PEM, refused now (not at every connect) when it holds no
/// certificate: the only trust anchor cannot be empty.
fn ca_bundle(path: &std::path::Path) -> Result<Vec<u8>, LinkError> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|source| LinkError::CaFile {
        path: path.to_path_buf(),
        source,
    })?;
    let mut certs = rustls::pki_types::CertificateDer::pem_slice_iter(&pem);
    match certs.next() {
        Some(Ok(_)) if certs.all(|c| c.is_ok()) => Ok(pem),
        _ => Err(LinkError::NoCertificate {
            path: path.to_path_buf(),
        }),
    }
}

/// The sentinels, and how to reach the master they name.
fn sentinel_client(
    s: &SentinelConfig,
    certs: Option<TlsCertificates>,
) -> Result<SentinelClient, LinkError> {
    let master = s
        .master_url
        .expose()
        .into_connection_info()
        .map_err(client_err("sentinel_master"))?;
    let sentinels = s.sentinels.iter().map(|(host, port)| {
        if s.tls {
            ConnectionAddr::TcpTls {
                host: host.clone(),
                port: *port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host.clone(), *port)
        }
    });
    let mut b = SentinelClientBuilder::new(sentinels, &s.master, SentinelServerType::Master)
        .map_err(client_err("sentinels"))?;
    let node = master.redis_settings();
    if let Some(user) = node.username() {
        b = b.set_client_to_redis_username(user);
    }
    if let Some(password) = node.password() {
        b = b.set_client_to_redis_password(password);
    }
    if node.db() != 0 {
        b = b.set_client_to_redis_db(node.db());
    }
    if matches!(master.addr(), ConnectionAddr::TcpTls { .. }) {
        b = b.set_client_to_redis_tls_mode(TlsMode::Secure);
        if let Some(c) = &certs {
            b = b.set_client_to_redis_certificates(c.clone());
        }
    }
    if let Some(p) = &s.password {
        b = b.set_client_to_sentinel_password(p.expose());
    }
    if s.tls {
        b = b.set_client_to_sentinel_tls_mode(TlsMode::Secure);
        if let Some(c) = certs {
            b = b.set_client_to_sentinel_certificates(c);
        }
    }
    b.build().map_err(client_err("sentinels"))
}
