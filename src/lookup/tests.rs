//! The look-up phase with its real parts: a real cache and known-hash set,
//! and a real store whose "database" is a local socket that counts the
//! connections made to it and closes each one at once (so any store access
//! shows, and fails as an outage does).

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpListener;

use super::*;
use crate::known::{Loading, MISS_BUDGET};
use crate::model::{ContentApiType, TokenRecord};

struct Fixture {
    lookup: Lookup,
    hasher: Hasher,
    /// Connections the store opened to the database.
    connects: Arc<AtomicUsize>,
}

async fn fixture() -> Fixture {
    fixture_with("").await
}

/// The fixture with more config (e.g. a `[cache]` section).
async fn fixture_with(more: &str) -> Fixture {
    let db = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = db.local_addr().expect("addr").port();
    let connects = Arc::new(AtomicUsize::new(0));
    let counted = connects.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = db.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    let cfg = crate::config::parse_raw(
        &format!(
            "[tokens]\nsalt = \"s\"\n[postgres]\nurl = \"postgres://u@127.0.0.1:{port}/db\"\nconnect_timeout = \"2s\"\n{more}"
        ),
        std::path::Path::new("t.toml"),
        Vec::new(),
    )
    .and_then(|r| r.compile())
    .expect("config");
    let metrics = Metrics::new();
    let lookup = Lookup::new(
        Hasher::new("s"),
        Arc::new(KnownHashes::default()),
        Arc::new(TokenCache::new(&cfg.cache, metrics.clone())),
        Store::new(&cfg.postgres).expect("the pool is lazy"),
        metrics,
    );
    Fixture {
        lookup,
        hasher: Hasher::new("s"),
        connects,
    }
}

fn record(id: i64) -> TokenRecord {
    TokenRecord::content_api(id, &format!("t{id}"), ContentApiType::ReadOnly)
}

impl Fixture {
    /// Put what the store would have said about `key` into the cache.
    async fn cache(&self, key: &[u8], found: Option<TokenRecord>) {
        let r = self
            .lookup
            .cache
            .get_or_load(
                crate::cache::Presented {
                    fingerprint: self.lookup.fingerprints.of(key),
                    hash: self.hasher.hash(key),
                },
                || async { Ok(found.map(Resolved::new)) },
            )
            .await;
        assert!(r.is_ok());
    }

    fn connects(&self) -> usize {
        self.connects.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn a_hash_never_issued_is_refused_from_memory() {
    let f = fixture().await;
    let mut issued = Loading::default();
    issued.add(&f.hasher.hash(b"issued"));
    f.lookup.known.replace(issued);
    // A flood of made-up keys: past the per-second budget of unknown
    // hashes that may still be looked up, they are refused from memory.
    for i in 0..MISS_BUDGET {
        f.lookup.known.admits(&f.hasher.hash(&i.to_le_bytes()));
    }
    let found = f
        .lookup
        .find(b"made up", &mut Span::none())
        .await
        .expect("answered");
    assert!(found.is_none());
    assert_eq!(f.connects(), 0, "the store was not asked");
}

#[tokio::test]
async fn a_cached_record_and_a_cached_absence_are_served_without_the_store() {
    let f = fixture().await;
    f.cache(b"known key", Some(record(7))).await;
    f.cache(b"absent key", None).await;
    let hit = f
        .lookup
        .find(b"known key", &mut Span::none())
        .await
        .expect("answered");
    assert_eq!(hit.map(|h| h.record.id), Some(7));
    assert!(f
        .lookup
        .find(b"absent key", &mut Span::none())
        .await
        .expect("answered")
        .is_none());
    assert_eq!(f.connects(), 0, "the store was not asked");
}

#[tokio::test]
async fn while_the_database_is_down_the_breaker_fails_lookups_fast() {
    let f = fixture().await;
    let first = f.lookup.find(b"key one", &mut Span::none()).await;
    assert!(
        matches!(first, Err(LookupError::Unavailable(_))),
        "{first:?}"
    );
    assert_eq!(f.connects(), 1, "a miss goes to the store");
    assert_eq!(f.lookup.metrics.hot.store_find_errors.get(), 1);
    // The breaker is open now: the next miss fails at once, unanswered by
    // a cache that holds nothing to serve stale.
    let second = f.lookup.find(b"key two", &mut Span::none()).await;
    assert!(
        matches!(second, Err(LookupError::Unavailable(_))),
        "{second:?}"
    );
    assert_eq!(
        f.connects(),
        1,
        "the open breaker kept it from the database"
    );
    assert_eq!(f.lookup.metrics.hot.store_find_errors.get(), 2);
}

#[tokio::test]
async fn a_connection_remembers_its_last_key_until_any_invalidation() {
    let f = fixture().await;
    let recent = Recent::default();
    f.cache(b"key", Some(record(7))).await;
    let hit = f
        .lookup
        .find_on(&recent, b"key", &mut Span::none())
        .await
        .expect("answered");
    assert_eq!(hit.map(|h| h.record.id), Some(7));
    // Another key on the same connection is not the remembered one: it is
    // looked up (and, not cached, goes to the store).
    let other = f
        .lookup
        .find_on(&recent, b"another key", &mut Span::none())
        .await;
    assert!(
        matches!(other, Err(LookupError::Unavailable(_))),
        "{other:?}"
    );
    assert_eq!(f.connects(), 1);
    // The failed lookup left the remembered key alone: served again.
    let again = f
        .lookup
        .find_on(&recent, b"key", &mut Span::none())
        .await
        .expect("answered");
    assert_eq!(again.map(|h| h.record.id), Some(7));
    // An invalidation of the token (by id, as a NOTIFY would) ends the
    // memory at once: the next request goes through the cache, which drops
    // the revoked record, to the store (down here, so it fails).
    f.lookup.cache.invalidate_token(7, None).await;
    let after = f.lookup.find_on(&recent, b"key", &mut Span::none()).await;
    assert!(
        matches!(after, Err(LookupError::Unavailable(_))),
        "{after:?}"
    );
}

#[tokio::test]
async fn a_remembered_key_is_not_served_past_the_ttl() {
    let f = fixture_with("[cache]\nttl = \"100ms\"\nstale_if_error = \"0s\"\n").await;
    let recent = Recent::default();
    f.cache(b"key", Some(record(7))).await;
    assert!(f
        .lookup
        .find_on(&recent, b"key", &mut Span::none())
        .await
        .expect("answered")
        .is_some());
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let late = f.lookup.find_on(&recent, b"key", &mut Span::none()).await;
    assert!(matches!(late, Err(LookupError::Unavailable(_))), "{late:?}");
    assert_eq!(f.connects(), 1, "past the TTL the store was asked");
}

#[test]
fn fingerprints_are_keyed_and_tell_keys_apart() {
    let (a, b) = (Fingerprints::default(), Fingerprints::default());
    let key = b"0123456789abcdef0123456789abcdef";
    assert_eq!(a.of(key), a.of(key));
    // Two processes (two random key pairs) fingerprint the same key apart.
    assert_ne!(a.of(key), b.of(key));
    let mut seen = std::collections::HashSet::new();
    for i in 0..10_000u32 {
        let k = format!("key-{i}");
        assert!(seen.insert(a.of(k.as_bytes())), "collision at {i}");
    }
}

#[tokio::test]
async fn only_lookups_the_cache_cannot_answer_leave_spans() {
    use crate::trace::{attr, Kind, StatusCode, Value};
    let f = fixture().await;
    f.cache(b"known key", Some(record(7))).await;
    let mut root = Span::test_root();
    f.lookup
        .find(b"known key", &mut root)
        .await
        .expect("answered");
    let spans = root.test_end();
    assert_eq!(spans.len(), 1, "a cache hit adds no span: {spans:?}");

    // A miss: the look-up, and under it the store query (which fails here:
    // the "database" closes every connection).
    let mut root = Span::test_root();
    let missed = f.lookup.find(b"key one", &mut root).await;
    assert!(missed.is_err());
    let spans = root.test_end();
    assert_eq!(spans.len(), 3, "{spans:?}");
    let (lookup, query) = (&spans[1], &spans[2]);
    assert_eq!(
        (lookup.name.as_ref(), lookup.kind),
        ("authgate.lookup", Kind::Internal)
    );
    assert_eq!(lookup.parent, Some(spans[0].id));
    assert_eq!(
        lookup.attr(attr::LOOKUP_SOURCE),
        Some(&Value::from("store"))
    );
    assert_eq!(
        lookup.attr(attr::ERROR_TYPE),
        Some(&Value::from("store_unavailable"))
    );
    assert_eq!(
        (query.name.as_ref(), query.kind),
        ("find_token", Kind::Client)
    );
    assert_eq!(query.parent, Some(lookup.id));
    assert_eq!(
        query.attr(attr::DB_SYSTEM_NAME),
        Some(&Value::from("postgresql"))
    );
    assert_eq!(query.status, StatusCode::Error);

    // A hash never issued, refused from memory: the look-up says so.
    let mut issued = Loading::default();
    issued.add(&f.hasher.hash(b"issued"));
    f.lookup.known.replace(issued);
    for i in 0..MISS_BUDGET {
        f.lookup.known.admits(&f.hasher.hash(&i.to_le_bytes()));
    }
    let mut root = Span::test_root();
    f.lookup
        .find(b"made up", &mut root)
        .await
        .expect("answered");
    let spans = root.test_end();
    assert_eq!(spans.len(), 2, "{spans:?}");
    assert_eq!(
        spans[1].attr(attr::LOOKUP_SOURCE),
        Some(&Value::from("known_hashes"))
    );
}
