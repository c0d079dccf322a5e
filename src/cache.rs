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

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::notification::RemovalCause;
use moka::Expiry;
use tokio::sync::OnceCell;

use crate::config::CacheConfig;
use crate::metrics::Metrics;
use crate::model::TokenRecord;
use crate::store::StoreError;
use crate::token::TokenHash;

/// A cached lookup result: the value, or the fact that there is none.
struct Slot<V> {
    value: Option<Arc<V>>,
    fetched: Instant,
}

type Entry<V> = Arc<Slot<V>>;

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

struct SlotExpiry {
    positive: Duration,
    negative: Duration,
}

impl<V> Expiry<TokenHash, Entry<V>> for SlotExpiry {
    fn expire_after_create(&self, _k: &TokenHash, v: &Entry<V>, _now: Instant) -> Option<Duration> {
        Some(if v.value.is_some() {
            self.positive
        } else {
            self.negative
        })
    }

    fn expire_after_update(
        &self,
        k: &TokenHash,
        v: &Entry<V>,
        now: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        self.expire_after_create(k, v, now)
    }
}

type Flight<V> = Arc<OnceCell<Result<Option<Arc<V>>, LookupError>>>;

/// The token cache. `V` is what the proxy keeps per token (the record plus
/// anything precomputed from it); the cache only needs its record.
pub struct TokenCache<V> {
    cache: Option<Cache<TokenHash, Entry<V>>>,
    inflight: Mutex<HashMap<TokenHash, Flight<V>>>,
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
        let cache = (cfg.capacity > 0).then(|| {
            let evictions = metrics.cache_evictions.clone();
            Cache::builder()
                .max_capacity(cfg.capacity)
                .expire_after(SlotExpiry {
                    positive: cfg.ttl + cfg.stale_if_error,
                    negative: cfg.negative_ttl,
                })
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
        Self {
            cache,
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
    ) -> Result<Option<Arc<V>>, LookupError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, StoreError>>,
    {
        let stale = match &self.cache {
            Some(cache) => match cache.get(&hash).await {
                Some(slot) => {
                    let age = slot.fetched.elapsed();
                    if slot.value.is_none() {
                        // Negative entries live only for negative_ttl (moka
                        // expires them), so any we see is fresh.
                        self.metrics.cache_negative_hits.inc();
                        return Ok(None);
                    }
                    if age < self.ttl {
                        self.metrics.cache_hits.inc();
                        return Ok(slot.value.clone());
                    }
                    Some(slot)
                }
                None => None,
            },
            None => None,
        };
        self.metrics.cache_misses.inc();
        match self.load_once(hash, load).await {
            Ok(v) => Ok(v),
            Err(LookupError::Unavailable(reason)) => match stale {
                Some(slot) if slot.fetched.elapsed() < self.ttl + self.stale_if_error => {
                    self.metrics.cache_stale_served.inc();
                    tracing::debug!(%reason, "serving a stale token record while the store is unavailable");
                    Ok(slot.value.clone())
                }
                _ => Err(LookupError::Unavailable(reason)),
            },
            Err(e) => Err(e),
        }
    }

    /// Single flight: the first caller for a hash loads, the others wait for
    /// its result. If the first caller is cancelled, a waiter takes over.
    async fn load_once<F, Fut>(
        &self,
        hash: TokenHash,
        load: F,
    ) -> Result<Option<Arc<V>>, LookupError>
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
                    Ok(v) => Ok(v.map(Arc::new)),
                    Err(e) => Err(LookupError::from(&e)),
                };
                if let (Ok(value), Some(cache)) = (&r, &self.cache) {
                    if self.epoch.load(Ordering::Acquire) == epoch {
                        let slot = Arc::new(Slot {
                            value: value.clone(),
                            fetched: Instant::now(),
                        });
                        cache.insert(hash, slot).await;
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
        self.bump();
        if let Some(c) = &self.cache {
            c.invalidate(hash).await;
        }
    }

    fn invalidate_where(&self, pred: impl Fn(&TokenRecord) -> bool + Send + Sync + 'static) {
        self.bump();
        if let Some(c) = &self.cache {
            let r = c.invalidate_entries_if(move |_k, slot| {
                slot.value.as_deref().is_some_and(|v| pred(v.as_ref()))
            });
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
        if let Some(c) = &self.cache {
            c.invalidate_all();
        }
    }

    /// Entries currently held (approximate; for the gauge).
    pub fn entry_count(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| c.entry_count())
    }

    /// Let moka apply pending maintenance (tests and the metrics gauge).
    pub async fn run_pending_tasks(&self) {
        if let Some(c) = &self.cache {
            c.run_pending_tasks().await;
        }
    }
}

#[cfg(test)]
mod tests;
