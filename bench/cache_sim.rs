//! The token cache alone, without HTTP or Postgres: what an entry costs
//! in memory, and how often it hits under two workloads (issue 25). Not
//! part of the product; `bench/memory.sh` runs it after the end-to-end
//! measurement.
//!
//! ```text
//! bench_cache_sim memory 1000000        # RSS of N cached read-only tokens
//! bench_cache_sim hits                  # hit rates, Zipf and Zipf + scans
//! bench_cache_sim memory 1000000 moka   # the same for the moka cache
//! bench_cache_sim hits moka             #   records lived in before issue 25
//! bench_cache_sim hash                  # time of token::Hasher on a 256-hex key
//! ```
//!
//! `moka` stands in for the cache before issue 25: moka configured as the
//! records' cache was (capacity, eviction listener, no TTL, keyed by 32
//! bytes of the hash hashed as their first 8), holding a 112-byte
//! allocation per record as `Cached<Resolved>` was.
//!
//! `memory` fills a cache of capacity N + N/10 through `get_or_load` with
//! the records `bench/memory.sh` makes (read-only content-API tokens named
//! `mem-<i>`), under the product's allocator (mimalloc), and prints the
//! RSS growth per entry. `hits` replays two workloads against a cache of
//! 100,000 entries over 1,000,000 tokens (a fixed seed, so two builds see
//! the same requests): `zipf`, 2,000,000 requests Zipf-distributed
//! (s = 0.99); `scan`, the same with a scan of 100,000 tokens seen once
//! (a crawler, a batch job) after every 100,000 requests. A hit is a
//! request the cache answered without loading.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use authgate::cache::{Fingerprint, Presented, Resolved, TokenCache};
use authgate::config::CacheConfig;
use authgate::metrics::Metrics;
use authgate::model::{ContentApiType, TokenRecord};
use authgate::token::{BuildDigestHasher, TokenHash};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Token `i` as presented: a fingerprint and a hash standing for its key's.
fn presented(i: u64) -> Presented {
    let mut hash = [0u8; 64];
    for (n, chunk) in hash.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&splitmix(i ^ ((n as u64) << 56)).to_le_bytes());
    }
    Presented {
        fingerprint: Fingerprint(u128::from(splitmix(i)) << 64 | u128::from(splitmix(!i))),
        hash: TokenHash(hash),
    }
}

/// The cache before issue 25's key: 32 bytes of the hash.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Key32([u8; 32]);

impl std::hash::Hash for Key32 {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(first));
    }
}

/// What a cached record was: `Cached<Resolved>` (the record, its read
/// time and epoch).
type OldCached = std::sync::Arc<(Resolved, u64, u64)>;

enum Sim {
    Ours(Box<TokenCache<Resolved>>),
    Moka(moka::future::Cache<Key32, OldCached, BuildDigestHasher>),
}

fn sim(capacity: u64, moka: bool) -> Sim {
    if !moka {
        return Sim::Ours(Box::new(cache(capacity)));
    }
    let evictions = Metrics::new().cache_evictions;
    Sim::Moka(
        moka::future::Cache::builder()
            .max_capacity(capacity)
            .eviction_listener(move |_k, _v, _cause| {
                evictions.with_label_values(&["size"]).inc();
            })
            .build_with_hasher(BuildDigestHasher::default()),
    )
}

fn record(i: u64) -> Resolved {
    let name = format!("mem-{i}");
    Resolved::new(TokenRecord::content_api(
        i as i64,
        &name,
        ContentApiType::ReadOnly,
    ))
}

impl Sim {
    /// Ask for token `i`; true when the cache answered without loading.
    async fn ask(&self, i: u64, loads: &AtomicU64) -> bool {
        match self {
            Sim::Ours(c) => ask(c, i, loads).await,
            Sim::Moka(c) => {
                let mut k = [0u8; 32];
                k.copy_from_slice(&presented(i).hash.0[..32]);
                if c.get(&Key32(k)).await.is_some() {
                    return true;
                }
                loads.fetch_add(1, Ordering::Relaxed);
                c.insert(Key32(k), std::sync::Arc::new((record(i), 0, 0)))
                    .await;
                false
            }
        }
    }

    async fn settle(&self) -> u64 {
        match self {
            Sim::Ours(c) => {
                c.run_pending_tasks().await;
                c.entry_count()
            }
            Sim::Moka(c) => {
                c.run_pending_tasks().await;
                c.entry_count()
            }
        }
    }
}

fn cache(capacity: u64) -> TokenCache<Resolved> {
    TokenCache::new(
        &CacheConfig {
            capacity,
            ttl: Duration::from_secs(3600),
            negative_ttl: Duration::from_secs(5),
            stale_if_error: Duration::from_secs(30),
        },
        Metrics::new(),
    )
}

/// Ask for token `i`; true when the cache answered without loading.
async fn ask(c: &TokenCache<Resolved>, i: u64, loads: &AtomicU64) -> bool {
    let before = loads.load(Ordering::Relaxed);
    let found = c
        .get_or_load(presented(i), || async {
            loads.fetch_add(1, Ordering::Relaxed);
            Ok(Some(record(i)))
        })
        .await;
    found.is_ok() && loads.load(Ordering::Relaxed) == before
}

fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

async fn memory(n: u64, moka: bool) {
    let before = rss();
    let c = sim(n + n / 10, moka);
    let loads = AtomicU64::new(0);
    for i in 0..n {
        c.ask(i, &loads).await;
    }
    let entries = c.settle().await;
    let after = rss();
    let mib = |b: u64| b as f64 / 1048576.0;
    println!(
        "cache alone ({}): {n} tokens, {entries} entries; RSS {:.1} -> {:.1} MiB; {:.0} bytes an entry",
        if moka { "moka" } else { "ours" },
        mib(before),
        mib(after),
        (after - before) as f64 / entries.max(1) as f64
    );
}

/// Zipf ranks over `n` items (s = 0.99) by inverse CDF.
struct Zipf {
    cdf: Vec<f64>,
    state: u64,
}

impl Zipf {
    fn new(n: usize, s: f64, seed: u64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for k in 1..=n {
            sum += 1.0 / (k as f64).powf(s);
            cdf.push(sum);
        }
        for v in &mut cdf {
            *v /= sum;
        }
        Self { cdf, state: seed }
    }

    fn next(&mut self) -> u64 {
        self.state = splitmix(self.state);
        let u = (self.state >> 11) as f64 / (1u64 << 53) as f64;
        self.cdf.partition_point(|c| *c < u) as u64
    }
}

async fn hits(moka: bool) {
    const TOKENS: usize = 1_000_000;
    const CAPACITY: u64 = 100_000;
    const REQUESTS: u64 = 2_000_000;
    const SCAN_EVERY: u64 = 100_000;
    const SCAN_LEN: u64 = 100_000;
    for scans in [false, true] {
        let c = sim(CAPACITY, moka);
        let loads = AtomicU64::new(0);
        let mut zipf = Zipf::new(TOKENS, 0.99, 25);
        let (mut asked, mut hit, mut scanned, mut zipf_hit) = (0u64, 0u64, 0u64, 0u64);
        for r in 0..REQUESTS {
            let rank = zipf.next();
            // Ranks to tokens through a permutation, so popularity is not
            // the order of ids.
            let h = u64::from(c.ask(splitmix(rank) % TOKENS as u64, &loads).await);
            hit += h;
            zipf_hit += h;
            asked += 1;
            if scans && r % SCAN_EVERY == SCAN_EVERY - 1 {
                for _ in 0..SCAN_LEN {
                    // Tokens outside the Zipf population, each seen once.
                    let one_off = TOKENS as u64 + scanned;
                    scanned += 1;
                    hit += u64::from(c.ask(one_off, &loads).await);
                    asked += 1;
                }
            }
        }
        let name = if scans { "scan" } else { "zipf" };
        println!(
            "hit rate {name} ({}): {:.4} ({hit} of {asked} requests; of the Zipf requests alone {:.4}; capacity {CAPACITY}, {TOKENS} tokens, s = 0.99{})",
            if moka { "moka" } else { "ours" },
            hit as f64 / asked as f64,
            zipf_hit as f64 / REQUESTS as f64,
            if scans {
                ", a 100,000-token scan every 100,000 requests"
            } else {
                ""
            }
        );
    }
}

/// Nanoseconds of one HMAC-SHA512 of a 256-character key (`token::Hasher`:
/// what a key costs when the cache has no record for it, a made-up key
/// above all), the best of five runs of 200,000.
fn hash_time() {
    let hasher = authgate::token::Hasher::new("bench-salt-0123456789abcdef");
    let mut key = "0123456789abcdef".repeat(16).into_bytes();
    let (mut best, mut sink) = (f64::MAX, 0u8);
    for _ in 0..5 {
        let t = std::time::Instant::now();
        for i in 0..200_000u32 {
            key[0] = b'a' + (i % 6) as u8;
            sink ^= hasher.hash(&key).0[0];
        }
        best = best.min(t.elapsed().as_nanos() as f64 / 200_000.0);
    }
    println!("HMAC-SHA512 of a 256-hex key: {best:.0} ns ({sink})");
}

fn main() {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(1);
        }
    };
    let args: Vec<String> = std::env::args().collect();
    let moka = args.iter().any(|a| a == "moka");
    match args.get(1).map(String::as_str) {
        Some("memory") => {
            let n = args
                .get(2)
                .and_then(|v| v.parse().ok())
                .unwrap_or(1_000_000);
            rt.block_on(memory(n, moka));
        }
        Some("hits") => rt.block_on(hits(moka)),
        Some("hash") => hash_time(),
        _ => {
            eprintln!("usage: bench_cache_sim memory [N] [moka] | hits [moka]");
            std::process::exit(2);
        }
    }
}
