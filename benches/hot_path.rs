//! Micro-benchmarks of the request path's pieces (issue 6):
//! `cargo bench --bench hot_path`.

// Test code: a failure here is the test failing, so it may unwrap.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use authgate::authz::{decide, parse_authorization};
use authgate::cache::{Fingerprint, Presented, Resolved, TokenCache};
use authgate::config::CacheConfig;
use authgate::forward::{Allowed, Forwarder, Forwarding, IdentityNames, Outgoing, Peer};
use authgate::metrics::Metrics;
use authgate::model::{
    ContentApiType, Owner, Ownership, Permission, PermissionSet, TokenKind, TokenRecord,
};
use authgate::route::normalise;
use authgate::token::Hasher;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, Method};

fn routes() -> authgate::config::Config {
    let text = "[tokens]\nsalt = \"bench\"\n[[content_types]]\nuid = \"api::article.article\"\nplural = \"articles\"\n";
    authgate::config::parse_raw(text, std::path::Path::new("bench.toml"), Vec::new())
        .and_then(|r| r.compile())
        .expect("config")
}

fn admin_record() -> TokenRecord {
    let perm = Permission::new(
        "plugin::content-manager.explorer.read",
        Some("api::article.article".into()),
    );
    TokenRecord {
        id: 42,
        kind: TokenKind::Admin,
        name: "ci-pipeline".into(),
        token_type: None,
        expires_at: authgate::model::Expiry::NEVER,
        ends: authgate::model::Ending::Token,
        permissions: [perm.clone()].into_iter().collect(),
        ownership: Ownership::owner(Owner {
            id: 7,
            email: "ops@example.com".into(),
            is_active: true,
            blocked: false,
            super_admin: false,
            permissions: [perm].into_iter().collect::<PermissionSet>(),
            role_ids: vec![3],
        }),
        rate_limit: Default::default(),
        networks: Default::default(),
    }
}

fn benches(c: &mut Criterion) {
    let key = "0123456789abcdef".repeat(16);
    let header = format!("Bearer {key}");
    c.bench_function("authorization header parse", |b| {
        b.iter(|| parse_authorization(std::iter::once(black_box(header.as_bytes()))))
    });

    let cfg = routes();
    c.bench_function("normalise (already normal)", |b| {
        b.iter(|| normalise(black_box("/api/articles/12")))
    });
    c.bench_function("normalise (dot segments, escapes)", |b| {
        b.iter(|| normalise(black_box("/api/./x/../%61rticles//12")))
    });
    c.bench_function("classify content-API route", |b| {
        b.iter(|| {
            cfg.routes
                .classify(&Method::GET, black_box("/api/articles/12"))
                .class
        })
    });
    c.bench_function("classify admin route (built-in table)", |b| {
        b.iter(|| {
            cfg.routes
                .classify(
                    &Method::GET,
                    black_box("/content-manager/collection-types/api::article.article/5"),
                )
                .class
        })
    });

    let hasher = Hasher::new("a-production-length-salt-0123456789abcdef");
    c.bench_function("hash a key (HMAC-SHA512)", |b| {
        b.iter(|| hasher.hash(black_box(key.as_bytes())))
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let cache: TokenCache<TokenRecord> = TokenCache::new(
        &CacheConfig {
            capacity: 100_000,
            ttl: Duration::from_secs(3600),
            negative_ttl: Duration::from_secs(5),
            stale_if_error: Duration::from_secs(30),
        },
        Metrics::new(),
    );
    let h = Presented {
        fingerprint: Fingerprint(0x5eed),
        hash: hasher.hash(key.as_bytes()),
    };
    rt.block_on(cache.get_or_load(h, || async { Ok(Some(admin_record())) }))
        .expect("fill");
    c.bench_function("cache lookup (hit)", |b| {
        b.iter(|| rt.block_on(cache.get_or_load(black_box(h), || async { Ok(None) })))
    });

    let record = admin_record();
    let route = cfg.routes.classify(
        &Method::GET,
        "/content-manager/collection-types/api::article.article/5",
    );
    let now = SystemTime::now();
    let client = std::net::IpAddr::from([192, 0, 2, 1]);
    c.bench_function("decide (admin token, live intersection)", |b| {
        b.iter(|| {
            decide(
                black_box(&route),
                Some(black_box(&record)),
                None,
                now,
                client,
            )
        })
    });
    let mut ro = admin_record();
    ro.kind = TokenKind::ContentApi;
    ro.token_type = Some(ContentApiType::ReadOnly);
    ro.ownership = Ownership::None;
    let api = cfg.routes.classify(&Method::GET, "/api/articles");
    c.bench_function("decide (read-only token)", |b| {
        b.iter(|| decide(black_box(&api), Some(black_box(&ro)), None, now, client))
    });

    let names = IdentityNames::new("x-auth-").unwrap();
    let resolved = Resolved::new(admin_record());
    let forwarder = Forwarder::new(names, None, false, &Forwarding::default(), None);
    let peer = Peer::new("10.0.0.9:5555".parse().unwrap(), false);
    let request_id = http::HeaderValue::from_static("rid");
    let host = http::HeaderValue::from_static("cms");
    c.bench_function("request head: strip + forwarding + identity", |b| {
        b.iter(|| {
            let mut h = HeaderMap::with_capacity(16);
            h.insert("host", "cms".parse().unwrap());
            h.insert("x-auth-token-id", "1".parse().unwrap());
            let out = Outgoing {
                peer: &peer,
                requested_host: Some(&host),
                request_id: &request_id,
                path_and_query: "/admin/users",
                allowed: Some(Allowed {
                    record: black_box(&resolved.record),
                    action: Some("read"),
                }),
                upgrade: false,
                trace: None,
            };
            let head = forwarder.prepare(&Method::GET, &mut h, out);
            black_box((h, head))
        })
    });
}

criterion_group!(name = hot_path; config = Criterion::default().measurement_time(Duration::from_secs(3)); targets = benches);
criterion_main!(hot_path);
