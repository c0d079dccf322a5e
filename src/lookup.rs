//! The look-up phase: from a presented key to the facts about its token.
//!
//! ```text
//! key ─► HMAC hash (token::Hasher) ─► known hashes? ─no─► absent, from memory
//!                                          │ yes (or the set is not trusted)
//!                                          ▼
//!                              cache (fresh hit | negative hit)
//!                                          │ miss or stale
//!                                          ▼
//!                    store (breaker: fails fast while Postgres is down)
//! ```
//!
//! In front of all that, each client connection remembers the key it sent
//! last ([`Recent`]): not the key, but a keyed 128-bit fingerprint of it
//! (SipHash-1-3 under two random per-process keys), with the record the
//! full lookup found. A client that sends the same key again on the same
//! connection (the usual API client on keep-alive) skips the HMAC and the
//! cache; any invalidation anywhere, and the record's TTL, end the
//! memory, so it never answers what the cache would not. Nobody can make
//! a different key match a remembered fingerprint without the process's
//! random keys, and it would only ever stand for a key sent before on the
//! same connection.
//!
//! One component, built by `server` from the parts it shares with the
//! background tasks (the cache and the known-hash set are kept current by
//! invalidation events and the strapi5 poller). The proxy holds only this:
//! it asks for a key and gets a record, an absence or a [`LookupError`],
//! never SQL.

use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::cache::{Hit, LookupError, Resolved, TokenCache};
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
        let mut span = parent.child("authgate.lookup", Kind::Internal);
        let hash = self.hasher.hash(key);
        if !self.known.admits_fresh(&hash).await {
            span.set_attr(attr::LOOKUP_SOURCE, "known_hashes");
            parent.end_child(span);
            return Ok(None);
        }
        let mut loaded = false;
        let found = self
            .cache
            .get_or_load(hash, || {
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
        if !self.cache.is_enabled() {
            return self.find(key, parent).await;
        }
        let fingerprint = self.fingerprints.of(key);
        let epoch = self.cache.epoch();
        if let Some(hit) = recent.get(fingerprint, epoch) {
            if self.cache.is_fresh(&hit) {
                self.metrics.cache_hits.inc();
                return Ok(Some(hit));
            }
        }
        // The epoch read before the lookup: an invalidation during it makes
        // what it found unfit to remember.
        let found = self.find(key, parent).await?;
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

/// A keyed 128-bit fingerprint of a key: two SipHash-1-3 states under
/// random keys drawn at start. Never stored with the key, never the key.
#[derive(Default)]
struct Fingerprints([std::collections::hash_map::RandomState; 2]);

impl Fingerprints {
    fn of(&self, key: &[u8]) -> u128 {
        let [a, b] = &self.0;
        (u128::from(a.hash_one(key)) << 64) | u128::from(b.hash_one(key))
    }
}

/// What one client connection remembers of the key it sent last.
#[derive(Default)]
pub struct Recent(Mutex<Option<Remembered>>);

struct Remembered {
    fingerprint: u128,
    hit: Hit<Resolved>,
    /// The cache's invalidation epoch when the lookup began.
    epoch: u64,
}

impl Recent {
    /// The remembered record, if it was for this fingerprint and no
    /// invalidation came since.
    fn get(&self, fingerprint: u128, epoch: u64) -> Option<Hit<Resolved>> {
        let r = self.0.lock().unwrap_or_else(|p| p.into_inner());
        r.as_ref()
            .filter(|r| r.fingerprint == fingerprint && r.epoch == epoch)
            .map(|r| r.hit.clone())
    }

    fn set(&self, fingerprint: u128, hit: Hit<Resolved>, epoch: u64) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(Remembered {
            fingerprint,
            hit,
            epoch,
        });
    }
}

#[cfg(test)]
mod tests;
