//! The table that holds cached records: S3-FIFO in shards, a few dozen
//! bytes an entry where moka's bookkeeping took about 380.
//!
//! Why not moka: with a million tokens cached, moka's per-entry structures
//! (the key's `Arc`, entry info with timestamps and weight, an
//! access-order deque node, a hash-table bucket) outweighed the record
//! itself three to one (BENCHMARKS.md, "Memory"). Here an entry is one
//! 32-byte slot in a vector (the fingerprint, the value, a 2-bit use
//! count), a `u32` in a hash table of slot numbers and a `u32` in a FIFO
//! queue; an evicted entry leaves an 8-byte ghost for a while.
//!
//! The policy is S3-FIFO (Yang et al., SOSP 2023): new entries go to a
//! small FIFO (a tenth of the capacity); one used again while there moves
//! to the main FIFO when it reaches the small queue's end, the others leave
//! and are remembered as ghosts; an entry whose ghost is remembered goes
//! straight to the main FIFO. The main FIFO gives an entry that was used
//! since it last passed another round (CLOCK). So one-hit wonders (a scan,
//! a flood of new keys) pass through the small queue without displacing
//! what is used, and a popular entry costs no list surgery on a hit: a hit
//! only bumps its count. `bench/cache_sim.rs` compares its hit rates with
//! moka's on a Zipf workload and on one with scans.
//!
//! Shards (by the fingerprint's high bits), each behind its own mutex,
//! held for a lookup or an insert only. Keys are fingerprints: keyed PRF
//! outputs, uniform and not choosable, so their bits are their hash.

use std::collections::VecDeque;
use std::sync::Mutex;

use hashbrown::HashTable;

use super::Fingerprint;

/// Most shards; fewer for a small capacity (each keeps at least ~1,000).
const MAX_SHARDS: usize = 64;
/// The highest use count kept (two bits' worth, as in S3-FIFO).
const MAX_FREQ: u8 = 3;

/// A sharded S3-FIFO table from fingerprints to values.
pub(super) struct Fifo<V> {
    shards: Box<[Mutex<Shard<V>>]>,
    /// `shards.len() - 1` (a power of two).
    mask: usize,
}

/// What an insert or a removal took out, for the eviction counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Removed {
    /// Evicted to make room.
    pub evicted: u64,
    /// Removed on request.
    pub invalidated: u64,
}

struct Slot<V> {
    fingerprint: Fingerprint,
    /// `None`: removed, waiting to leave its queue before reuse.
    value: Option<V>,
    freq: u8,
}

struct Shard<V> {
    /// Slot numbers of live entries, by fingerprint.
    index: HashTable<u32>,
    slots: Vec<Slot<V>>,
    /// Slots out of every queue, to reuse.
    free: Vec<u32>,
    small: VecDeque<u32>,
    main: VecDeque<u32>,
    /// Fingerprints (their low 64 bits) of entries evicted from the small
    /// queue, oldest first, and the same as a set.
    ghosts: VecDeque<u64>,
    ghost_set: HashTable<u64>,
    capacity: usize,
    small_capacity: usize,
    /// The main queue's share (and the most ghosts remembered).
    main_capacity: usize,
    live: usize,
}

fn hash(f: &Fingerprint) -> u64 {
    f.0 as u64
}

impl<V: Clone> Fifo<V> {
    /// A table of at most about `capacity` entries (each shard holds its
    /// share, rounded up).
    pub fn new(capacity: u64) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX).max(1);
        // The largest power of two at most capacity / 1024, within 1..=64.
        let shards = (capacity / 1024).clamp(1, MAX_SHARDS);
        let shards = 1usize << shards.ilog2();
        let each = capacity.div_ceil(shards);
        Self {
            shards: (0..shards).map(|_| Mutex::new(Shard::new(each))).collect(),
            mask: shards - 1,
        }
    }

    fn shard(&self, f: &Fingerprint) -> &Mutex<Shard<V>> {
        let i = ((f.0 >> 64) as usize) & self.mask;
        &self.shards[i]
    }

    /// The value for `f`, noting the use.
    pub fn get(&self, f: &Fingerprint) -> Option<V> {
        let mut shard = self.shard(f).lock().unwrap_or_else(|p| p.into_inner());
        let shard = &mut *shard;
        let i = *shard
            .index
            .find(hash(f), |&i| shard.slots[i as usize].fingerprint == *f)?;
        let slot = &mut shard.slots[i as usize];
        slot.freq = (slot.freq + 1).min(MAX_FREQ);
        slot.value.clone()
    }

    /// Set the value for `f` (replacing one, keeping its place).
    pub fn insert(&self, f: Fingerprint, value: V) -> Removed {
        let mut shard = self.shard(&f).lock().unwrap_or_else(|p| p.into_inner());
        shard.insert(f, value)
    }

    /// Remove the entry for `f`.
    pub fn remove(&self, f: &Fingerprint) -> Removed {
        let mut shard = self.shard(f).lock().unwrap_or_else(|p| p.into_inner());
        Removed {
            evicted: 0,
            invalidated: u64::from(shard.remove(f)),
        }
    }

    /// Remove every entry.
    pub fn clear(&self) -> Removed {
        let mut invalidated = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            invalidated += shard.live as u64;
            *shard = Shard::new(shard.capacity);
        }
        Removed {
            evicted: 0,
            invalidated,
        }
    }

    /// Live entries.
    pub fn len(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).live as u64)
            .sum()
    }
}

impl<V> Shard<V> {
    fn new(capacity: usize) -> Self {
        Self {
            index: HashTable::new(),
            slots: Vec::new(),
            free: Vec::new(),
            small: VecDeque::new(),
            main: VecDeque::new(),
            ghosts: VecDeque::new(),
            ghost_set: HashTable::new(),
            capacity,
            small_capacity: (capacity / 10).max(1),
            main_capacity: (capacity - (capacity / 10).max(1)).max(1),
            live: 0,
        }
    }

    fn insert(&mut self, f: Fingerprint, value: V) -> Removed {
        let slots = &mut self.slots;
        if let Some(&i) = self
            .index
            .find(hash(&f), |&i| slots[i as usize].fingerprint == f)
        {
            slots[i as usize].value = Some(value);
            return Removed::default();
        }
        let mut removed = Removed::default();
        // Room first: the queues hold live and removed slots alike, so
        // they, and the slots, stay within the capacity.
        while self.small.len() + self.main.len() >= self.capacity {
            removed.evicted += u64::from(self.evict());
        }
        let ghost = self.forget_ghost(hash(&f));
        let slot = Slot {
            fingerprint: f,
            value: Some(value),
            freq: 0,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        let slots = &self.slots;
        self.index
            .insert_unique(hash(&f), i, |&j| hash(&slots[j as usize].fingerprint));
        if ghost {
            self.main.push_back(i);
        } else {
            self.small.push_back(i);
        }
        self.live += 1;
        removed
    }

    fn remove(&mut self, f: &Fingerprint) -> bool {
        let slots = &self.slots;
        let Ok(entry) = self
            .index
            .find_entry(hash(f), |&i| slots[i as usize].fingerprint == *f)
        else {
            return false;
        };
        let (i, _) = entry.remove();
        // The slot stays in its queue, empty, until the queue reaches it.
        self.slots[i as usize].value = None;
        self.live -= 1;
        true
    }

    /// Take one slot out of the queues; true if it held a live entry.
    fn evict(&mut self) -> bool {
        if self.small.len() >= self.small_capacity || self.main.is_empty() {
            self.evict_small()
        } else {
            self.evict_main()
        }
    }

    fn evict_small(&mut self) -> bool {
        while let Some(i) = self.small.pop_front() {
            let slot = &mut self.slots[i as usize];
            if slot.value.is_none() {
                self.free.push(i);
                return false;
            }
            if slot.freq > 0 {
                // Used again while new: it stays, in the main queue.
                slot.freq = 0;
                self.main.push_back(i);
                if self.main.len() > self.main_capacity {
                    return self.evict_main();
                }
                continue;
            }
            let h = hash(&slot.fingerprint);
            self.drop_slot(i);
            self.remember_ghost(h);
            return true;
        }
        self.evict_main()
    }

    fn evict_main(&mut self) -> bool {
        while let Some(i) = self.main.pop_front() {
            let slot = &mut self.slots[i as usize];
            if slot.value.is_none() {
                self.free.push(i);
                return false;
            }
            if slot.freq > 0 {
                slot.freq -= 1;
                self.main.push_back(i);
                continue;
            }
            self.drop_slot(i);
            return true;
        }
        false
    }

    /// Remove live slot `i` from the index and free it.
    fn drop_slot(&mut self, i: u32) {
        let f = self.slots[i as usize].fingerprint;
        if let Ok(entry) = self.index.find_entry(hash(&f), |&j| j == i) {
            entry.remove();
        }
        self.slots[i as usize].value = None;
        self.free.push(i);
        self.live -= 1;
    }

    fn remember_ghost(&mut self, h: u64) {
        if self.ghost_set.find(h, |&g| g == h).is_some() {
            return;
        }
        // As many ghosts as the main queue holds entries.
        if self.ghosts.len() >= self.main_capacity {
            if let Some(old) = self.ghosts.pop_front() {
                if let Ok(e) = self.ghost_set.find_entry(old, |&g| g == old) {
                    e.remove();
                }
            }
        }
        self.ghosts.push_back(h);
        self.ghost_set.insert_unique(h, h, |&g| g);
    }

    /// Was `h` a ghost? (It is not one any more: its entry is back.)
    fn forget_ghost(&mut self, h: u64) -> bool {
        match self.ghost_set.find_entry(h, |&g| g == h) {
            Ok(e) => {
                e.remove();
                // Its place in the ghost queue is dropped when the queue
                // reaches it (the set no longer holds it).
                true
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests;
