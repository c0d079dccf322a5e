use super::*;

fn fp(n: u64) -> Fingerprint {
    // Spread over shards and buckets as real fingerprints are.
    let mix = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    Fingerprint(u128::from(mix) << 64 | u128::from(mix ^ n))
}

#[test]
fn get_insert_replace_remove() {
    let t = Fifo::new(100);
    assert_eq!(t.get(&fp(1)), None);
    assert_eq!(t.insert(fp(1), "a"), Removed::default());
    assert_eq!(t.get(&fp(1)), Some("a"));
    t.insert(fp(1), "b");
    assert_eq!(
        (t.get(&fp(1)), t.len()),
        (Some("b"), 1),
        "replaced in place"
    );
    assert_eq!(t.remove(&fp(1)).invalidated, 1);
    assert_eq!(t.remove(&fp(1)).invalidated, 0, "already gone");
    assert_eq!((t.get(&fp(1)), t.len()), (None, 0));
    t.insert(fp(2), "c");
    t.insert(fp(3), "d");
    assert_eq!(t.clear().invalidated, 2);
    assert_eq!((t.get(&fp(2)), t.len()), (None, 0));
}

/// Capacity, and what each insert evicts: (capacity, distinct inserts).
#[test]
fn holds_at_most_its_capacity() {
    for (capacity, inserts) in [(1, 10), (10, 100), (1000, 5000), (100_000, 300_000)] {
        let t = Fifo::new(capacity);
        let evicted: u64 = (0..inserts).map(|n| t.insert(fp(n), n).evicted).sum();
        let held = t.len();
        // Each shard holds its share rounded up.
        let shards = t.shards.len() as u64;
        assert!(held <= capacity + shards, "{capacity}: {held}");
        assert!(held >= capacity * 9 / 10, "{capacity}: only {held}");
        assert_eq!(
            evicted + held,
            inserts,
            "{capacity}: every eviction counted"
        );
    }
}

/// Removed entries leave their slots to reuse: churn does not grow the
/// table past its capacity.
#[test]
fn churn_reuses_slots() {
    let t = Fifo::new(64);
    for n in 0..10_000 {
        t.insert(fp(n), n);
        if n % 3 != 0 {
            t.remove(&fp(n));
        }
    }
    let shard = t.shards[0].lock().unwrap();
    assert!(shard.slots.len() <= 64, "{} slots", shard.slots.len());
    assert!(shard.small.len() + shard.main.len() <= 64);
}

/// Entries used while a scan of one-off keys passes stay; the scan's keys
/// leave (S3-FIFO's small queue). Then a scanned key seen again comes
/// back as a ghost, into the main queue, and outlives the next scan.
#[test]
fn a_scan_does_not_displace_what_is_used() {
    let t = Fifo::new(1000);
    let hot: Vec<u64> = (0..500).collect();
    for &n in &hot {
        t.insert(fp(n), n);
        t.get(&fp(n));
    }
    for n in 10_000..20_000 {
        t.insert(fp(n), n);
        if n % 20 == 0 {
            for &h in &hot {
                t.get(&fp(h));
            }
        }
    }
    let kept = hot.iter().filter(|&&n| t.get(&fp(n)).is_some()).count();
    assert_eq!(kept, hot.len(), "the used entries outlived the scan");
    // The scan's last 500 keys are still in the small queue; the 900
    // before them left it as ghosts and are remembered.
    let back = 19_000;
    assert!(t.get(&fp(back)).is_none());
    t.insert(fp(back), back);
    for n in 30_000..40_000 {
        t.insert(fp(n), n);
    }
    assert_eq!(t.get(&fp(back)), Some(back), "a ghost comes back to stay");
}

/// An entry's slot is 32 bytes (a fingerprint, a pointer, the count):
/// with the table's `u32`s, what a cached token pays besides its record
/// (BENCHMARKS.md, a million cached tokens).
#[cfg(target_pointer_width = "64")]
#[test]
fn a_slot_is_32_bytes() {
    assert_eq!(std::mem::size_of::<Slot<std::sync::Arc<()>>>(), 32);
}
