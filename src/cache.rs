//! The in-process token cache, in front of the store.
//!
//! **What is cached:** facts about a token: the record, the owner's status
//! and permissions (see [`crate::model`]), keyed by a [`Fingerprint`] of the
//! presented key (so a hit needs no HMAC-SHA512 of it); or the fact that no
//! token has a hash, keyed by the hash. Never a decision: the route is
//! judged anew on every request, so an entry filled while serving a lenient
//! route grants nothing on a stricter one.
//!
//! **For how long:** a record is fresh for `cache.ttl`; after that the next
//! request re-reads it. If the store is unreachable then, the stale record
//! keeps serving for up to `cache.stale_if_error` more (an outage of the
//! database must not take the CMS down). An absence is remembered for
//! `cache.negative_ttl` only, and never served stale.
//!
//! **What invalidates it:** events from [`crate::invalidation`]: a token (by
//! id, and by its hash when the event names one), every token of an owner,
//! every token of the users of a role, or everything. A record is covered
//! by its token's id, which it carries and which every token event names,
//! whatever key (current, or old in its overlap) it was found by: so a
//! record needs neither its hash nor an index from hashes to fingerprints;
//! the hash covers a cached absence (a new token under a hash once
//! unknown). Every invalidation bumps an epoch and every entry
//! remembers the epoch its load started in. Each event is noted in a small
//! map (the scope and its epoch) and an entry covered by a later event is
//! dropped and re-read: O(1) per event and per hit instead of a scan over
//! every entry, and exact from the very next request, even for a load
//! that stored its result just after the event (a hash also removes its
//! absence at once, and "everything" every entry, to free their memory; a
//! record covered otherwise is removed when it is next asked for, or
//! evicted). Notes older than
//! `ttl + stale_if_error` are pruned: no record that old is served. A
//! lookup racing an invalidation does not put its (possibly older) result
//! into the cache: it is returned to its callers but not stored.
//!
//! **Single flight:** concurrent misses on the same hash share one query,
//! within one epoch: a miss after an invalidation never waits for (and
//! never receives) the result of a load that began before it.
//!
//! **Memory:** records live in a sharded S3-FIFO table of our own
//! ([`fifo`]: a 32-byte slot and two `u32`s an entry, where moka's
//! bookkeeping took about 380 bytes), absences in a moka cache with a
//! time-to-live (short-lived, bounded to a quarter of the capacity).
//! Records carry their read time and epoch ([`Cached`], one allocation)
//! and both are checked on each lookup, so the table needs neither a
//! time-to-live nor invalidation closures (see BENCHMARKS.md for bytes per
//! cached token).

use std::collections::HashMap;
use std::future::Future;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use moka::future::Cache;
use tokio::sync::OnceCell;

use fifo::{Fifo, Removed};

use crate::config::CacheConfig;
use crate::metrics::Metrics;
use crate::model::TokenRecord;
use crate::store::StoreError;
use crate::token::{BuildDigestHasher, TokenHash};

/// A cached record, when it was read from the store, and the invalidation
/// epoch its load started in.
#[derive(Debug)]
pub struct Cached<V> {
    value: V,
    /// Nanoseconds after the cache's `born` (8 bytes where an `Instant`
    /// takes 16: with the record, one allocation fits a smaller size class).
    fetched: u64,
    epoch: u64,
}

/// The key of a cached record: a keyed 128-bit fingerprint of the key the
/// client presented (`lookup` makes it; never the key, never its hash).
/// Hashed as its low 8 bytes with [`BuildDigestHasher`]: a keyed PRF's
/// output, uniform and not choosable by a client. 16 bytes in every entry
/// where the hash took 32.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Fingerprint(pub u128);

impl std::hash::Hash for Fingerprint {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.0 as u64);
    }
}

/// A presented key as the cache knows it on a miss: its fingerprint (the
/// record's key) and its HMAC (the store's key, absences, single flight).
#[derive(Clone, Copy)]
pub struct Presented {
    pub fingerprint: Fingerprint,
    pub hash: TokenHash,
}

/// What the cache holds for a fingerprint.
pub enum Probe<V> {
    /// A record servable without the store.
    Fresh(Hit<V>),
    /// A record past its TTL (or loaded before an `expire_all`): to read
    /// again, and to serve while the store cannot answer.
    Stale(Hit<V>),
    /// Nothing (or nothing servable).
    Missing,
}

/// What an invalidation covers.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Scope {
    Hash(Key),
    Token(i64),
    Owner(i64),
    Role(i64),
    All,
}

/// Invalidations still young enough to matter.
struct Revoked {
    /// Scope -> (epoch of the event, when it happened).
    by_scope: HashMap<Scope, (u64, Instant)>,
    /// Pruned at most once a second, so a burst of events stays linear.
    pruned: Instant,
}

impl<V> Deref for Cached<V> {
    type Target = V;
    fn deref(&self) -> &V {
        &self.value
    }
}

/// What the gateway keeps per token: the record, and when its last use
/// was noted (the cache's value type).
#[derive(Debug)]
pub struct Resolved {
    pub record: TokenRecord,
    /// Unix seconds of the last use recorded for `last_used_at` (a cheap
    /// pre-check so most requests skip the recorder's lock).
    pub last_recorded: AtomicU64,
}

impl Resolved {
    pub fn new(record: TokenRecord) -> Self {
        Self {
            record,
            last_recorded: AtomicU64::new(0),
        }
    }

    /// True if a use at `now_secs` should be recorded (at most once per
    /// `interval_secs` per cached record).
    pub fn should_record(&self, now_secs: u64, interval_secs: u64) -> bool {
        let last = self.last_recorded.load(Ordering::Relaxed);
        if last != 0 && now_secs < last.saturating_add(interval_secs.max(1)) {
            return false;
        }
        self.last_recorded
            .compare_exchange(last, now_secs, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

impl AsRef<TokenRecord> for Resolved {
    fn as_ref(&self) -> &TokenRecord {
        &self.record
    }
}

/// The key of an absence: the first 32 bytes of the 64-byte hash, as
/// collision resistant as SHA-256 and half the size.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Key([u8; 32]);

/// Hashed as its first 8 bytes, with [`BuildDigestHasher`]: the key is an
/// HMAC output, already uniform and not choosable by a client.
impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(first));
    }
}

impl From<&TokenHash> for Key {
    fn from(h: &TokenHash) -> Self {
        let mut k = [0u8; 32];
        k.copy_from_slice(&h.0[..32]);
        Key(k)
    }
}

/// Is a record's token, owner or one of the owner's roles in an
/// invalidation `after_load` says came after the record was read?
fn record_covered(after_load: &impl Fn(Scope) -> bool, r: &TokenRecord) -> bool {
    after_load(Scope::Token(r.id))
        || match &r.ownership {
            crate::model::Ownership::Owner(o) => {
                after_load(Scope::Owner(o.id))
                    || o.role_ids.iter().any(|id| after_load(Scope::Role(*id)))
            }
            _ => false,
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

/// A load in progress and the epoch it began in: only misses in that
/// epoch share it.
struct Flight<V> {
    epoch: u64,
    result: OnceCell<Result<Option<Hit<V>>, LookupError>>,
}

/// The token cache. `V` is what the proxy keeps per token (the record plus
/// anything derived from it); the cache only needs its record.
pub struct TokenCache<V> {
    records: Option<Fifo<Hit<V>>>,
    /// Hashes with no token, and the epoch their load began in.
    absent: Option<Cache<Key, u64, BuildDigestHasher>>,
    inflight: Mutex<HashMap<Key, Arc<Flight<V>>, BuildDigestHasher>>,
    epoch: AtomicU64,
    /// Records loaded in an earlier epoch are stale ([`TokenCache::expire_all`]).
    expired_before: AtomicU64,
    revoked: RwLock<Revoked>,
    born: Instant,
    ttl: Duration,
    stale_if_error: Duration,
    negative_ttl: Duration,
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
        // No TTL in the table: the age and epoch checks in `probe` do its
        // work (an old or revoked record is never served, only replaced,
        // removed or evicted).
        let records = enabled.then(|| Fifo::new(cfg.capacity));
        // Absences are cheap and short-lived; a quarter of the capacity
        // bounds what a flood of unknown keys can occupy.
        let absent = enabled.then(|| {
            Cache::builder()
                .max_capacity((cfg.capacity / 4).max(1024))
                .time_to_live(cfg.negative_ttl)
                .build_with_hasher(BuildDigestHasher::default())
        });
        Self {
            records,
            absent,
            inflight: Mutex::new(HashMap::default()),
            epoch: AtomicU64::new(0),
            expired_before: AtomicU64::new(0),
            born: Instant::now(),
            revoked: RwLock::new(Revoked {
                by_scope: HashMap::new(),
                pruned: Instant::now(),
            }),
            ttl: cfg.ttl,
            stale_if_error: cfg.stale_if_error,
            negative_ttl: cfg.negative_ttl,
            metrics,
        }
    }

    /// Look a presented key up, loading it with `load` on a miss or a
    /// stale entry: [`TokenCache::probe`], then [`TokenCache::resolve`].
    pub async fn get_or_load<F, Fut>(
        &self,
        key: Presented,
        load: F,
    ) -> Result<Option<Hit<V>>, LookupError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, StoreError>>,
    {
        let stale = match self.probe(key.fingerprint).await {
            Probe::Fresh(hit) => return Ok(Some(hit)),
            Probe::Stale(hit) => Some(hit),
            Probe::Missing => None,
        };
        self.resolve(key, stale, load).await
    }

    /// The record cached for a fingerprint, without the key's hash: a
    /// fresh one is a hit (counted), a stale one is for
    /// [`TokenCache::resolve`] to serve if the store cannot answer. A
    /// record an invalidation since its load covers is removed and not
    /// served, even stale.
    pub async fn probe(&self, fingerprint: Fingerprint) -> Probe<V> {
        let Some(records) = &self.records else {
            return Probe::Missing;
        };
        match self.servable(records, &fingerprint) {
            Some(hit) if self.is_fresh(&hit) => {
                self.metrics.cache_hits.inc();
                Probe::Fresh(hit)
            }
            Some(hit) => Probe::Stale(hit),
            None => Probe::Missing,
        }
    }

    /// After a [`Probe`] that found no fresh record: a cached absence of
    /// the hash, else `load` (single flight), whose record is cached under
    /// the fingerprint; `stale` serves while the store cannot answer,
    /// within `cache.stale_if_error`.
    pub async fn resolve<F, Fut>(
        &self,
        key: Presented,
        stale: Option<Hit<V>>,
        load: F,
    ) -> Result<Option<Hit<V>>, LookupError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, StoreError>>,
    {
        let hash = Key::from(&key.hash);
        if stale.is_none() {
            if let Some(absent) = &self.absent {
                if let Some(epoch) = absent.get(&hash).await {
                    if !self.absence_covered(&hash, epoch) {
                        self.metrics.cache_negative_hits.inc();
                        return Ok(None);
                    }
                    absent.invalidate(&hash).await;
                }
            }
        }
        self.metrics.cache_misses.inc();
        match self.load_once(hash, key.fingerprint, load).await {
            Ok(v) => Ok(v),
            Err(LookupError::Unavailable(reason)) => match stale {
                Some(hit) if self.age(&hit) < self.ttl + self.stale_if_error => {
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
    async fn load_once<F, Fut>(
        &self,
        hash: Key,
        fingerprint: Fingerprint,
        load: F,
    ) -> Result<Option<Hit<V>>, LookupError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, StoreError>>,
    {
        let flight = {
            let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            let epoch = self.epoch.load(Ordering::Acquire);
            match map.get(&hash) {
                Some(f) if f.epoch == epoch => f.clone(),
                _ => {
                    let f = Arc::new(Flight {
                        epoch,
                        result: OnceCell::new(),
                    });
                    map.insert(hash, f.clone());
                    f
                }
            }
        };
        let epoch = flight.epoch;
        let result = flight
            .result
            .get_or_init(|| async {
                let r = match load().await {
                    Ok(v) => Ok(v.map(|value| {
                        Arc::new(Cached {
                            value,
                            fetched: self.now(),
                            epoch,
                        })
                    })),
                    Err(e) => Err(LookupError::from(&e)),
                };
                if self.epoch.load(Ordering::Acquire) == epoch {
                    match &r {
                        Ok(Some(hit)) => {
                            if let Some(records) = &self.records {
                                self.count(records.insert(fingerprint, hit.clone()));
                            }
                            if let Some(absent) = &self.absent {
                                absent.invalidate(&hash).await;
                            }
                        }
                        Ok(None) => {
                            if let Some(records) = &self.records {
                                self.count(records.remove(&fingerprint));
                            }
                            if let Some(absent) = &self.absent {
                                absent.insert(hash, epoch).await;
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

    /// Nanoseconds since the cache was made (584 years before it wraps).
    fn now(&self) -> u64 {
        self.born.elapsed().as_nanos() as u64
    }

    fn age(&self, hit: &Cached<V>) -> Duration {
        Duration::from_nanos(self.now().saturating_sub(hit.fetched))
    }

    /// Start a new epoch; returns it.
    fn bump(&self) -> u64 {
        self.epoch.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The cached record for a fingerprint, unless an invalidation since
    /// its load covers it (then it is removed, and not served even stale).
    fn servable(&self, records: &Fifo<Hit<V>>, fingerprint: &Fingerprint) -> Option<Hit<V>> {
        let hit = records.get(fingerprint)?;
        if !self.still_current(&hit) {
            self.count(records.remove(fingerprint));
            return None;
        }
        Some(hit)
    }

    /// Count what the table took out (`authgate_cache_evictions_total`).
    fn count(&self, removed: Removed) {
        for (n, label) in [
            (removed.evicted, "size"),
            (removed.invalidated, "invalidated"),
        ] {
            if n > 0 {
                self.metrics
                    .cache_evictions
                    .with_label_values(&[label])
                    .inc_by(n);
            }
        }
    }

    /// Has no invalidation since this hit was read covered its token, owner
    /// or roles (or everything)? Every token event names the token by id,
    /// so no hash is needed: asked of every cached record before it is
    /// served, and of what outlives a request, such as a WebSocket tunnel.
    pub fn still_current(&self, hit: &Cached<V>) -> bool {
        let revoked = self.revoked.read().unwrap_or_else(|p| p.into_inner());
        let revoked = &revoked.by_scope;
        let after_load = |scope| revoked.get(&scope).is_some_and(|(e, _)| *e > hit.epoch);
        revoked.is_empty()
            || !(after_load(Scope::All) || record_covered(&after_load, hit.value.as_ref()))
    }

    /// Does an invalidation after `epoch` cover the absence of `hash`?
    fn absence_covered(&self, hash: &Key, epoch: u64) -> bool {
        let revoked = self.revoked.read().unwrap_or_else(|p| p.into_inner());
        let revoked = &revoked.by_scope;
        let after_load = |scope| revoked.get(&scope).is_some_and(|(e, _)| *e > epoch);
        !revoked.is_empty() && (after_load(Scope::All) || after_load(Scope::Hash(*hash)))
    }

    /// The invalidation epoch now: every invalidation after this moment,
    /// of whatever scope, changes it.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Is this hit younger than the TTL, and loaded since the last
    /// [`TokenCache::expire_all`] (servable without the store)?
    pub fn is_fresh(&self, hit: &Cached<V>) -> bool {
        self.age(hit) < self.ttl && hit.epoch >= self.expired_before.load(Ordering::Acquire)
    }

    /// Does this cache hold records at all (`cache.capacity` > 0)?
    pub fn is_enabled(&self) -> bool {
        self.records.is_some()
    }

    /// Forget a token (e.g. deleted, regenerated, its permissions
    /// changed): every record of it, whatever key it was found by, and,
    /// when the event names its hash, a cached absence of that hash (the
    /// token is new).
    pub async fn invalidate_token(&self, id: i64, hash: Option<&TokenHash>) {
        if let Some(hash) = hash {
            let hash = &Key::from(hash);
            self.revoke(Scope::Hash(*hash));
            if let Some(c) = &self.absent {
                c.invalidate(hash).await;
            }
        }
        self.revoke(Scope::Token(id));
    }

    /// Note an invalidation, and prune notes that can no longer cover a
    /// servable entry (records loaded before them are never served).
    fn revoke(&self, scope: Scope) {
        let mut revoked = self.revoked.write().unwrap_or_else(|p| p.into_inner());
        let epoch = self.bump();
        let now = Instant::now();
        if now.duration_since(revoked.pruned) >= Duration::from_secs(1) {
            // No record older than ttl + stale_if_error is served, no
            // absence older than negative_ttl.
            let horizon = (self.ttl + self.stale_if_error).max(self.negative_ttl);
            revoked
                .by_scope
                .retain(|_, (_, at)| now.duration_since(*at) <= horizon);
            revoked.pruned = now;
        }
        revoked.by_scope.insert(scope, (epoch, now));
    }

    /// Forget every token of an owner (status, roles or email changed).
    pub fn invalidate_owner(&self, user_id: i64) {
        self.revoke(Scope::Owner(user_id));
    }

    /// Forget every token whose owner holds a role (its permissions changed).
    pub fn invalidate_role(&self, role_id: i64) {
        self.revoke(Scope::Role(role_id));
    }

    /// Invalidations currently remembered (tests).
    pub fn revocations_held(&self) -> usize {
        let revoked = self.revoked.read().unwrap_or_else(|p| p.into_inner());
        revoked.by_scope.len()
    }

    /// Forget everything (e.g. after the listener missed events).
    pub fn invalidate_all(&self) {
        self.revoke(Scope::All);
        if let Some(c) = &self.records {
            self.count(c.clear());
        }
        if let Some(c) = &self.absent {
            c.invalidate_all();
        }
    }

    /// Make every record stale and forget every absence, after the
    /// listener missed events (a reconnect, a failover): each record is
    /// read again on its next use, but still served stale, within
    /// `cache.stale_if_error`, while the store cannot be read, as it was
    /// during the outage; unlike [`TokenCache::invalidate_all`], which
    /// removes them (an `all` event: everything changed).
    pub fn expire_all(&self) {
        let epoch = self.bump();
        self.expired_before.store(epoch, Ordering::Release);
        if let Some(c) = &self.absent {
            c.invalidate_all();
        }
    }

    /// Records currently held (approximate; for the gauge).
    pub fn entry_count(&self) -> u64 {
        self.records.as_ref().map_or(0, Fifo::len)
    }

    /// Let moka apply pending maintenance to absences (tests and the
    /// metrics gauge; the records' table has none pending).
    pub async fn run_pending_tasks(&self) {
        if let Some(c) = &self.absent {
            c.run_pending_tasks().await;
        }
    }

    /// Is a record cached for a fingerprint? (tests)
    pub async fn holds(&self, fingerprint: Fingerprint) -> bool {
        match &self.records {
            Some(c) => self.servable(c, &fingerprint).is_some(),
            None => false,
        }
    }
}

mod fifo;

#[cfg(test)]
mod tests;
