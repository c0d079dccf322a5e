//! The live policy: what a request is judged by, published as a snapshot.
//!
//! The route table (route classes, action tables, the content types) and
//! the few settings that go with it change while authgate runs: a config
//! reload (`reload`) replaces the config's part, and in the strapi5 layout
//! the poller (`strapi5_sync`) replaces the content types Strapi stores.
//! This room compiles both sources into one [`Policy`] and publishes it, as
//! linkerd2-proxy's policy store does: the writers hold the [`PolicyStore`],
//! the readers (the gateway, the management listener) a [`PolicyHandle`],
//! and neither knows the other. A request takes one snapshot
//! ([`PolicyHandle::snapshot`]) as it arrives and is judged by it to the
//! end, whatever is published meanwhile.

use std::sync::{Arc, Mutex, RwLock};

use crate::authz::SessionPolicy;
use crate::config::{Config, Enforcement};
use crate::content_types;
use crate::route::{ContentTypeSpec, RouteSpec, RouteTable};

/// What a request is judged by, as compiled from the config and the
/// content types Strapi stores.
#[derive(Debug, Clone)]
pub struct Policy {
    pub routes: Arc<RouteTable>,
    pub sessions: SessionPolicy,
    pub graphql_max_body: usize,
    /// Refuse what authorization denies, or only report it.
    pub enforcement: Enforcement,
}

impl Policy {
    /// The config's policy alone (no stored content types).
    pub fn from_config(cfg: &Config) -> Self {
        Self {
            routes: cfg.routes.clone(),
            sessions: cfg.sessions,
            graphql_max_body: cfg.graphql_max_body,
            enforcement: cfg.server.enforcement,
        }
    }
}

/// The reading side: a cheap handle on the policy in force.
#[derive(Debug, Clone)]
pub struct PolicyHandle {
    live: Arc<RwLock<Arc<Policy>>>,
}

impl PolicyHandle {
    /// A handle on a fixed policy (tests, tools).
    pub fn fixed(p: Policy) -> Self {
        Self {
            live: Arc::new(RwLock::new(Arc::new(p))),
        }
    }

    /// The policy in force now.
    pub fn snapshot(&self) -> Arc<Policy> {
        self.live.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The route table in force now.
    pub fn routes(&self) -> Arc<RouteTable> {
        self.snapshot().routes.clone()
    }
}

/// The policy's two sources, each replaced by its own writer.
struct Sources {
    spec: Arc<RouteSpec>,
    sessions: SessionPolicy,
    graphql_max_body: usize,
    enforcement: Enforcement,
    found: Vec<ContentTypeSpec>,
}

/// The writing side: compiles the sources and publishes the result.
pub struct PolicyStore {
    sources: Mutex<Sources>,
    handle: PolicyHandle,
}

impl PolicyStore {
    pub fn new(cfg: &Config) -> Self {
        Self {
            sources: Mutex::new(Sources {
                spec: cfg.route_spec.clone(),
                sessions: cfg.sessions,
                graphql_max_body: cfg.graphql_max_body,
                enforcement: cfg.server.enforcement,
                found: Vec::new(),
            }),
            handle: PolicyHandle::fixed(Policy::from_config(cfg)),
        }
    }

    /// A handle for a reader.
    pub fn handle(&self) -> PolicyHandle {
        self.handle.clone()
    }

    /// A config (re)loaded: its part replaces the old one; the content
    /// types Strapi stores are kept.
    pub fn set_config(&self, cfg: &Config) {
        let mut s = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        s.spec = cfg.route_spec.clone();
        s.sessions = cfg.sessions;
        s.graphql_max_body = cfg.graphql_max_body;
        if s.enforcement != cfg.server.enforcement {
            tracing::warn!(
                from = s.enforcement.as_str(),
                to = cfg.server.enforcement.as_str(),
                "server.enforcement changed by reload"
            );
        }
        s.enforcement = cfg.server.enforcement;
        self.publish(&s);
    }

    /// Strapi's stored content types changed.
    pub fn set_found(&self, found: Vec<ContentTypeSpec>) {
        let mut s = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if s.found == found {
            return;
        }
        s.found = found;
        self.publish(&s);
    }

    fn publish(&self, s: &Sources) {
        let routes = match content_types::routes(&s.spec, &s.found) {
            Ok(r) => r,
            Err(e) => {
                // Cannot happen for types `content_types::parse` accepted;
                // keep the config's.
                tracing::error!(error = %e, "content types from Strapi rejected; using the config's only");
                match RouteTable::build(&s.spec) {
                    Ok(r) => r,
                    Err(_) => return,
                }
            }
        };
        let p = Arc::new(Policy {
            routes: Arc::new(routes),
            sessions: s.sessions,
            graphql_max_body: s.graphql_max_body,
            enforcement: s.enforcement,
        });
        *self.handle.live.write().unwrap_or_else(|e| e.into_inner()) = p;
    }
}
