//! The set of issued token hashes, so a flood of made-up keys never reaches
//! the database.
//!
//! Every well-formed key is hashed and looked up; a random key misses the
//! cache every time (each is different), so without this set each one would
//! cost a query. The invalidation listener loads the prefixes of every
//! stored hash when it connects, and adds the hash of every token event it
//! hears afterwards (inserts and regenerations carry the new hash). A hash
//! whose prefix is not in the set is refused without a lookup.
//!
//! The set is a superset of the live hashes: deletions are not removed (a
//! stale prefix only costs a lookup), and it is reloaded on every reconnect.
//! Only 8 bytes of each 64-byte hash are kept (about 18 bytes a token with
//! the table's overhead): a false positive, one in 2^64 / n, just costs a
//! lookup. While the listener is down the set is not trusted and
//! every key is looked up. A token used in the few milliseconds between its
//! creation and its NOTIFY reaching this replica would look unknown, so a
//! small budget of unknown hashes (`MISS_BUDGET` per second) still goes to
//! the database: a genuine new key works at once, a flood is refused from
//! memory.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::token::{BuildDigestHasher, TokenHash};

/// Unknown hashes per second that are still looked up.
pub const MISS_BUDGET: u32 = 100;

type Prefix = u64;

/// Prefixes are HMAC outputs: their own hash (see [`BuildDigestHasher`]).
type PrefixSet = HashSet<Prefix, BuildDigestHasher>;

/// A full set of issued hashes being loaded, to be installed with
/// [`KnownHashes::replace`]. Only the prefixes are kept, so loading a
/// million tokens never holds a million full hashes.
#[derive(Default)]
pub struct Loading(PrefixSet);

impl Loading {
    pub fn add(&mut self, h: &TokenHash) {
        self.0.insert(prefix(h));
    }
}

fn prefix(h: &TokenHash) -> Prefix {
    let mut p = [0u8; 8];
    p.copy_from_slice(&h.0[..8]);
    u64::from_le_bytes(p)
}

/// Prefixes of every issued hash, kept current by invalidation events.
pub struct KnownHashes {
    set: RwLock<PrefixSet>,
    ready: AtomicBool,
    budget: Mutex<(Instant, u32)>,
}

impl Default for KnownHashes {
    fn default() -> Self {
        Self {
            set: RwLock::new(PrefixSet::default()),
            ready: AtomicBool::new(false),
            budget: Mutex::new((Instant::now(), 0)),
        }
    }
}

impl KnownHashes {
    /// Replace the set with a full load and start trusting it.
    pub fn replace(&self, loaded: Loading) {
        *self.set.write().unwrap_or_else(|p| p.into_inner()) = loaded.0;
        self.ready.store(true, Ordering::Release);
    }

    /// Stop trusting the set (the listener lost its connection).
    pub fn distrust(&self) {
        self.ready.store(false, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// A token with this hash was written.
    pub fn insert(&self, h: &TokenHash) {
        self.set
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(prefix(h));
    }

    pub fn len(&self) -> usize {
        self.set.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Should a lookup be made for this hash?
    pub fn admits(&self, h: &TokenHash) -> bool {
        if !self.is_ready()
            || self
                .set
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&prefix(h))
        {
            return true;
        }
        let mut b = self.budget.lock().unwrap_or_else(|p| p.into_inner());
        if b.0.elapsed() >= Duration::from_secs(1) {
            *b = (Instant::now(), 0);
        }
        if b.1 < MISS_BUDGET {
            b.1 += 1;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u8) -> TokenHash {
        TokenHash([n; 64])
    }

    #[test]
    fn admits_known_and_a_budget_of_unknown() {
        let k = KnownHashes::default();
        assert!(k.admits(&h(9)), "not loaded yet: everything is looked up");
        let mut loading = Loading::default();
        loading.add(&h(1));
        loading.add(&h(2));
        k.replace(loading);
        assert!(k.admits(&h(1)) && k.admits(&h(2)));
        let admitted = (0..1000u32)
            .filter(|i| k.admits(&h((i % 200) as u8 + 50)))
            .count();
        assert_eq!(
            admitted, MISS_BUDGET as usize,
            "only the budget of unknown hashes is looked up"
        );
        k.insert(&h(3));
        assert!(k.admits(&h(3)), "an inserted hash is known");
        k.distrust();
        assert!(k.admits(&h(200)), "not trusted while the listener is down");
    }
}
