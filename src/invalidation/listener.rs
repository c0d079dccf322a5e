//! The LISTEN connection: one per replica, kept open until shutdown, and
//! proven to hear what is sent before it is trusted.
//!
//! It connects to `postgres.listen_url` when set, else to `postgres.url`,
//! always to a server that accepts writes, and refuses one in recovery: a
//! standby cannot LISTEN, and would never hear the primary's commits. A URL
//! with several hosts (`host1,host2/db`) follows a failover: the next
//! connection finds the new primary.
//!
//! **Self-test.** LISTEN through a pooler in transaction mode (PgBouncer,
//! PgCat) succeeds and then never delivers, so revocations would silently
//! stop reaching this replica. So after every (re)connect, a NOTIFY is sent
//! through `postgres.url` (the store's pool, the way writers reach the
//! database) on a channel of this replica's own, and must arrive here within
//! `postgres.connect_timeout`. If it does not, the connection is not
//! trusted: [`ListenerStatus::undelivered`] says why (so `/readyz` answers
//! 503 unless Redis relays invalidations), one log line says what to set,
//! `authgate_listener_selftest_failures_total` counts it, and the listener
//! reconnects and tries again.
//!
//! Events can be missed while the connection is down, so once a new
//! connection passes its self-test every cached record must be read again
//! ([`TokenCache::expire_all`]: a record is still served stale if the
//! database cannot be read, as during the outage), and the set of issued
//! hashes is reloaded. The connection is probed every few seconds; a
//! silent network failure is noticed and repaired with exponential backoff
//! (100 ms to 500 ms, so a failover is followed within half a second of the
//! new primary answering). The cache's TTL bounds the damage of anything
//! missed anyway.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_postgres::{AsyncMessage, SimpleQueryMessage};

use crate::cache::TokenCache;
use crate::config::PostgresConfig;
use crate::known::KnownHashes;
use crate::metrics::Metrics;
use crate::model::TokenRecord;
use crate::redis_link::RedisLink;
use crate::store::{Store, StoreError};

/// Whether the listener currently holds a trusted LISTEN connection, and
/// why not when its self-test failed.
#[derive(Clone, Default)]
pub struct ListenerStatus(Arc<State>);

#[derive(Default)]
struct State {
    listening: AtomicBool,
    undelivered: Mutex<Option<String>>,
}

impl ListenerStatus {
    /// Listening, and the last self-test passed.
    pub fn is_listening(&self) -> bool {
        self.0.listening.load(Ordering::Relaxed)
    }

    /// Why a NOTIFY sent through `postgres.url` does not reach the
    /// listener, while the last self-test failed.
    pub fn undelivered(&self) -> Option<String> {
        self.0
            .undelivered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_listening(&self, v: bool) {
        self.0.listening.store(v, Ordering::Relaxed);
    }

    fn set_undelivered(&self, why: Option<String>) {
        *self.0.undelivered.lock().unwrap_or_else(|p| p.into_inner()) = why;
    }
}

const PROBE_EVERY: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// A failure that goes on is logged again at most this often.
const REPEAT_WARNING: Duration = Duration::from_secs(60);

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
enum Ended {
    /// The connection closed.
    #[error("connection closed")]
    Closed,
    /// Connecting, listening or the database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The self-test's NOTIFY did not arrive (the reason is in the status).
    #[error("{0}")]
    Undelivered(String),
}

/// What the listener needs: where to connect and what to keep current.
pub struct Listener<V> {
    pub cfg: PostgresConfig,
    /// The pool the self-test sends its NOTIFY through (`postgres.url`).
    pub store: Store,
    pub cache: Arc<TokenCache<V>>,
    pub known: Arc<KnownHashes>,
    pub metrics: Metrics,
    pub status: ListenerStatus,
    /// Relays every event to Redis, when configured.
    pub relay: Option<Arc<RedisLink>>,
}

/// Keep a LISTEN connection open until `shutdown`, applying every event
/// and relaying it to Redis when a link is given.
pub async fn listen<V>(l: Listener<V>, shutdown: impl std::future::Future<Output = ()>)
where
    V: AsRef<TokenRecord> + Send + Sync + 'static,
{
    tokio::pin!(shutdown);
    let channel = crate::store::channel(&l.cfg);
    let probe = format!("authgate_probe_{}", random_word());
    let mut backoff = FIRST_BACKOFF;
    let mut warned: Option<Instant> = None;
    loop {
        let trusted = AtomicBool::new(false);
        tokio::select! {
            r = l.session(&channel, &probe, &trusted) => {
                l.status.set_listening(false);
                l.known.distrust();
                if trusted.load(Ordering::Relaxed) {
                    backoff = FIRST_BACKOFF;
                    warned = None;
                }
                let e = match r { Ok(never) => match never {}, Err(e) => e };
                let repeat = warned.is_some_and(|t| t.elapsed() < REPEAT_WARNING);
                match &e {
                    // Logged once per streak where it was found.
                    Ended::Undelivered(_) => {}
                    _ if repeat => tracing::debug!(error = %e, retry_in = ?backoff, "invalidation listener failed"),
                    _ => {
                        tracing::warn!(error = %e, retry_in = ?backoff, "invalidation listener failed; retrying");
                        warned = Some(Instant::now());
                    }
                }
            }
            _ = &mut shutdown => { l.status.set_listening(false); l.known.distrust(); return; }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = &mut shutdown => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// A notification: its channel and payload.
type Note = (String, String);

impl<V> Listener<V>
where
    V: AsRef<TokenRecord> + Send + Sync + 'static,
{
    /// One connection, until it fails. `trusted` turns true once its
    /// self-test passed.
    async fn session(
        &self,
        channel: &str,
        probe: &str,
        trusted: &AtomicBool,
    ) -> Result<std::convert::Infallible, Ended> {
        let cfg = &self.cfg;
        let pg = crate::store::listen_config(cfg)?;
        let (client, mut conn) =
            tokio::time::timeout(cfg.connect_timeout, pg.connect(crate::store::tls(cfg)?))
                .await
                .map_err(|_| StoreError::Unavailable("listener connect timed out".into()))?
                .map_err(|source| StoreError::Connect { source })?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Note>();
        // Drive the connection; forward notifications. Ends when it closes.
        let driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
            while let Some(m) = messages.next().await {
                match m {
                    Ok(AsyncMessage::Notification(n)) => {
                        let note = (n.channel().to_owned(), n.payload().to_owned());
                        if tx.send(note).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "listener connection error");
                        break;
                    }
                }
            }
        });
        let result = async {
            refuse_standby(&client).await?;
            client
                .batch_execute(&format!("LISTEN \"{channel}\"; LISTEN \"{probe}\""))
                .await
                .map_err(StoreError::from)?;
            let held = self.self_test(probe, &mut rx).await?;
            // Anything may have changed while we were not listening.
            self.cache.expire_all();
            // Events from now on keep the set of issued hashes current,
            // when the database announces every new token.
            let mut loading = crate::known::Loading::default();
            if crate::store::issued_hashes(&client, cfg, |h| loading.add(h)).await? {
                self.known.replace(loading);
            } else {
                self.known.distrust();
            }
            self.metrics.listener_reconnects.inc();
            self.status.set_undelivered(None);
            self.status.set_listening(true);
            trusted.store(true, Ordering::Relaxed);
            tracing::info!(channel, "listening for cache invalidations");
            for payload in held {
                self.deliver(&payload).await;
            }
            let mut tick = tokio::time::interval(PROBE_EVERY);
            tick.tick().await;
            loop {
                tokio::select! {
                    m = rx.recv() => match m {
                        Some((c, payload)) if c == channel => self.deliver(&payload).await,
                        Some(_) => {} // a late self-test
                        None => return Err(Ended::Closed),
                    },
                    _ = tick.tick() => {
                        tokio::time::timeout(cfg.query_timeout, client.simple_query("SELECT 1"))
                            .await
                            .map_err(|_| StoreError::Unavailable("listener probe timed out".into()))?
                            .map_err(StoreError::from)?;
                    }
                }
            }
        }
        .await;
        driver.abort();
        result
    }

    /// Apply one event and relay it.
    async fn deliver(&self, payload: &str) {
        super::receive(&self.cache, &self.known, &self.metrics, "postgres", payload).await;
        if let Some(r) = &self.relay {
            r.publish(payload).await;
        }
    }

    /// Send a NOTIFY on `probe` through `postgres.url` and wait for it on
    /// this connection. Returns the events that arrived meanwhile.
    async fn self_test(
        &self,
        probe: &str,
        rx: &mut UnboundedReceiver<Note>,
    ) -> Result<Vec<String>, Ended> {
        let nonce = random_word();
        self.store.notify(probe, &nonce).await?;
        let mut held = Vec::new();
        let heard = tokio::time::timeout(self.cfg.connect_timeout, async {
            while let Some((c, payload)) = rx.recv().await {
                if c == probe {
                    if payload == nonce {
                        return true;
                    }
                } else {
                    held.push(payload);
                }
            }
            false
        })
        .await;
        match heard {
            Ok(true) => Ok(held),
            Ok(false) => Err(Ended::Closed),
            Err(_) => Err(self.undelivered()),
        }
    }

    /// The self-test failed: say so once per streak, count it, and tell
    /// `/readyz`.
    fn undelivered(&self) -> Ended {
        let cfg = &self.cfg;
        let why = format!(
            "a NOTIFY sent through postgres.url did not reach the LISTEN connection within {:?}",
            cfg.connect_timeout
        );
        self.metrics.listener_selftest_failures.inc();
        if self.status.undelivered().is_none() {
            let fix = match &cfg.listen_url {
                None => "postgres.url seems to go through a pooler in transaction mode (PgBouncer, PgCat), which cannot carry LISTEN: set postgres.listen_url to a direct connection to the primary, or configure [redis] so that invalidations arrive from replicas that can LISTEN",
                Some(_) => "postgres.listen_url and postgres.url do not reach the same primary, or listen_url goes through a pooler in transaction mode: point postgres.listen_url directly at the primary that postgres.url writes to, or configure [redis] so that invalidations arrive from replicas that can LISTEN",
            };
            tracing::error!(
                listen_url = %cfg.listen_url.as_ref().unwrap_or(&cfg.url).redacted(),
                "revocations would not reach this replica: {why}; {fix}"
            );
        }
        self.status.set_undelivered(Some(why.clone()));
        Ended::Undelivered(why)
    }
}

/// A server in recovery (a standby) can neither LISTEN nor hear the
/// primary's commits: refuse it, and try again elsewhere.
async fn refuse_standby(client: &tokio_postgres::Client) -> Result<(), StoreError> {
    let rows = client
        .simple_query("SELECT pg_is_in_recovery()::text")
        .await?;
    let in_recovery = rows.iter().any(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(0) == Some("true"),
        _ => false,
    });
    if in_recovery {
        return Err(StoreError::Unavailable(
            "the listener reached a standby (in recovery), which cannot hear the primary's NOTIFYs; trying again"
                .into(),
        ));
    }
    Ok(())
}

/// 16 random hex digits (a channel suffix, a nonce).
fn random_word() -> String {
    let mut r = [0u8; 8];
    // A clock-derived word if the OS has no randomness to give: it only
    // has to differ between this replica's tests and channels.
    if getrandom::fill(&mut r).is_err() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        r = (now ^ u64::from(std::process::id())).to_le_bytes();
    }
    hex::encode(r)
}
