//! Composition: the one place the layers meet.
//!
//! [`Server::bind`] builds every part from the config (store pool, cache,
//! known-hash set, the look-up over them, upstream client, gateway,
//! metrics) and binds the listeners; [`Server::run`] accepts connections
//! (through [`crate::accept`]) and runs the background tasks (the
//! invalidation listener, the strapi5 layout's change poller, the
//! `last_used_at` flusher, reload watchers) until the shutdown future
//! resolves. Then it drains: `/readyz` turns 503 at
//! once, the proxy keeps accepting for `server.shutdown_delay` (so load
//! balancers stop sending here first), stops accepting, lets in-flight
//! requests finish within `server.shutdown_grace`, flushes `last_used_at`
//! and the trace exporter's queue, and returns.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::accept::{self, Admission};
use crate::cache::{Resolved, TokenCache};
use crate::config::Config;
use crate::forward::Forwarder;
use crate::gate::{Gate, GateParts};
use crate::invalidation::{self, ListenerStatus};
use crate::known::KnownHashes;
use crate::last_used::UsageRecorder;
use crate::lookup::Lookup;
use crate::metrics::Metrics;
use crate::policy::PolicyStore;
use crate::proxy::Gateway;
use crate::ratelimit::RateLimiter;
use crate::redis_link::RedisLink;
use crate::serve_error::ServeError;
use crate::store::Store;
use crate::tls::ReloadableAcceptor;
use crate::token::Hasher;
use crate::trace::{Exporter, Tracer};
use crate::upstream::Upstream;

/// Longest the last trace export may take at shutdown.
const TRACE_FLUSH: Duration = Duration::from_secs(5);

/// A bound, not yet running gateway.
pub struct Server {
    cfg: Config,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    tls: Option<ReloadableAcceptor>,
    gateway: Arc<Gateway>,
    cache: Arc<TokenCache<Resolved>>,
    store: Store,
    usage: Arc<UsageRecorder>,
    metrics: Metrics,
    listener_status: ListenerStatus,
    redis: Option<Arc<RedisLink>>,
    known: Arc<KnownHashes>,
    management: Option<crate::management::Management>,
    decision: Option<crate::decision::Decision>,
    policy: Arc<PolicyStore>,
    /// The trace exporter, when `[tracing]` names a collector: flushed
    /// last, after the drain.
    exporter: Option<Exporter>,
    /// Sent `true` when the drain stops serving (connections and tunnels).
    drain: watch::Sender<bool>,
}

/// Shared state of the metrics/probe listener.
struct Probes {
    metrics: Metrics,
    policy: crate::policy::PolicyHandle,
    store: Store,
    cache: Arc<TokenCache<Resolved>>,
    listener: ListenerStatus,
    known: Arc<KnownHashes>,
    draining: AtomicBool,
    /// Redis relays invalidations from replicas that can LISTEN, so a
    /// listener that cannot hear NOTIFYs does not make this one unready.
    relayed: bool,
}

/// The tasks [`Server::run`] starts beside the listeners.
struct Background {
    /// Aborted once the drain is over.
    tasks: Vec<JoinHandle<()>>,
    /// The `last_used_at` flusher: awaited instead, so its last batch is
    /// written.
    flusher: JoinHandle<()>,
}

/// A future that resolves once `true` is sent on the stop channel.
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

impl Server {
    /// Build everything and bind the listeners. Does not need the database
    /// to be up: connections are opened on demand.
    pub async fn bind(cfg: Config) -> Result<Self, ServeError> {
        let metrics = Metrics::new();
        let store = Store::new(&cfg.postgres)?;
        // A `listen_url` that does not parse fails here, not in the listener.
        crate::store::listen_config(&cfg.postgres)?;
        let cache = Arc::new(TokenCache::new(&cfg.cache, metrics.clone()));
        let known = Arc::new(KnownHashes::default());
        let usage = Arc::new(UsageRecorder::new(cfg.tokens.last_used_interval));
        let upstream = Upstream::new(&cfg.upstream, &metrics)?;
        let (redis, limiter) = redis_and_limiter(&cfg, &metrics)?;
        let tls = cfg
            .server
            .tls
            .clone()
            .map(ReloadableAcceptor::new)
            .transpose()?;
        let lookup = Lookup::new(
            Hasher::new(cfg.tokens.salt.expose()),
            known.clone(),
            cache.clone(),
            store.clone(),
            metrics.clone(),
        );
        let policy = Arc::new(PolicyStore::new(&cfg));
        let (tracer, exporter) = Tracer::new(&cfg.tracing, &metrics)?;
        if let Some(url) = &cfg.tracing.endpoint {
            tracing::info!(endpoint = %url, sample_ratio = cfg.tracing.sample_ratio, service_name = %cfg.tracing.service_name, "exporting traces (OTLP/HTTP)");
        }
        let parts = GateParts {
            policy: policy.handle(),
            forwarder: Forwarder::from_config(&cfg)?,
            lookup,
            usage: usage.clone(),
            limiter,
            metrics: metrics.clone(),
            tracer,
        };
        let gate = Arc::new(Gate::new(&cfg, parts));
        // Turns true when the drain stops serving: connections close, and
        // so do WebSocket tunnels.
        let (drain, drain_rx) = watch::channel(false);
        let tunnels = crate::tunnel::Limits {
            idle: cfg.server.tunnel_idle_timeout,
            stop: drain_rx,
            metrics: metrics.clone(),
        };
        let gateway = Arc::new(Gateway::new(gate.clone(), upstream, tunnels));
        let decision = crate::decision::Decision::bind(&cfg, gate.clone()).await?;
        if crate::store::capabilities(&cfg.postgres).stores_content_types {
            initial_content_types(&cfg, &policy).await;
        }
        // In the background: a database that is down must not hold up the
        // listeners.
        tokio::spawn(warn_of_pending_migrations(cfg.postgres.clone()));
        let listener = listen(cfg.server.listen).await?;
        let metrics_listener = match cfg.metrics_listen {
            Some(a) => Some(listen(a).await?),
            None => None,
        };
        let management = crate::management::Management::bind(
            &cfg,
            store.clone(),
            policy.handle(),
            usage.clone(),
            tls.clone(),
            metrics.clone(),
        )
        .await?;
        Ok(Self {
            cfg,
            listener,
            metrics_listener,
            tls,
            gateway,
            cache,
            store,
            usage,
            metrics,
            listener_status: ListenerStatus::default(),
            redis,
            known,
            management,
            decision,
            policy,
            exporter,
            drain,
        })
    }

    /// The live policy's writing side (config reloads, Strapi's content
    /// types).
    pub fn policy(&self) -> Arc<PolicyStore> {
        self.policy.clone()
    }

    /// The metrics every part counts into.
    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    /// The proxy's bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.cfg.server.listen)
    }

    /// The metrics listener's bound address.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The management listener's bound address, when it is on.
    pub fn management_addr(&self) -> Option<SocketAddr> {
        self.management.as_ref().and_then(|m| m.local_addr())
    }

    /// The decision listener's bound address, when it is on.
    pub fn decision_addr(&self) -> Option<SocketAddr> {
        self.decision.as_ref().and_then(|d| d.local_addr())
    }

    pub fn gateway(&self) -> Arc<Gateway> {
        self.gateway.clone()
    }

    /// The inbound TLS acceptor, for reloads.
    pub fn tls(&self) -> Option<ReloadableAcceptor> {
        self.tls.clone()
    }

    /// Every inbound TLS acceptor (the proxy's, the decision listener's),
    /// for reloads.
    pub fn tls_acceptors(&self) -> Vec<ReloadableAcceptor> {
        let decision = self.decision.as_ref().and_then(|d| d.tls());
        self.tls.clone().into_iter().chain(decision).collect()
    }

    /// Is the invalidation listener connected?
    pub fn listener_status(&self) -> ListenerStatus {
        self.listener_status.clone()
    }

    /// Serve until `shutdown` resolves, then drain.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let probes = Arc::new(Probes {
            metrics: self.metrics.clone(),
            policy: self.policy.handle(),
            store: self.store.clone(),
            cache: self.cache.clone(),
            listener: self.listener_status.clone(),
            known: self.known.clone(),
            draining: AtomicBool::new(false),
            relayed: self.redis.is_some(),
        });
        match self.cfg.server.enforcement {
            crate::config::Enforcement::Enforce => {
                tracing::info!(enforcement = "enforce", "authorization is enforced")
            }
            crate::config::Enforcement::Report => tracing::warn!(
                enforcement = "report",
                "REPORT MODE: requests authorization denies are forwarded without identity and only logged (target authgate::report) and counted (authgate_would_deny_total); set server.enforcement = \"enforce\" to refuse them"
            ),
        }
        let mut background = self.spawn_cache_keepers(&stop_rx);
        background
            .tasks
            .extend(self.spawn_services(&probes, &stop_rx));

        let conn_stop_rx = self.drain.subscribe();
        let (alive_tx, mut alive_rx) = tokio::sync::mpsc::channel::<()>(1);
        let cfg = &self.cfg;
        let conns = ConnectionFactory {
            gateway: self.gateway.clone(),
            http: Arc::new(http1_builder(cfg)),
            tls: self.tls.clone(),
            tls_timeout: cfg.server.request_header_timeout,
            idle_timeout: cfg.server.idle_timeout,
            stop: conn_stop_rx,
            metrics: self.metrics.clone(),
            alive: alive_tx,
            limit: Arc::new(Semaphore::new(cfg.server.max_connections)),
            max_connections: cfg.server.max_connections,
        };
        conns.accept_until(&self.listener, shutdown).await;

        // Drain: readiness turns 503, and the proxy keeps accepting while
        // the load balancer notices.
        probes.draining.store(true, Ordering::SeqCst);
        tracing::info!(delay = ?cfg.server.shutdown_delay, grace = ?cfg.server.shutdown_grace, "shutting down: readiness is now 503");
        conns
            .accept_for(&self.listener, cfg.server.shutdown_delay)
            .await;
        drop(self.listener);
        let _ = self.drain.send(true);
        drop(conns);
        if tokio::time::timeout(cfg.server.shutdown_grace, alive_rx.recv())
            .await
            .is_err()
        {
            tracing::warn!("shutdown grace expired with requests still in flight");
        }
        let _ = stop_tx.send(true);
        let _ = background.flusher.await;
        for task in background.tasks {
            task.abort();
        }
        if let Some(exporter) = self.exporter.take() {
            exporter.shutdown(TRACE_FLUSH).await;
        }
        tracing::info!("stopped");
        Ok(())
    }

    /// What keeps the cache and the known-hash set true: the strapi5
    /// layout's poller, the invalidation listener and its Redis relay; and
    /// the `last_used_at` flusher.
    fn spawn_cache_keepers(&mut self, stop: &watch::Receiver<bool>) -> Background {
        let cfg = &self.cfg;
        let (cache, known, metrics) = (&self.cache, &self.known, &self.metrics);
        let mut tasks = Vec::new();
        if self.store.capabilities().polls_changes {
            tasks.push(tokio::spawn(crate::strapi5_sync::run(
                cfg.postgres.clone(),
                crate::strapi5_sync::Targets {
                    cache: cache.clone(),
                    known: known.clone(),
                    policy: self.policy.clone(),
                    metrics: metrics.clone(),
                    listener: self.listener_status.clone(),
                },
                stopped(stop.clone()),
            )));
        }
        tasks.push(tokio::spawn(invalidation::listen(
            invalidation::Listener {
                cfg: cfg.postgres.clone(),
                store: self.store.clone(),
                cache: cache.clone(),
                known: known.clone(),
                metrics: metrics.clone(),
                status: self.listener_status.clone(),
                relay: self.redis.clone(),
            },
            stopped(stop.clone()),
        )));
        if let Some(link) = self.redis.take() {
            let (cache, metrics, known) = (cache.clone(), metrics.clone(), known.clone());
            tasks.push(tokio::spawn(link.subscribe(
                move |payload: String| {
                    let (cache, metrics, known) = (cache.clone(), metrics.clone(), known.clone());
                    async move {
                        invalidation::receive(&cache, &known, &metrics, "redis", &payload).await
                    }
                },
                stopped(stop.clone()),
            )));
        }
        let flusher = {
            let (usage, store, metrics) = (self.usage.clone(), self.store.clone(), metrics.clone());
            let stop = stopped(stop.clone());
            tokio::spawn(async move { usage.run(store, metrics, stop).await })
        };
        Background { tasks, flusher }
    }

    /// The other listeners (management, decision, metrics and probes) and the audit
    /// retention job.
    fn spawn_services(
        &mut self,
        probes: &Arc<Probes>,
        stop: &watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        let cfg = &self.cfg;
        let mut tasks = Vec::new();
        if let Some(m) = self.management.take() {
            tasks.push(tokio::spawn(m.serve(stopped(stop.clone()))));
        }
        if let Some(d) = self.decision.take() {
            tasks.push(tokio::spawn(d.serve(stopped(stop.clone()))));
        }
        if crate::audit::AuditKey::is_derived(cfg) {
            tracing::info!("audit: the audit chain is keyed from tokens.salt; set audit.key (a separate secret) so that holding the salt is not enough to rewrite the audit history");
        }
        if self.store.capabilities().prunes_audit {
            let ctx = crate::audit::AuditCtx {
                actor: crate::audit::OPERATOR.into(),
                origin: crate::audit::Origin::retention(),
                key: crate::audit::AuditKey::from_config(cfg),
            };
            tasks.push(tokio::spawn(crate::store::audit::retention_job(
                self.store.clone(),
                ctx,
                cfg.audit.retention,
                stopped(stop.clone()),
            )));
        }
        tasks.push(tokio::spawn(crate::token_stats::refresh(
            self.store.clone(),
            self.metrics.clone(),
            cfg.tokens.stats_interval,
            stopped(stop.clone()),
        )));
        if let Some(l) = self.metrics_listener.take() {
            tasks.push(tokio::spawn(serve_probes(
                l,
                probes.clone(),
                stopped(stop.clone()),
            )));
        }
        tasks
    }
}

/// Bind one listener.
async fn listen(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// The Redis link (when `[redis]` names one, in any mode) and the rate
/// limiter, which shares its counters through it.
fn redis_and_limiter(
    cfg: &Config,
    metrics: &Metrics,
) -> Result<(Option<Arc<RedisLink>>, RateLimiter), ServeError> {
    let redis = cfg
        .redis
        .as_ref()
        .map(|r| {
            RedisLink::new(
                r,
                crate::redis_link::channel(&cfg.postgres.schema),
                metrics.clone(),
            )
            .map(Arc::new)
        })
        .transpose()?;
    let mut limiter = RateLimiter::new(&cfg.rate_limit, metrics.clone());
    if let Some(link) = &redis {
        limiter = limiter.with_redis(link.clone(), &cfg.postgres.schema);
    }
    Ok((redis, limiter))
}

/// Read Strapi's content types before serving, so the first requests map
/// them; bounded, and the poller retries when the database is not there.
async fn initial_content_types(cfg: &Config, policy: &PolicyStore) {
    let bound = cfg.postgres.connect_timeout + cfg.postgres.query_timeout;
    let r = tokio::time::timeout(bound, async {
        let mut client = crate::store::connect(&cfg.postgres).await?;
        let tx = crate::store::sql::begin_on(&mut client, &cfg.postgres).await?;
        crate::strapi5_sync::load_content_types(&tx, policy).await?;
        Ok::<_, crate::store::StoreError>(tx.commit().await?)
    })
    .await;
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "strapi5 layout: content types not read yet; the poller retries")
        }
        Err(_) => tracing::warn!(
            "strapi5 layout: content types not read within {bound:?}; the poller retries"
        ),
    }
}

/// Say it loudly when the schema is older than this authgate: lookups that
/// read a column a pending migration adds fail (503) until `authgate
/// migrate` runs. Silent when the database cannot be asked yet.
async fn warn_of_pending_migrations(pg: crate::config::PostgresConfig) {
    let asked =
        tokio::time::timeout(pg.connect_timeout, crate::store::pending_migrations(&pg)).await;
    match asked {
        Ok(Ok(pending)) if !pending.is_empty() => tracing::error!(
            schema = %pg.schema,
            ?pending,
            "the schema lacks migrations this authgate needs: run `authgate migrate`; until then token lookups fail with 503"
        ),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "could not check the schema's migrations at start")
        }
        Err(_) => tracing::debug!("could not check the schema's migrations at start: timed out"),
    }
}

fn http1_builder(cfg: &Config) -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(cfg.server.request_header_timeout)
        .keep_alive(true)
        .max_header_size(cfg.server.max_header_bytes)
        .max_buf_size(cfg.server.max_header_bytes.max(8192) + 8192)
        .writev(false);
    if cfg.server.max_headers != 100 {
        b.max_headers(cfg.server.max_headers);
    }
    b
}

/// Everything a client connection needs, shared by all of them.
struct ConnectionFactory {
    gateway: Arc<Gateway>,
    http: Arc<hyper::server::conn::http1::Builder>,
    tls: Option<ReloadableAcceptor>,
    tls_timeout: Duration,
    idle_timeout: Duration,
    stop: watch::Receiver<bool>,
    metrics: Metrics,
    /// Held by every connection task; the drain waits until all are gone.
    alive: tokio::sync::mpsc::Sender<()>,
    /// The connection cap (`server.max_connections`).
    limit: Arc<Semaphore>,
    max_connections: usize,
}

impl ConnectionFactory {
    /// Accept until `shutdown` resolves. Past `max_connections`, new
    /// connections wait in the kernel's accept queue until one closes.
    async fn accept_until(&self, listener: &TcpListener, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let permit = match self.limit.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    self.metrics.connection_limit_reached.inc();
                    tracing::debug!(
                        max = self.max_connections,
                        "connection cap reached; accepting paused"
                    );
                    tokio::select! {
                        p = self.limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                        _ = &mut shutdown => return,
                    }
                }
            };
            tokio::select! {
                (stream, peer) = accept::next(listener, "proxy") => self.spawn(stream, peer, Some(permit)),
                _ = &mut shutdown => return,
            }
        }
    }

    /// Keep accepting for `delay` (the start of a drain), past the cap.
    async fn accept_for(&self, listener: &TcpListener, delay: Duration) {
        let until = tokio::time::sleep(delay);
        tokio::pin!(until);
        loop {
            tokio::select! {
                _ = &mut until => return,
                (stream, peer) = accept::next(listener, "proxy") => self.spawn(stream, peer, None),
            }
        }
    }

    fn spawn(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) {
        let conn = Connection {
            gateway: self.gateway.clone(),
            http: self.http.clone(),
            tls: self.tls.as_ref().map(ReloadableAcceptor::acceptor),
            tls_timeout: self.tls_timeout,
            idle_timeout: self.idle_timeout,
            stop: self.stop.clone(),
            admission: Arc::new(Admission::new(
                permit,
                self.alive.clone(),
                self.metrics.connections_active.clone(),
            )),
        };
        tokio::spawn(conn.serve(stream, peer));
    }
}

/// One client connection.
struct Connection {
    gateway: Arc<Gateway>,
    http: Arc<hyper::server::conn::http1::Builder>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    tls_timeout: Duration,
    idle_timeout: Duration,
    stop: watch::Receiver<bool>,
    /// Its place under the cap, shared with a tunnel it may become.
    admission: Arc<Admission>,
}

impl Connection {
    async fn serve(self, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        match self.tls.clone() {
            Some(acceptor) => {
                match tokio::time::timeout(self.tls_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => self.serve_io(TokioIo::new(tls), peer, true).await,
                    Ok(Err(e)) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            }
            None => self.serve_io(TokioIo::new(stream), peer, false).await,
        }
    }

    async fn serve_io<I>(&self, io: I, peer: SocketAddr, tls: bool)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let served = Arc::new(Served {
            client: self.gateway.open(peer, tls, self.admission.clone()),
            gateway: self.gateway.clone(),
            in_flight: AtomicUsize::new(0),
            done: AtomicU64::new(0),
        });
        let state = served.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let state = state.clone();
            async move {
                state.in_flight.fetch_add(1, Ordering::Relaxed);
                let resp = state.gateway.handle(req, &state.client).await;
                state.in_flight.fetch_sub(1, Ordering::Relaxed);
                state.done.fetch_add(1, Ordering::Relaxed);
                Ok::<_, Infallible>(resp)
            }
        });
        let conn = self.http.serve_connection(io, service).with_upgrades();
        tokio::pin!(conn);
        // Idle and drain watching runs in a task of its own, which says
        // when to close: a request's wake-ups then poll only the
        // connection and this one signal, not a timer and a watch.
        let (close_tx, close_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(watch_idle(
            served.clone(),
            self.stop.clone(),
            self.idle_timeout,
            close_tx,
            peer,
        ));
        tokio::select! {
            biased;
            r = conn.as_mut() => {
                if let Err(e) = r { tracing::debug!(error = %e, %peer, "connection error"); }
                return;
            }
            _ = close_rx => {}
        }
        // Draining or idle: finish the request in flight, then close.
        conn.as_mut().graceful_shutdown();
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, %peer, "connection error while closing");
        }
    }
}

/// Say when a connection should close: the server drains, or it has been
/// idle for `idle_timeout`. Idle tracking takes no clock read per request:
/// each tick looks at the count of finished requests; the connection is
/// idle since the first tick that saw it unchanged with nothing in flight.
/// Ends, saying nothing, when the connection does.
async fn watch_idle(
    served: Arc<Served>,
    mut stop: watch::Receiver<bool>,
    idle_timeout: Duration,
    mut close: tokio::sync::oneshot::Sender<()>,
    peer: SocketAddr,
) {
    let mut tick = tokio::time::interval(
        (idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1)),
    );
    let (mut seen, mut idle_since) = (0, tokio::time::Instant::now());
    loop {
        tokio::select! {
            _ = close.closed() => return,
            _ = stop.wait_for(|v| *v) => break,
            now = tick.tick() => {
                let done = served.done.load(Ordering::Relaxed);
                if done != seen || served.in_flight.load(Ordering::Relaxed) != 0 {
                    (seen, idle_since) = (done, now);
                } else if now - idle_since >= idle_timeout {
                    tracing::debug!(%peer, "closing an idle keep-alive connection");
                    break;
                }
            }
        }
    }
    let _ = close.send(());
}

/// One client connection's state, shared by its requests.
struct Served {
    gateway: Arc<Gateway>,
    client: crate::proxy::ClientConn,
    /// Requests in flight, and requests finished (for idle tracking).
    in_flight: AtomicUsize,
    done: AtomicU64,
}

impl Probes {
    /// Is authorization enforced (not only reported) now?
    fn enforcing(&self) -> bool {
        self.policy.snapshot().enforcement == crate::config::Enforcement::Enforce
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}

async fn probe(req: Request<Incoming>, p: Arc<Probes>) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/metrics" => {
            p.cache.run_pending_tasks().await;
            p.metrics.enforcing.set(i64::from(p.enforcing()));
            p.metrics
                .listener_up
                .set(i64::from(p.listener.is_listening()));
            p.metrics
                .known_hashes
                .set(i64::try_from(p.known.len()).unwrap_or(i64::MAX));
            let pool = p.store.pool_status();
            p.metrics
                .store_pool_size
                .set(i64::try_from(pool.size).unwrap_or(0));
            p.metrics
                .store_pool_available
                .set(i64::try_from(pool.available).unwrap_or(0));
            p.metrics
                .cache_entries
                .set(i64::try_from(p.cache.entry_count()).unwrap_or(i64::MAX));
            let mut r = Response::new(Full::new(Bytes::from(p.metrics.render())));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            if p.draining.load(Ordering::SeqCst) {
                return text(StatusCode::SERVICE_UNAVAILABLE, "draining\n");
            }
            if let Err(e) = p.store.ping().await {
                tracing::warn!(error = %e, "readiness: database unreachable");
                return text(StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n");
            }
            match p.listener.undelivered() {
                Some(why) if !p.relayed => {
                    let body = format!("invalidations undelivered: {why}\n");
                    let mut r = Response::new(Full::new(Bytes::from(body)));
                    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                    r
                }
                _ if p.enforcing() => text(StatusCode::OK, "ready\n"),
                _ => text(
                    StatusCode::OK,
                    "ready (report mode: denials are forwarded without identity, not enforced)\n",
                ),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

async fn serve_probes(listener: TcpListener, probes: Arc<Probes>, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            a = accept::next(&listener, "probes") => a,
            _ = &mut stop => return,
        };
        let probes = probes.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let probes = probes.clone();
                async move { Ok::<_, Infallible>(probe(req, probes).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
