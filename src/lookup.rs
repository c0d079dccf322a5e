//! The look-up phase: from a presented key to the facts about its token.
//!
//! ```text
//! key ─► fingerprint ─► the connection's last key? ─► cache by fingerprint (fresh hit)
//!                                                          │ miss or stale
//!                                                          ▼
//!        HMAC hash (token::Hasher) ─► known hashes? ─no─► absent, from memory
//!                                          │ yes (or the set is not trusted)
//!                                          ▼
//!                              cache: negative hit by hash
//!                                          │ miss
//!                                          ▼
//!                    store (breaker: fails fast while Postgres is down)
//! ```
//!
//! A key is first known by its [`Fingerprint`]: a keyed 128-bit
//! SipHash-1-3 of it under a random per-process key (for a 256-character
//! key about 740 instructions, where the HMAC-SHA512 takes about 17,500:
//! BENCHMARKS.md). It is never stored with the key and never is
//! the key; nobody can make a different key match one without the
//! process's random key. A cached record is found by it, so a hit costs
//! no HMAC; the HMAC is computed only when the cache has no fresh record
//! (a miss, a stale record, a made-up key), for the known-hash set and the
//! store. A record found by fingerprint is revoked like any other: it is
//! covered by its token's id, which every invalidation names
//! (`cache::TokenCache::invalidate_token`).
//!
//! In front of the cache, each client connection remembers the key it
//! sent last ([`Recent`]): its fingerprint, with the record the lookup
//! found. A client that sends the same key again on the same connection
//! (the usual API client on keep-alive) skips the cache too; any
//! invalidation anywhere, and the record's TTL, end the memory, so it
//! never answers what the cache would not.
//!
//! One component, built by `server` from the parts it shares with the
//! background tasks (the cache and the known-hash set are kept current by
//! invalidation events and the strapi5 poller). The proxy holds only this:
//! it asks for a key and gets a record, an absence or a [`LookupError`],
//! never SQL.

use std::hash::{BuildHasher, Hasher as _};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use siphasher::sip128::{Hasher128, SipHasher13};

use crate::cache::{Fingerprint, Hit, LookupError, Presented, Probe, Resolved, TokenCache};
use crate::known::KnownHashes;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use crate::token::{Hasher, TokenHash};
use crate::trace::{attr, Kind, Span};

/// Known hashes, cache and store, in that order.
pub struct Lookup {
    hasher: Hasher,
    fingerprints: Fingerprints,
    known: Arc<KnownHashes>,
    cache: Arc<TokenCache<Resolved>>,
    store: Store,
    metrics: Metrics,
}

impl Lookup {
    pub fn new(
        hasher: Hasher,
        known: Arc<KnownHashes>,
        cache: Arc<TokenCache<Resolved>>,
        store: Store,
        metrics: Metrics,
    ) -> Self {
        Self {
            hasher,
            fingerprints: Fingerprints::default(),
            known,
            cache,
            store,
            metrics,
        }
    }

    /// Is a record found earlier still what the store holds, as far as
    /// the invalidations since say? (A WebSocket tunnel asks, every second.)
    pub fn still_current(&self, hit: &Hit<Resolved>) -> bool {
        self.cache.still_current(hit)
    }

    /// The token a well-formed key belongs to: `Ok(None)` when there is
    /// none (a hash never issued is refused from memory, an absence may be
    /// cached), an error when the store cannot say (and no stale record may
    /// stand in).
    ///
    /// `parent` is the request's span: a look-up the cache could not answer
    /// (a hash refused as never issued, or a miss that went to the store)
    /// ends under it as an `authgate.lookup` span, with the store query as
    /// its child; one the cache answered leaves no span.
    pub async fn find(
        &self,
        key: &[u8],
        parent: &mut Span,
    ) -> Result<Option<Hit<Resolved>>, LookupError> {
        let fingerprint = self.fingerprints.of(key);
        self.find_by(fingerprint, key, parent).await
    }

    /// [`Lookup::find`], the fingerprint made.
    async fn find_by(
        &self,
        fingerprint: Fingerprint,
        key: &[u8],
        parent: &mut Span,
    ) -> Result<Option<Hit<Resolved>>, LookupError> {
        let stale = match self.cache.probe(fingerprint).await {
            Probe::Fresh(hit) => return Ok(Some(hit)),
            Probe::Stale(hit) => Some(hit),
            Probe::Missing => None,
        };
        let mut span = parent.child("authgate.lookup", Kind::Internal);
        let hash = self.hasher.hash(key);
        if !self.known.admits_fresh(&hash).await {
            span.set_attr(attr::LOOKUP_SOURCE, "known_hashes");
            parent.end_child(span);
            return Ok(None);
        }
        let mut loaded = false;
        let presented = Presented { fingerprint, hash };
        let found = self
            .cache
            .resolve(presented, stale, || {
                loaded = true;
                self.load(hash, &mut span)
            })
            .await;
        if loaded {
            span.set_attr(attr::LOOKUP_SOURCE, "store");
            if let Err(e) = &found {
                let kind = match e {
                    LookupError::Unavailable(_) => "store_unavailable",
                    LookupError::Failed(_) => "store_error",
                };
                span.set_error(kind, "the token store could not answer");
            }
            parent.end_child(span);
        }
        found
    }

    /// [`Lookup::find`], first asking what this client connection
    /// remembers of the key it sent last.
    pub async fn find_on(
        &self,
        recent: &Recent,
        key: &[u8],
        parent: &mut Span,
    ) -> Result<Option<Hit<Resolved>>, LookupError> {
        let fingerprint = self.fingerprints.of(key);
        if !self.cache.is_enabled() {
            return self.find_by(fingerprint, key, parent).await;
        }
        let epoch = self.cache.epoch();
        if let Some(hit) = recent.get(fingerprint, epoch) {
            if self.cache.is_fresh(&hit) {
                self.metrics.cache_hits.inc();
                return Ok(Some(hit));
            }
        }
        // The epoch read before the lookup: an invalidation during it makes
        // what it found unfit to remember.
        let found = self.find_by(fingerprint, key, parent).await?;
        if let Some(hit) = &found {
            if self.cache.is_fresh(hit) {
                recent.set(fingerprint, hit.clone(), epoch);
            }
        }
        Ok(found)
    }

    /// A cache miss: one store query, timed, counted and (under `lookup`)
    /// traced.
    async fn load(
        &self,
        hash: TokenHash,
        lookup: &mut Span,
    ) -> Result<Option<Resolved>, StoreError> {
        let mut query = lookup.child("find_token", Kind::Client);
        query.set_attr(attr::DB_SYSTEM_NAME, "postgresql");
        query.set_attr(attr::DB_OPERATION_NAME, "find_token");
        let started = Instant::now();
        let r = self.store.find_token(&hash.to_hex()).await;
        self.metrics
            .hot
            .store_find
            .observe(started.elapsed().as_secs_f64());
        if r.is_err() {
            self.metrics.hot.store_find_errors.inc();
            query.set_error("store_error", "the token query failed");
        }
        lookup.end_child(query);
        r.map(|found| found.map(Resolved::new))
    }
}

/// Keyed 128-bit fingerprints of keys: SipHash-1-3 with 128-bit output
/// under a 128-bit key drawn at start. Never stored with the key, never
/// the key.
struct Fingerprints {
    k0: u64,
    k1: u64,
}

impl Default for Fingerprints {
    /// The key comes from two of std's `RandomState`s, each seeded from
    /// the operating system's random source once per process (and
    /// infallible where `getrandom` is not): what one hashes is a PRF
    /// output under that random seed.
    fn default() -> Self {
        let (a, b) = (
            std::collections::hash_map::RandomState::new(),
            std::collections::hash_map::RandomState::new(),
        );
        Self {
            k0: a.hash_one(0x6175_7468_6761_7465_u64),
            k1: b.hash_one(0x6669_6e67_6572_7072_u64),
        }
    }
}

impl Fingerprints {
    fn of(&self, key: &[u8]) -> Fingerprint {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        h.write(key);
        Fingerprint(h.finish128().as_u128())
    }
}

/// What one client connection remembers of the key it sent last.
#[derive(Default)]
pub struct Recent(Mutex<Option<Remembered>>);

struct Remembered {
    fingerprint: Fingerprint,
    hit: Hit<Resolved>,
    /// The cache's invalidation epoch when the lookup began.
    epoch: u64,
}

impl Recent {
    /// The remembered record, if it was for this fingerprint and no
    /// invalidation came since.
    fn get(&self, fingerprint: Fingerprint, epoch: u64) -> Option<Hit<Resolved>> {
        let r = self.0.lock().unwrap_or_else(|p| p.into_inner());
        r.as_ref()
            .filter(|r| r.fingerprint == fingerprint && r.epoch == epoch)
            .map(|r| r.hit.clone())
    }

    fn set(&self, fingerprint: Fingerprint, hit: Hit<Resolved>, epoch: u64) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(Remembered {
            fingerprint,
            hit,
            epoch,
        });
    }
}

#[cfg(test)]
mod tests;
