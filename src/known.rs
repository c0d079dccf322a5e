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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::token::{BuildDigestHasher, TokenHash};

/// Unknown hashes per second that are still looked up.
pub const MISS_BUDGET: u32 = 100;

/// Unknown hashes per second that wait for the next poll (a polled set).
/// Each holds its connection for up to one interval, so this is small: a
/// flood of made-up keys keeps almost all of its connections answered from
/// memory at once, and a genuine new key (outside a flood) always waits
/// for the poll that finds it.
pub const WAIT_BUDGET: u32 = 20;

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

/// The poller's side: which polls started and finished, and when the
/// last one succeeded.
struct Polls {
    /// Number of the last poll started (0: none yet).
    started: AtomicU64,
    /// Number of the last poll finished, successfully or not.
    done: tokio::sync::watch::Sender<u64>,
    /// Number of the last poll that succeeded.
    ok: AtomicU64,
    /// When the last successful poll started; the set is trusted while
    /// this is within `fresh_for`.
    ok_at: Mutex<Option<Instant>>,
    fresh_for: Mutex<Duration>,
}

/// Prefixes of every issued hash, kept current by invalidation events or
/// by the change poller.
pub struct KnownHashes {
    set: RwLock<PrefixSet>,
    /// Trusted because the listener hears every new token.
    ready: AtomicBool,
    budget: Mutex<(Instant, u32)>,
    polls: Polls,
    /// Prefixes the poller saw leave the set (deleted or regenerated
    /// tokens): refused at once rather than waiting for a poll. Bounded.
    gone: RwLock<HashSet<Prefix, BuildDigestHasher>>,
    /// Bumped by [`KnownHashes::insert`], so a waiter hears a NOTIFY.
    inserted: tokio::sync::watch::Sender<u64>,
    /// Hashes announced since the running poll began (only while a poller
    /// runs): its snapshot may predate them, so the set it installs keeps
    /// them.
    announced: Mutex<Vec<Prefix>>,
}

/// Most prefixes remembered as gone; beyond, the memory starts over.
const MAX_GONE: usize = 100_000;

impl Default for KnownHashes {
    fn default() -> Self {
        Self {
            set: RwLock::new(PrefixSet::default()),
            ready: AtomicBool::new(false),
            budget: Mutex::new((Instant::now(), 0)),
            polls: Polls {
                started: AtomicU64::new(0),
                done: tokio::sync::watch::channel(0).0,
                ok: AtomicU64::new(0),
                ok_at: Mutex::new(None),
                fresh_for: Mutex::new(Duration::ZERO),
            },
            gone: RwLock::new(HashSet::default()),
            inserted: tokio::sync::watch::channel(0).0,
            announced: Mutex::new(Vec::new()),
        }
    }
}

/// What [`KnownHashes::check`] says about a hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Look it up (known, or the set is not trusted, or within the budget).
    LookUp,
    /// Never issued: refuse from memory.
    Unknown,
    /// Unknown to a polled set: ask again after the next poll starting
    /// after now ([`KnownHashes::after_next_poll`]).
    WaitForPoll,
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

    /// Stop trusting announcements (the listener lost its connection, or
    /// the database does not announce new tokens). A polled set stays
    /// trusted while its polls succeed.
    pub fn distrust(&self) {
        self.ready.store(false, Ordering::Release);
    }

    /// Is the set trusted (by announcements or by recent polls)?
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) || self.polled_recently()
    }

    fn polled_recently(&self) -> bool {
        let fresh_for = *self
            .polls
            .fresh_for
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        self.polls
            .ok_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed() <= fresh_for)
    }

    /// A poll is starting: returns its number for [`KnownHashes::poll_done`].
    /// Polls are numbered in order and never overlap.
    pub fn poll_started(&self) -> u64 {
        self.announced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.polls.started.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Poll `n` finished. `ok`: its view of the tokens is in the set (with
    /// [`KnownHashes::replace_polled`] when they changed), and the set is
    /// trusted for `fresh_for` from the poll's start.
    pub fn poll_done(&self, n: u64, started_at: Instant, ok: bool, fresh_for: Duration) {
        if ok {
            *self
                .polls
                .fresh_for
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = fresh_for;
            *self.polls.ok_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(started_at);
            self.polls.ok.fetch_max(n, Ordering::AcqRel);
        }
        self.polls.done.send_replace(n);
    }

    /// Replace the prefixes with a full load by the poller, without
    /// changing whether announcements are trusted.
    pub fn replace_polled(&self, loaded: Loading) {
        let mut sorted = loaded.0;
        sorted.sort_unstable();
        sorted.dedup();
        sorted.shrink_to_fit();
        let mut polled = PrefixSet {
            sorted,
            recent: HashSet::default(),
        };
        let old = {
            // Under the set's lock, so no announcement falls in between.
            let mut set = self.set.write().unwrap_or_else(|p| p.into_inner());
            let announced = self.announced.lock().unwrap_or_else(|p| p.into_inner());
            for p in announced.iter() {
                polled.insert(*p);
            }
            std::mem::replace(&mut *set, polled)
        };
        let set = self.set.read().unwrap_or_else(|p| p.into_inner());
        let left: Vec<Prefix> = old
            .sorted
            .iter()
            .chain(old.recent.iter())
            .copied()
            .filter(|p| !set.contains(*p))
            .collect();
        drop(set);
        if !left.is_empty() {
            let mut gone = self.gone.write().unwrap_or_else(|p| p.into_inner());
            if gone.len() + left.len() > MAX_GONE {
                gone.clear();
            }
            gone.extend(left);
        }
    }

    /// Is this hash in the set now?
    pub fn contains(&self, h: &TokenHash) -> bool {
        self.set
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(prefix(h))
    }

    /// Wait (at most `limit`) until a poll that started after this call
    /// has finished; then is the hash known? `true` also when no such poll
    /// came in time (the caller looks the key up: fail towards a lookup,
    /// never towards refusing a real key).
    pub async fn after_next_poll(&self, h: &TokenHash, limit: Duration) -> bool {
        let target = self.polls.started.load(Ordering::Acquire) + 1;
        let mut done = self.polls.done.subscribe();
        let mut inserted = self.inserted.subscribe();
        let wait = async {
            loop {
                tokio::select! {
                    r = done.wait_for(|d| *d >= target) => return r.is_ok(),
                    // A NOTIFY announced a token: is it this one?
                    r = inserted.changed() => {
                        if r.is_err() || self.contains(h) {
                            return true;
                        }
                    }
                }
            }
        };
        let reached = tokio::time::timeout(limit, wait).await.unwrap_or(false);
        if self.contains(h) {
            return true;
        }
        match reached {
            true if self.polls.ok.load(Ordering::Acquire) >= target => false,
            // The poll failed, or none came: look it up.
            _ => true,
        }
    }

    /// [`KnownHashes::check`], waiting for the next poll when it says so
    /// (at most as long as a polled set stays trusted): what the request
    /// path calls.
    pub async fn admits_fresh(&self, h: &TokenHash) -> bool {
        match self.check(h) {
            Verdict::LookUp => true,
            Verdict::Unknown => false,
            Verdict::WaitForPoll => {
                let limit = *self
                    .polls
                    .fresh_for
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                self.after_next_poll(h, limit).await
            }
        }
    }

    fn take_budget(&self, per_second: u32) -> bool {
        let mut b = self.budget.lock().unwrap_or_else(|p| p.into_inner());
        if b.0.elapsed() >= Duration::from_secs(1) {
            *b = (Instant::now(), 0);
        }
        if b.1 < per_second {
            b.1 += 1;
            return true;
        }
        false
    }

    /// Should a lookup be made for this hash, should it be refused, or
    /// should it wait for the next poll?
    pub fn check(&self, h: &TokenHash) -> Verdict {
        if self.contains(h) {
            return Verdict::LookUp;
        }
        if self
            .gone
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&prefix(h))
        {
            // Deleted or regenerated since a poll saw it: no wait.
            if self.is_ready() {
                return Verdict::Unknown;
            }
        }
        if self.polled_recently() {
            // A poll will show a key created since the last one, at no
            // cost per key.
            return if self.take_budget(WAIT_BUDGET) {
                Verdict::WaitForPoll
            } else {
                Verdict::Unknown
            };
        }
        if self.ready.load(Ordering::Acquire) {
            // Announced, no poller: only the NOTIFY window can hide a new
            // key; look a budget of them up.
            return if self.take_budget(MISS_BUDGET) {
                Verdict::LookUp
            } else {
                Verdict::Unknown
            };
        }
        Verdict::LookUp
    }

    /// A token with this hash was written.
    pub fn insert(&self, h: &TokenHash) {
        let p = prefix(h);
        let mut set = self.set.write().unwrap_or_else(|p| p.into_inner());
        set.insert(p);
        if self.polls.started.load(Ordering::Acquire) > 0 {
            self.announced
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(p);
        }
        drop(set);
        self.inserted.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn len(&self) -> usize {
        self.set.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Should a lookup be made for this hash? (Never waits: a hash that
    /// would wait for a poll counts as a lookup.)
    pub fn admits(&self, h: &TokenHash) -> bool {
        self.check(h) != Verdict::Unknown
    }
}

#[cfg(test)]
mod tests;
