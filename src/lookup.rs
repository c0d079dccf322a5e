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
//! One component, built by `server` from the parts it shares with the
//! background tasks (the cache and the known-hash set are kept current by
//! invalidation events and the strapi5 poller). The proxy holds only this:
//! it asks for a key and gets a record, an absence or a [`LookupError`],
//! never SQL.

use std::sync::Arc;
use std::time::Instant;

use crate::cache::{Hit, LookupError, Resolved, TokenCache};
use crate::known::KnownHashes;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use crate::token::{Hasher, TokenHash};

/// Known hashes, cache and store, in that order.
pub struct Lookup {
    hasher: Hasher,
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
            known,
            cache,
            store,
            metrics,
        }
    }

    /// The token a well-formed key belongs to: `Ok(None)` when there is
    /// none (a hash never issued is refused from memory, an absence may be
    /// cached), an error when the store cannot say (and no stale record may
    /// stand in).
    pub async fn find(&self, key: &[u8]) -> Result<Option<Hit<Resolved>>, LookupError> {
        let hash = self.hasher.hash(key);
        if !self.known.admits_fresh(&hash).await {
            return Ok(None);
        }
        self.cache.get_or_load(hash, || self.load(hash)).await
    }

    /// A cache miss: one store query, timed and counted.
    async fn load(&self, hash: TokenHash) -> Result<Option<Resolved>, StoreError> {
        let started = Instant::now();
        let r = self.store.find_token(&hash.to_hex()).await;
        self.metrics
            .hot
            .store_find
            .observe(started.elapsed().as_secs_f64());
        if r.is_err() {
            self.metrics.hot.store_find_errors.inc();
        }
        r.map(|found| found.map(Resolved::new))
    }
}

#[cfg(test)]
mod tests;
