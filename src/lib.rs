//! authgate: a token-checking reverse proxy for Strapi-style CMSs.
//!
//! # Layout
//!
//! | module | concept |
//! | --- | --- |
//! | [`config`] | `config.toml` parsed once into checked runtime types |
//! | [`token`] | key generation, the salted HMAC-SHA512 hash, the encrypted viewable copy |
//! | [`model`] | the facts about a token (record, owner, permissions) |
//! | [`route`] | path normalisation, its readings, route classes, action tables |
//! | [`policy`] | the live policy (route table and content types), published as a snapshot |
//! | [`authz`] | the pure decision and its denials |
//! | [`answer`] | every refusal, and the one response it becomes |
//! | [`cidr`] | address blocks: trusted proxies, the networks a token is pinned to |
//! | [`envelope`] | Strapi's error envelope, for refusals and management errors alike |
//! | [`graphql`] | the operations of a GraphQL request, under every reading a CMS could make of it |
//! | [`store`] | Postgres: every SQL statement, migrations, lookups, audited writes (authgate's tables, or Strapi 5's read in place) |
//! | [`cache`] | the token cache: records by key fingerprint (S3-FIFO), absences (moka); TTL, stale-if-error, single flight |
//! | [`invalidation`] | LISTEN/NOTIFY events that keep caches current; the listener and its self-test |
//! | [`strapi5_sync`] | strapi5 layout: polls Strapi's tables for changes and content types |
//! | [`content_types`] | Strapi's stored content types merged with `[[content_types]]` |
//! | [`lookup`] | the look-up phase: known hashes, cache, store |
//! | [`known`] | the set of issued hashes: floods of made-up keys never reach the database |
//! | [`gate`] | one judgement for every door: arrive, judge, precheck, look up, decide, log |
//! | [`forward`] | the head the CMS receives: hop-by-hop, forwarding headers, `Host`, identity, signature, upgrades |
//! | [`request_id`] | request ids |
//! | [`ratelimit`] | per-token and per-IP limits |
//! | [`redis_link`] | Redis (one server, Cluster or Sentinel; TLS): shared rate-limit counters, invalidation fan-out |
//! | [`last_used`] | batched `last_used_at` writes |
//! | [`token_stats`] | the token gauges (by kind and state), counted in the background |
//! | [`body`] | the forwarded request's body type, which the proxy builds and the upstream client sends |
//! | [`tunnel`] | a WebSocket tunnel's life: its connection's place, idle timeout, drain, its token's revocation |
//! | [`upstream`] | the client to the CMS: its own HTTP/1.1, a connection pinned to each client connection |
//! | [`proxy`] | the proxy door: the gate's judgement, then forwarding |
//! | [`decision`] | the decision doors: forward-auth, Envoy ext_authz (HTTP, gRPC) for a front proxy |
//! | [`accept`] | accepting connections, with a pause after a failed accept |
//! | [`server`] | composition, listeners, graceful drain, probes |
//! | [`serve_error`] | start-up failures of the listeners |
//! | [`reload`] | config and certificate reloads, signals |
//! | [`tls`] | rustls set-up |
//! | [`control`] | who may manage which token: the ownership rules and the token operations |
//! | [`audit`] | the audit event, its canonical form, the HMAC chain and its verification |
//! | [`management`] | the management listener: Strapi-shaped token REST API and web page |
//! | [`metrics`] | Prometheus families |
//! | [`telemetry`] | `tracing` set-up (logs), errors written with their causes |
//! | [`trace`] | distributed traces: W3C Trace Context in, OTLP/HTTP out |
//! | [`explain`] | `authgate explain`: why a request is decided as it is, by the gate's own functions |
//! | [`cli`] | the `authgate` command |
//!
//! The house rules (no `unsafe`, no `unwrap()` or `expect()` outside tests,
//! the size limits) are in ARCHITECTURE.md; the mechanical ones are
//! `[lints]` in `Cargo.toml` and the `deny` below.

#![deny(clippy::expect_used)]

pub mod accept;
pub mod answer;
pub mod audit;
pub mod authz;
pub mod body;
pub mod cache;
pub mod cidr;
pub mod cli;
pub mod config;
pub mod content_types;
pub mod control;
pub mod decision;
pub mod envelope;
pub mod explain;
pub mod forward;
pub mod gate;
pub mod graphql;
pub mod invalidation;
pub mod known;
pub mod last_used;
pub mod lookup;
pub mod management;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod proxy;
pub mod ratelimit;
pub mod redis_link;
pub mod reload;
pub mod request_id;
pub mod route;
pub mod serve_error;
pub mod server;
pub mod store;
pub mod strapi5_sync;
pub mod telemetry;
pub mod tls;
pub mod token;
pub mod token_stats;
pub mod trace;
pub mod tunnel;
pub mod upstream;
