//! The in-process token cache (moka), in front of the store.
//!
//! **What is cached:** facts about a token, keyed by its hash: the record,
//! the owner's status and permissions (see [`crate::model`]), or the fact
//! that no token has this hash. Never a decision: the route is judged anew on
//! every request, so an entry filled while serving a lenient route grants
//! nothing on a stricter one.
//!
//! **For how long:** a record is fresh for `cache.ttl`; after that the next
//! request re-reads it. If the store is unreachable then, the stale record
//! keeps serving for up to `cache.stale_if_error` more (an outage of the
//! database must not take the CMS down). An absence is remembered for
//! `cache.negative_ttl` only, and never served stale.
//!
//! **What invalidates it:** events from [`crate::invalidation`]: a token (by
//! hash in O(1), or by id), every token of an owner, every token of the users
//! of a role, or everything. A lookup racing an invalidation does not put
//! its (possibly older) result into the cache: every invalidation bumps an
//! epoch, and a load that started in an older epoch is returned to its
//! callers but not stored.
//!
//! **Single flight:** concurrent misses on the same hash share one query.
//!
//! **Memory:** records and absences live in two moka caches; records carry
//! their read time ([`Cached`], one allocation) and their age is checked on
//! each lookup, so moka keeps no per-entry timer or write-order node for
//! them (about 480 bytes a cached token, measured with a million).

use std::collections::HashMap;
use std::future::Future;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::notification::RemovalCause;
use tokio::sync::OnceCell;

use crate::config::CacheConfig;
use crate::metrics::Metrics;
use crate::model::TokenRecord;
use crate::store::StoreError;
use crate::token::TokenHash;

/// A cached record and when it was read from the store.
#[derive(Debug)]
pub struct Cached<V> {
    value: V,
    fetched: Instant,
}

impl<V> Deref for Cached<V> {
    type Target = V;
    fn deref(&self) -> &V {
        &self.value
    }
}

/// The cache key: the first 32 bytes of the 64-byte hash, as collision
/// resistant as SHA-256 and half the size in every entry.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Key([u8; 32]);

impl From<&TokenHash> for Key {
    fn from(h: &TokenHash) -> Self {
        let mut k = [0u8; 32];
        k.copy_from_slice(&h.0[..32]);
        Key(k)
    }
}

/// What a lookup returns: a shared, cached record.
pub type Hit<V> = Arc<Cached<V>>;

/// Why a lookup produced no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LookupError {
    #[error("token store unavailable: {0}")]
    Unavailable(String),
    #[error("token store error: {0}")]
    Failed(String),
}

impl From<&StoreError> for LookupError {
    fn from(e: &StoreError) -> Self {
        if e.is_unavailable() {
            LookupError::Unavailable(e.to_string())
        } else {
            LookupError::Failed(e.to_string())
        }
    }
}

type Flight<V> = Arc<OnceCell<Result<Option<Hit<V>>, LookupError>>>;

/// The token cache. `V` is what the proxy keeps per token (the record plus
/// anything derived from it); the cache only needs its record.
pub struct TokenCache<V> {
    records: Option<Cache<Key, Hit<V>>>,
    absent: Option<Cache<Key, ()>>,
    inflight: Mutex<HashMap<Key, Flight<V>>>,
    epoch: AtomicU64,
    ttl: Duration,
    stale_if_error: Duration,
    metrics: Metrics,
}

impl<V> TokenCache<V>
where
    V: AsRef<TokenRecord> + Send + Sync + 'static,
{
    /// A cache per config; `capacity = 0` disables caching (every lookup
    /// queries the store; single flight still applies).
    pub fn new(cfg: &CacheConfig, metrics: Metrics) -> Self {
        let enabled = cfg.capacity > 0;
        let records = enabled.then(|| {
            let evictions = metrics.cache_evictions.clone();
            Cache::builder()
                .max_capacity(cfg.capacity)
                // No moka TTL: the age check in get_or_load enforces ttl and
                // stale_if_error (an old record is never served, only
                // replaced or evicted). Saves moka's per-entry timer nodes.
                .support_invalidation_closures()
                .eviction_listener(move |_k, _v, cause| {
                    let label = match cause {
                        RemovalCause::Size => "size",
                        RemovalCause::Expired => "expired",
                        RemovalCause::Explicit => "invalidated",
                        RemovalCause::Replaced => return,
                    };
                    evictions.with_label_values(&[label]).inc();
                })
                .build()
        });
        // Absences are cheap and short-lived; a quarter of the capacity
        // bounds what a flood of unknown keys can occupy.
        let absent = enabled.then(|| {
            Cache::builder()
                .max_capacity((cfg.capacity / 4).max(1024))
                .time_to_live(cfg.negative_ttl)
                .build()
        });
        Self {
            records,
            absent,
            inflight: Mutex::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            ttl: cfg.ttl,
            stale_if_error: cfg.stale_if_error,
            metrics,
        }
    }

    /// Look `hash` up, loading it with `load` on a miss or a stale entry.
    pub async fn get_or_load<F, Fut>(
        &self,
        hash: TokenHash,
        load: F,
    ) -> Result<Option<Hit<V>>, LookupError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, StoreError>>,
    {
        let hash = Key::from(&hash);
        let mut stale = None;
        if let Some(records) = &self.records {
            if let Some(hit) = records.get(&hash).await {
                if hit.fetched.elapsed() < self.ttl {
                    self.metrics.cache_hits.inc();
                    return Ok(Some(hit));
                }
                stale = Some(hit);
            } else if let Some(absent) = &self.absent {
                if absent.contains_key(&hash) {
                    self.metrics.cache_negative_hits.inc();
                    return Ok(None);
                }
            }
        }
        self.metrics.cache_misses.inc();
        match self.load_once(hash, load).await {
            Ok(v) => Ok(v),
            Err(LookupError::Unavailable(reason)) => match stale {
                Some(hit) if hit.fetched.elapsed() < self.ttl + self.stale_if_error => {
                    self.metrics.cache_stale_served.inc();
                    tracing::debug!(%reason, "serving a stale token record while the store is unavailable");
                    Ok(Some(hit))
                }
                _ => Err(LookupError::Unavailable(reason)),
            },
            Err(e) => Err(e),
        }
    }

    /// Single flight: the first caller for a hash loads, the others wait for
    /// its result. If the first caller is cancelled, a waiter takes over.
    async fn load_once<F, Fut>(&self, hash: Key, load: F) -> Result<Option<Hit<V>>, LookupError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, StoreError>>,
    {
        let flight = {
            let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(hash).or_default().clone()
        };
        let epoch = self.epoch.load(Ordering::Acquire);
        let result = flight
            .get_or_init(|| async {
                let r = match load().await {
                    Ok(v) => Ok(v.map(|value| {
                        Arc::new(Cached {
                            value,
                            fetched: Instant::now(),
                        })
                    })),
                    Err(e) => Err(LookupError::from(&e)),
                };
                if self.epoch.load(Ordering::Acquire) == epoch {
                    match &r {
                        Ok(Some(hit)) => {
                            if let Some(records) = &self.records {
                                records.insert(hash, hit.clone()).await;
                            }
                            if let Some(absent) = &self.absent {
                                absent.invalidate(&hash).await;
                            }
                        }
                        Ok(None) => {
                            if let Some(records) = &self.records {
                                records.invalidate(&hash).await;
                            }
                            if let Some(absent) = &self.absent {
                                absent.insert(hash, ()).await;
                            }
                        }
                        Err(_) => {}
                    }
                }
                r
            })
            .await
            .clone();
        // Whoever finishes first retires the flight so later misses query anew.
        let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(&hash).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
            map.remove(&hash);
        }
        result
    }

    fn bump(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Forget one hash.
    pub async fn invalidate_hash(&self, hash: &TokenHash) {
        let hash = &Key::from(hash);
        self.bump();
        if let Some(c) = &self.records {
            c.invalidate(hash).await;
        }
        if let Some(c) = &self.absent {
            c.invalidate(hash).await;
        }
    }

    fn invalidate_where(&self, pred: impl Fn(&TokenRecord) -> bool + Send + Sync + 'static) {
        self.bump();
        if let Some(c) = &self.records {
            let r = c.invalidate_entries_if(move |_k, hit| pred(hit.value.as_ref()));
            if let Err(e) = r {
                tracing::warn!(error = %e, "predicate invalidation unavailable; clearing the whole cache");
                c.invalidate_all();
            }
        }
    }

    /// Forget a token by id (e.g. its permissions changed).
    pub fn invalidate_token(&self, id: i64) {
        self.invalidate_where(move |r| r.id == id);
    }

    /// Forget every token of an owner (status, roles or email changed).
    pub fn invalidate_owner(&self, user_id: i64) {
        self.invalidate_where(move |r| r.owner_id() == Some(user_id));
    }

    /// Forget every token whose owner holds a role (its permissions changed).
    pub fn invalidate_role(&self, role_id: i64) {
        self.invalidate_where(move |r| match &r.ownership {
            crate::model::Ownership::Owner(o) => o.role_ids.contains(&role_id),
            _ => false,
        });
    }

    /// Forget everything (e.g. after the listener missed events).
    pub fn invalidate_all(&self) {
        self.bump();
        if let Some(c) = &self.records {
            c.invalidate_all();
        }
        if let Some(c) = &self.absent {
            c.invalidate_all();
        }
    }

    /// Records currently held (approximate; for the gauge).
    pub fn entry_count(&self) -> u64 {
        self.records.as_ref().map_or(0, |c| c.entry_count())
    }

    /// Let moka apply pending maintenance (tests and the metrics gauge).
    pub async fn run_pending_tasks(&self) {
        if let Some(c) = &self.records {
            c.run_pending_tasks().await;
        }
        if let Some(c) = &self.absent {
            c.run_pending_tasks().await;
        }
    }

    /// Is a record cached for `hash`? (tests)
    pub async fn holds(&self, hash: &TokenHash) -> bool {
        match &self.records {
            Some(c) => c.get(&Key::from(hash)).await.is_some(),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests;
