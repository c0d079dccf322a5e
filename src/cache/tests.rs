use std::sync::atomic::AtomicUsize;

use super::*;
use crate::model::{ContentApiType, Owner, Ownership, PermissionSet, TokenKind};

fn cfg(ttl_ms: u64, stale_ms: u64) -> CacheConfig {
    CacheConfig {
        capacity: 1000,
        ttl: Duration::from_millis(ttl_ms),
        negative_ttl: Duration::from_millis(ttl_ms),
        stale_if_error: Duration::from_millis(stale_ms),
    }
}

fn record(id: i64, owner: Option<(i64, i64)>) -> TokenRecord {
    TokenRecord {
        id,
        kind: if owner.is_some() {
            TokenKind::Admin
        } else {
            TokenKind::ContentApi
        },
        name: format!("t{id}").into(),
        token_type: owner.is_none().then_some(ContentApiType::ReadOnly),
        expires_at: crate::model::Expiry::NEVER,
        ends: crate::model::Ending::Token,
        permissions: PermissionSet::default(),
        ownership: match owner {
            None => Ownership::None,
            Some((uid, role)) => Ownership::owner(Owner {
                id: uid,
                email: "o@x".into(),
                is_active: true,
                blocked: false,
                super_admin: false,
                permissions: PermissionSet::default(),
                role_ids: vec![role],
            }),
        },
        rate_limit: crate::model::RateOverride::default(),
        networks: crate::model::Networks::default(),
    }
}

fn hash(n: u8) -> TokenHash {
    TokenHash([n; 64])
}

fn fp(n: u8) -> Fingerprint {
    Fingerprint(u128::from(n) * 0x0101_0101)
}

/// Key `n` as presented: its fingerprint and hash.
fn key(n: u8) -> Presented {
    Presented {
        fingerprint: fp(n),
        hash: hash(n),
    }
}

/// A counting loader.
async fn load(
    cache: &TokenCache<TokenRecord>,
    h: Presented,
    calls: &AtomicUsize,
    result: Result<Option<TokenRecord>, StoreError>,
) -> Result<Option<Hit<TokenRecord>>, LookupError> {
    cache
        .get_or_load(h, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            result
        })
        .await
}

fn down() -> StoreError {
    StoreError::Unavailable("test: database down".into())
}

#[tokio::test]
async fn hit_after_miss_and_negative_entries() {
    let c = TokenCache::new(&cfg(60_000, 0), Metrics::new());
    let calls = AtomicUsize::new(0);
    let got = load(&c, key(1), &calls, Ok(Some(record(1, None))))
        .await
        .unwrap();
    assert_eq!(got.unwrap().id, 1);
    let got = load(&c, key(1), &calls, Ok(None)).await.unwrap();
    assert_eq!(got.unwrap().id, 1, "second lookup is a hit");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(load(&c, key(2), &calls, Ok(None)).await.unwrap().is_none());
    assert!(
        load(&c, key(2), &calls, Ok(Some(record(2, None))))
            .await
            .unwrap()
            .is_none(),
        "absence is remembered"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(c.metrics.cache_hits.get(), 1);
    assert_eq!(c.metrics.cache_negative_hits.get(), 1);
}

#[tokio::test]
async fn single_flight_on_concurrent_misses() {
    let c = Arc::new(TokenCache::<TokenRecord>::new(
        &cfg(60_000, 0),
        Metrics::new(),
    ));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (c, calls) = (c.clone(), calls.clone());
        tasks.push(tokio::spawn(async move {
            c.get_or_load(key(9), || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(Some(record(9, None)))
            })
            .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().unwrap().id, 9);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn stale_record_serves_while_store_is_down_then_expires() {
    let c = TokenCache::new(&cfg(50, 200), Metrics::new());
    let calls = AtomicUsize::new(0);
    load(&c, key(1), &calls, Ok(Some(record(1, None))))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    // Past the TTL, store down: the stale record serves.
    let got = load(&c, key(1), &calls, Err(down())).await.unwrap();
    assert_eq!(got.unwrap().id, 1);
    assert_eq!(c.metrics.cache_stale_served.get(), 1);
    // A miss with the store down is an error, not a guess.
    assert!(matches!(
        load(&c, key(2), &calls, Err(down())).await,
        Err(LookupError::Unavailable(_))
    ));
    // Past TTL + stale_if_error: no longer served.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(matches!(
        load(&c, key(1), &calls, Err(down())).await,
        Err(LookupError::Unavailable(_))
    ));
}

#[tokio::test]
async fn stale_record_is_refreshed_when_store_answers() {
    let c = TokenCache::new(&cfg(30, 1000), Metrics::new());
    let calls = AtomicUsize::new(0);
    load(&c, key(1), &calls, Ok(Some(record(1, None))))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The token was deleted meanwhile: the refresh says so.
    assert!(load(&c, key(1), &calls, Ok(None)).await.unwrap().is_none());
}

#[tokio::test]
async fn non_availability_errors_are_not_masked_by_stale_data() {
    let c = TokenCache::new(&cfg(10, 1000), Metrics::new());
    let calls = AtomicUsize::new(0);
    load(&c, key(1), &calls, Ok(Some(record(1, None))))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let r = load(
        &c,
        key(1),
        &calls,
        Err(StoreError::Invalid("bad row".into())),
    )
    .await;
    assert!(matches!(r, Err(LookupError::Failed(_))));
}

#[tokio::test]
async fn invalidation_by_hash_id_owner_role_and_all() {
    let c = TokenCache::new(&cfg(60_000, 0), Metrics::new());
    let calls = AtomicUsize::new(0);
    let fill = |n: u8, rec: TokenRecord| (key(n), rec);
    let entries = [
        fill(1, record(1, None)),
        fill(2, record(2, Some((10, 100)))),
        fill(3, record(3, Some((10, 101)))),
        fill(4, record(4, Some((11, 100)))),
        fill(5, record(5, Some((12, 102)))),
    ];
    for (h, r) in &entries {
        load(&c, *h, &calls, Ok(Some(r.clone()))).await.unwrap();
    }
    let cached = |n: u8| {
        let c = &c;
        async move { c.holds(fp(n)).await }
    };
    c.invalidate_token(1, Some(&hash(1))).await;
    assert!(!cached(1).await);
    c.invalidate_owner(10);
    assert!(!cached(2).await && !cached(3).await);
    assert!(cached(4).await && cached(5).await);
    c.invalidate_role(100);
    assert!(!cached(4).await);
    assert!(cached(5).await);
    c.invalidate_token(5, None).await;
    assert!(!cached(5).await);
    load(&c, key(1), &calls, Ok(Some(record(1, None))))
        .await
        .unwrap();
    c.invalidate_all();
    assert!(!cached(1).await);
}

#[tokio::test]
async fn load_racing_an_invalidation_is_not_cached() {
    let c = Arc::new(TokenCache::<TokenRecord>::new(
        &cfg(60_000, 0),
        Metrics::new(),
    ));
    let c2 = c.clone();
    let slow = tokio::spawn(async move {
        c2.get_or_load(key(1), || async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(Some(record(1, None)))
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    c.invalidate_token(1, None).await;
    assert!(
        slow.await.unwrap().unwrap().is_some(),
        "the caller still gets its answer"
    );
    assert!(!c.holds(fp(1)).await, "but it is not cached");
}

/// A miss that comes after an invalidation does not share a load that
/// began before it: it queries anew and gets the new answer.
#[tokio::test]
async fn a_miss_after_an_invalidation_does_not_join_an_older_load() {
    for invalidate in 0..4 {
        let c = Arc::new(TokenCache::<TokenRecord>::new(
            &cfg(60_000, 0),
            Metrics::new(),
        ));
        let (release, wait) = tokio::sync::oneshot::channel::<()>();
        let c2 = c.clone();
        let before = tokio::spawn(async move {
            c2.get_or_load(key(1), || async {
                let _ = wait.await;
                Ok(Some(record(1, None)))
            })
            .await
        });
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        match invalidate {
            0 => c.invalidate_token(1, None).await,
            1 => c.invalidate_token(1, Some(&hash(1))).await,
            2 => c.invalidate_all(),
            _ => c.invalidate_owner(10),
        }
        let calls = AtomicUsize::new(0);
        let after =
            tokio::time::timeout(Duration::from_secs(5), load(&c, key(1), &calls, Ok(None)))
                .await
                .unwrap_or_else(|_| panic!("case {invalidate}: waited for the older load"))
                .unwrap();
        assert!(after.is_none(), "case {invalidate}: the newer answer");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "case {invalidate}");
        let _ = release.send(());
        assert!(before.await.unwrap().unwrap().is_some());
        assert!(!c.holds(fp(1)).await, "case {invalidate}");
    }
}

/// An entry stored just after an invalidation, by a load that began
/// before it, is not served: the note covers it.
#[tokio::test]
async fn an_entry_stored_after_an_invalidation_from_an_older_load_is_not_served() {
    let c = TokenCache::<TokenRecord>::new(&cfg(60_000, 0), Metrics::new());
    let calls = AtomicUsize::new(0);
    for (i, invalidate) in ["token", "all"].into_iter().enumerate() {
        let k = key(10 + i as u8);
        let old = c.epoch();
        match invalidate {
            "token" => c.invalidate_token(1, Some(&k.hash)).await,
            _ => c.invalidate_all(),
        }
        // What a racing load would store: a record and an absence from the
        // old epoch.
        let records = c.records.as_ref().unwrap();
        records.insert(
            k.fingerprint,
            Arc::new(Cached {
                value: record(1, None),
                fetched: c.now(),
                epoch: old,
            }),
        );
        assert!(!c.holds(k.fingerprint).await, "{invalidate}: the record");
        let absent = c.absent.as_ref().unwrap();
        let other = key(20 + i as u8);
        absent.insert(Key::from(&other.hash), old).await;
        if invalidate == "token" {
            // By hash covers only its own hash.
            let r = load(&c, other, &calls, Ok(Some(record(2, None)))).await;
            assert!(r.unwrap().is_none(), "another hash's absence stands");
            c.invalidate_token(2, Some(&other.hash)).await;
            absent.insert(Key::from(&other.hash), old).await;
        }
        let r = load(&c, other, &calls, Ok(Some(record(2, None)))).await;
        assert!(r.unwrap().is_some(), "{invalidate}: the absence");
    }
}

/// A token's records, found by two keys (its current one and an old one in
/// its overlap, so two fingerprints and two hashes), all go with one event
/// naming the token, whichever hash it names; an event for another token
/// leaves them, and a hash names no record: the table of who covers what.
#[tokio::test]
async fn a_token_event_covers_every_record_of_the_token_whatever_key_found_it() {
    // (event: token id, hash named) -> (key 1 still cached, key 2 still cached)
    type Row = ((i64, Option<u8>), (bool, bool));
    let rows: [Row; 5] = [
        ((7, None), (false, false)),
        ((7, Some(1)), (false, false)),
        ((7, Some(99)), (false, false)),
        ((8, Some(1)), (true, true)),
        ((8, None), (true, true)),
    ];
    for ((id, named), (one, two)) in rows {
        let c = TokenCache::new(&cfg(60_000, 0), Metrics::new());
        let calls = AtomicUsize::new(0);
        for n in [1, 2] {
            load(&c, key(n), &calls, Ok(Some(record(7, None))))
                .await
                .unwrap();
        }
        let named = named.map(hash);
        c.invalidate_token(id, named.as_ref()).await;
        let row = format!("token {id}, hash {named:?}");
        assert_eq!(c.holds(fp(1)).await, one, "{row}: key 1");
        assert_eq!(c.holds(fp(2)).await, two, "{row}: key 2");
        // Nothing covered is served stale either.
        if !one {
            let r = load(&c, key(1), &calls, Err(down())).await;
            assert!(matches!(r, Err(LookupError::Unavailable(_))), "{row}");
        }
    }
}

/// A probe answers from the fingerprint alone: fresh, stale, or missing.
#[tokio::test]
async fn a_probe_needs_only_the_fingerprint() {
    let c = TokenCache::new(&cfg(50, 60_000), Metrics::new());
    let calls = AtomicUsize::new(0);
    assert!(matches!(c.probe(fp(1)).await, Probe::Missing));
    load(&c, key(1), &calls, Ok(Some(record(1, None))))
        .await
        .unwrap();
    assert!(matches!(c.probe(fp(1)).await, Probe::Fresh(h) if h.id == 1));
    assert!(
        matches!(c.probe(fp(2)).await, Probe::Missing),
        "another key"
    );
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert!(matches!(c.probe(fp(1)).await, Probe::Stale(h) if h.id == 1));
    c.invalidate_token(1, None).await;
    assert!(matches!(c.probe(fp(1)).await, Probe::Missing), "revoked");
}

#[tokio::test]
async fn disabled_cache_always_loads() {
    let mut conf = cfg(60_000, 0);
    conf.capacity = 0;
    let c = TokenCache::new(&conf, Metrics::new());
    let calls = AtomicUsize::new(0);
    for _ in 0..3 {
        load(&c, key(1), &calls, Ok(Some(record(1, None))))
            .await
            .unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_revoked_record_is_not_served_stale_during_an_outage() {
    // ttl 10 ms, a minute of stale_if_error.
    let c = TokenCache::new(&cfg(10, 60_000), Metrics::new());
    let calls = AtomicUsize::new(0);
    load(&c, key(2), &calls, Ok(Some(record(2, Some((10, 100))))))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    c.invalidate_owner(10);
    let r = load(&c, key(2), &calls, Err(down())).await;
    assert!(matches!(r, Err(LookupError::Unavailable(_))), "{r:?}");
}

#[tokio::test]
async fn a_record_loaded_after_an_invalidation_is_served() {
    let c = TokenCache::new(&cfg(60_000, 0), Metrics::new());
    let calls = AtomicUsize::new(0);
    c.invalidate_owner(10);
    c.invalidate_role(100);
    load(&c, key(2), &calls, Ok(Some(record(2, Some((10, 100))))))
        .await
        .unwrap();
    assert!(c.holds(fp(2)).await);
    load(&c, key(2), &calls, Ok(Some(record(2, Some((10, 100))))))
        .await
        .unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the second lookup is a hit"
    );
}

#[tokio::test]
async fn old_revocations_are_pruned() {
    // ttl 10 ms, no stale_if_error: a note older than 10 ms covers nothing.
    let c = TokenCache::<TokenRecord>::new(&cfg(10, 0), Metrics::new());
    c.invalidate_token(1, None).await;
    c.invalidate_owner(2);
    assert_eq!(c.revocations_held(), 2);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.invalidate_role(3);
    assert_eq!(c.revocations_held(), 1, "only the new note is left");
}

#[test]
fn records_a_use_at_most_once_per_interval() {
    let r = Resolved::new(record(1, None));
    assert!(r.should_record(1000, 60));
    assert!(!r.should_record(1030, 60));
    assert!(r.should_record(1060, 60));
}

/// A cached record is one allocation: the `Arc`'s two counts and a
/// [`Cached`] [`Resolved`]. At 112 bytes it is in mimalloc's 112-byte size
/// class; a field more would move every cached token to the 128-byte class
/// (BENCHMARKS.md, a million cached tokens).
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
#[test]
fn a_cached_record_is_one_112_byte_allocation() {
    assert_eq!(
        2 * std::mem::size_of::<usize>() + std::mem::size_of::<Cached<Resolved>>(),
        112
    );
}

/// After the listener missed events every record is read again, but the
/// store being down then still serves it stale (as during the outage); an
/// `all` event removes it for good.
#[tokio::test]
async fn expire_all_rereads_yet_serves_stale_while_the_store_is_down() {
    let c = TokenCache::new(&cfg(60_000, 60_000), Metrics::new());
    let calls = AtomicUsize::new(0);
    let r = |id| Ok(Some(record(id, None)));
    load(&c, key(1), &calls, r(1)).await.unwrap();
    load(&c, key(2), &calls, Ok(None)).await.unwrap();
    c.expire_all();
    // Down: the record is served stale, the absence is not remembered.
    let got = load(&c, key(1), &calls, Err(down())).await.unwrap();
    assert_eq!(got.map(|h| h.id), Some(1));
    assert!(load(&c, key(2), &calls, Err(down())).await.is_err());
    // Up: read again, then fresh.
    let before = calls.load(Ordering::SeqCst);
    load(&c, key(1), &calls, r(1)).await.unwrap();
    load(&c, key(1), &calls, Err(down())).await.unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        before + 1,
        "one re-read, then a hit"
    );
    c.invalidate_all();
    assert!(load(&c, key(1), &calls, Err(down())).await.is_err());
}
