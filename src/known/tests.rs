//! Unit tests of `known`.

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

/// One successful poll whose snapshot holds `hashes`; `during` runs
/// while it is under way.
fn poll(k: &KnownHashes, hashes: &[u8], during: impl FnOnce()) {
    let n = k.poll_started();
    during();
    let mut loading = Loading::default();
    for x in hashes {
        loading.add(&h(*x));
    }
    k.replace_polled(loading);
    k.poll_done(n, Instant::now(), true, Duration::from_secs(5));
}

/// A poll whose snapshot predates a NOTIFY does not drop the hash the
/// NOTIFY announced (a regenerated key would be refused as gone until
/// the next poll); the poll after it decides.
#[test]
fn a_poll_keeps_hashes_announced_while_it_ran() {
    let k = KnownHashes::default();
    poll(&k, &[1], || {});
    // h(2) announced while the poll runs; its snapshot predates it.
    poll(&k, &[1], || k.insert(&h(2)));
    assert_eq!(k.check(&h(2)), Verdict::LookUp, "kept");
    // Both deleted since.
    poll(&k, &[], || {});
    assert_eq!(k.check(&h(2)), Verdict::Unknown, "the next poll decides");
    assert_eq!(k.check(&h(1)), Verdict::Unknown);
}

#[tokio::test]
async fn a_polled_set_makes_unknown_keys_wait_for_the_next_poll() {
    let k = std::sync::Arc::new(KnownHashes::default());
    let fresh = Duration::from_secs(5);
    // First poll: the set holds h(1).
    let n = k.poll_started();
    let mut loading = Loading::default();
    loading.add(&h(1));
    k.replace_polled(loading);
    k.poll_done(n, Instant::now(), true, fresh);
    assert!(k.is_ready(), "trusted while polls succeed");
    assert_eq!(k.check(&h(1)), Verdict::LookUp);
    assert_eq!(k.check(&h(2)), Verdict::WaitForPoll);

    // h(2) is created; a request arrives before the poll that sees it.
    let waiting = tokio::spawn({
        let k = k.clone();
        async move { k.after_next_poll(&h(2), Duration::from_secs(5)).await }
    });
    tokio::task::yield_now().await;
    let n = k.poll_started();
    let mut loading = Loading::default();
    loading.add(&h(1));
    loading.add(&h(2));
    k.replace_polled(loading);
    k.poll_done(n, Instant::now(), true, fresh);
    assert!(
        waiting.await.expect("join"),
        "the new key is found by the poll"
    );

    // A made-up key after a poll: refused; past the budget, at once.
    let waiting = tokio::spawn({
        let k = k.clone();
        async move { k.admits_fresh(&h(3)).await }
    });
    tokio::task::yield_now().await;
    let n = k.poll_started();
    k.poll_done(n, Instant::now(), true, fresh);
    assert!(!waiting.await.expect("join"));
    let waits = (0..100u8)
        .filter(|i| k.check(&h(100 + i)) == Verdict::WaitForPoll)
        .count();
    assert!(waits < WAIT_BUDGET as usize, "{waits} waited");

    // A failed poll lets the waiter look the key up.
    let waiting = tokio::spawn({
        let k = k.clone();
        async move { k.after_next_poll(&h(4), Duration::from_secs(5)).await }
    });
    tokio::task::yield_now().await;
    let n = k.poll_started();
    k.poll_done(n, Instant::now(), false, fresh);
    assert!(waiting.await.expect("join"), "no answer: look it up");

    // No poll within the limit: look it up too.
    assert!(k.after_next_poll(&h(5), Duration::from_millis(10)).await);
    // Polls stop succeeding: the set stops being trusted.
    k.poll_done(k.poll_started(), Instant::now() - fresh * 2, true, fresh);
    assert!(!k.is_ready());
    assert_eq!(k.check(&h(6)), Verdict::LookUp);
}

#[tokio::test]
async fn a_deleted_key_is_refused_at_once_and_a_notify_wakes_a_waiter() {
    let k = std::sync::Arc::new(KnownHashes::default());
    let fresh = Duration::from_secs(5);
    let poll = |hs: &[u8]| {
        let n = k.poll_started();
        let mut loading = Loading::default();
        for b in hs {
            loading.add(&h(*b));
        }
        k.replace_polled(loading);
        k.poll_done(n, Instant::now(), true, fresh);
    };
    poll(&[1, 2]);
    poll(&[2]);
    assert_eq!(k.check(&h(1)), Verdict::Unknown, "gone: no wait");
    assert_eq!(k.check(&h(2)), Verdict::LookUp);
    let waiting = tokio::spawn({
        let k = k.clone();
        async move { k.after_next_poll(&h(9), Duration::from_secs(5)).await }
    });
    tokio::task::yield_now().await;
    k.insert(&h(9));
    let found = tokio::time::timeout(Duration::from_secs(1), waiting)
        .await
        .expect("woken by the insert, not the next poll");
    assert!(found.expect("join"));
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
