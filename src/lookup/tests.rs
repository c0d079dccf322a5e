//! The look-up phase with its real parts: a real cache and known-hash set,
//! and a real store whose "database" is a local socket that counts the
//! connections made to it and closes each one at once (so any store access
//! shows, and fails as an outage does).

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpListener;

use super::*;
use crate::known::{Loading, MISS_BUDGET};
use crate::model::{ContentApiType, Ownership, PermissionSet, TokenKind, TokenRecord};

struct Fixture {
    lookup: Lookup,
    hasher: Hasher,
    /// Connections the store opened to the database.
    connects: Arc<AtomicUsize>,
}

async fn fixture() -> Fixture {
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
            "[tokens]\nsalt = \"s\"\n[postgres]\nurl = \"postgres://u@127.0.0.1:{port}/db\"\nconnect_timeout = \"2s\"\n"
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
    TokenRecord {
        id,
        kind: TokenKind::ContentApi,
        name: format!("t{id}").into(),
        token_type: Some(ContentApiType::ReadOnly),
        expires_at: None,
        permissions: PermissionSet::default(),
        ownership: Ownership::None,
        rate_limit: crate::model::RateOverride::default(),
        networks: crate::model::Networks::default(),
    }
}

impl Fixture {
    /// Put what the store would have said about `key` into the cache.
    async fn cache(&self, key: &[u8], found: Option<TokenRecord>) {
        let r = self
            .lookup
            .cache
            .get_or_load(self.hasher.hash(key), || async {
                Ok(found.map(Resolved::new))
            })
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
    let found = f.lookup.find(b"made up").await.expect("answered");
    assert!(found.is_none());
    assert_eq!(f.connects(), 0, "the store was not asked");
}

#[tokio::test]
async fn a_cached_record_and_a_cached_absence_are_served_without_the_store() {
    let f = fixture().await;
    f.cache(b"known key", Some(record(7))).await;
    f.cache(b"absent key", None).await;
    let hit = f.lookup.find(b"known key").await.expect("answered");
    assert_eq!(hit.map(|h| h.record.id), Some(7));
    assert!(f
        .lookup
        .find(b"absent key")
        .await
        .expect("answered")
        .is_none());
    assert_eq!(f.connects(), 0, "the store was not asked");
}

#[tokio::test]
async fn while_the_database_is_down_the_breaker_fails_lookups_fast() {
    let f = fixture().await;
    let first = f.lookup.find(b"key one").await;
    assert!(
        matches!(first, Err(LookupError::Unavailable(_))),
        "{first:?}"
    );
    assert_eq!(f.connects(), 1, "a miss goes to the store");
    assert_eq!(f.lookup.metrics.hot.store_find_errors.get(), 1);
    // The breaker is open now: the next miss fails at once, unanswered by
    // a cache that holds nothing to serve stale.
    let second = f.lookup.find(b"key two").await;
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
