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
//! Only 8 bytes of each 64-byte hash are kept, in a sorted array (8 bytes a
//! token; a hash set would take about 19) plus a small hash set of the ones
//! added since, merged in when it grows: a false positive, one in 2^64 / n,
//! just costs a lookup. While the listener is down the set is not trusted and
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

/// The prefixes: a sorted array from the last full load or merge, and the
/// ones added since (HMAC outputs, their own hash: see [`BuildDigestHasher`]).
#[derive(Default)]
struct PrefixSet {
    sorted: Vec<Prefix>,
    recent: HashSet<Prefix, BuildDigestHasher>,
}

impl PrefixSet {
    fn contains(&self, p: Prefix) -> bool {
        self.recent.contains(&p) || self.sorted.binary_search(&p).is_ok()
    }

    /// Merge the recent ones into the array once they are 1/32 of it, so
    /// inserts stay amortised O(1) and the hash set small.
    fn insert(&mut self, p: Prefix) {
        if self.contains(p) {
            return;
        }
        self.recent.insert(p);
        if self.recent.len() > (self.sorted.len() / 32).max(1024) {
            self.sorted.extend(self.recent.drain());
            self.sorted.sort_unstable();
        }
    }

    fn len(&self) -> usize {
        self.sorted.len() + self.recent.len()
    }
}

/// A full set of issued hashes being loaded, to be installed with
/// [`KnownHashes::replace`]. Only the prefixes are kept, so loading a
/// million tokens never holds a million full hashes.
#[derive(Default)]
pub struct Loading(Vec<Prefix>);

impl Loading {
    pub fn add(&mut self, h: &TokenHash) {
        self.0.push(prefix(h));
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
        let mut sorted = loaded.0;
        sorted.sort_unstable();
        sorted.dedup();
        sorted.shrink_to_fit();
        let set = PrefixSet {
            sorted,
            recent: HashSet::default(),
        };
        *self.set.write().unwrap_or_else(|p| p.into_inner()) = set;
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
                .contains(prefix(h))
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

    #[test]
    fn inserts_merge_into_the_sorted_array() {
        let prefixes: Vec<u64> = (0..5000u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        let mut set = PrefixSet::default();
        for (i, p) in prefixes.iter().enumerate() {
            set.insert(*p);
            set.insert(*p);
            assert_eq!(set.len(), i + 1, "a repeated insert is not counted twice");
        }
        assert!(!set.sorted.is_empty(), "merged at least once");
        assert!(
            set.sorted.windows(2).all(|w| w[0] < w[1]),
            "sorted, no duplicates"
        );
        assert!(prefixes.iter().all(|p| set.contains(*p)));
        assert!(!set.contains(1), "absent value");
    }
}
