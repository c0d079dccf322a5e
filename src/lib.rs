//! authgate: a token-checking reverse proxy for Strapi-style CMSs.
//!
//! # Layout
//!
//! | module | concept |
//! | --- | --- |
//! | [`token`] | key generation, the salted HMAC-SHA512 hash, the encrypted viewable copy |
//! | [`model`] | the facts about a token (record, owner, permissions) |
//! | [`route`] | path normalisation, route classes, action tables |
//! | [`authz`] | the pure decision and the error envelope |
#![forbid(unsafe_code)]

pub mod authz;
pub mod cache;
pub mod config;
pub mod metrics;
pub mod model;
pub mod route;
pub mod store;
pub mod token;
