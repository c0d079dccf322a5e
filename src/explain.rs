//! `authgate explain`: why a request is decided as it is.
//!
//! Operators used to answer "why was this refused?" by reading logs and the
//! route table in their head. [`explain`] answers it from the running config
//! and store, with the gateway's own functions: the request is held and
//! judged by `gate::Gate::decide`, exactly as the proxy door does, and the
//! answer is then laid out: the route class and action with the table
//! entries that gave them (`route::RouteTable::mapping`), every reading of
//! the target and whether they agree (`route::readings`), the token the key
//! belongs to (never the key), and the decision with its status and reason.
//!
//! The gate it asks is built for the purpose ([`dry_gate`]): the same
//! policy, store and rules, but a cache, known-hash set, rate-limit
//! counters and `last_used_at` recorder of its own, so explaining writes
//! nothing and takes nothing from the replicas' limits. Its lookups go to
//! the store, as a replica's first lookup of a key does. Rate limits
//! therefore never show as the reason (a replica's counters are its own).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, Method, Uri, Version};
use serde::Serialize;

use crate::answer::Refusal;
use crate::cache::{Resolved, TokenCache};
use crate::config::Config;
use crate::forward::{Forwarder, Peer};
use crate::gate::{Body, Door, Gate, GateParts, Judged, Outcome, Presented};
use crate::known::KnownHashes;
use crate::last_used::UsageRecorder;
use crate::lookup::{Lookup, Recent};
use crate::metrics::Metrics;
use crate::model::{Ownership, TokenRecord};
use crate::policy::PolicyStore;
use crate::ratelimit::RateLimiter;
use crate::route::{self, MappedBy, RouteTable};
use crate::store::Store;
use crate::token::Hasher;

/// A request to explain.
pub struct Question {
    pub method: Method,
    /// The request target as a client sends it (origin or absolute form).
    pub target: Uri,
    /// Its headers (`Authorization` included when a key is given; `Host`).
    pub headers: HeaderMap,
    /// The client address the gateway would see.
    pub client: IpAddr,
    /// The body, when the question comes with one (GraphQL).
    pub body: Option<Bytes>,
}

/// The answer: what the gateway decides, and why.
#[derive(Debug, Serialize)]
pub struct Explanation {
    pub method: String,
    pub target: String,
    pub client: String,
    /// The normal form of the path, or why there is none.
    pub normal_path: Result<String, String>,
    pub readings: Readings,
    /// The route of the normal form (absent when the path cannot be
    /// normalised).
    pub route: Option<RouteFacts>,
    pub token: Option<TokenFacts>,
    pub decision: DecisionFacts,
    /// What the facts above say in words, where a reason code is terse
    /// (a wrong kind reads as `invalid_credentials`, as Strapi answers).
    pub notes: Vec<String>,
}

/// Every reading of the raw path and the route each gives.
#[derive(Debug, Serialize)]
pub struct Readings {
    pub agree: bool,
    pub readings: Vec<Reading>,
}

#[derive(Debug, Serialize)]
pub struct Reading {
    pub path: String,
    pub class: &'static str,
    pub action: Option<String>,
    /// Differs from the normal form's route.
    pub differs: bool,
}

#[derive(Debug, Serialize)]
pub struct RouteFacts {
    pub class: &'static str,
    pub auth_required: bool,
    pub action: Option<String>,
    pub subject: Option<String>,
    /// The prefix that gave the class.
    pub prefix: Option<String>,
    /// The `[[routes.rule]]` that says whether a token is required.
    pub rule: Option<String>,
    /// Where the action comes from.
    pub mapped_by: String,
}

#[derive(Debug, Serialize)]
pub struct TokenFacts {
    pub id: i64,
    pub kind: &'static str,
    #[serde(rename = "type")]
    pub token_type: Option<&'static str>,
    pub name: String,
    pub expires_at: Option<String>,
    pub expired: bool,
    pub owner: Option<OwnerFacts>,
    pub networks: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct OwnerFacts {
    pub id: Option<i64>,
    pub email: Option<String>,
    pub active: bool,
    pub blocked: bool,
}

#[derive(Debug, Serialize)]
pub struct DecisionFacts {
    /// `allow` (forwarded with identity), `pass` (forwarded without),
    /// `deny`, or `would_deny` (report mode: forwarded without identity).
    pub decision: &'static str,
    /// The status the gateway answers itself (`None`: the CMS answers).
    pub status: Option<u16>,
    pub reason: Option<&'static str>,
    pub name: Option<&'static str>,
    pub message: Option<&'static str>,
}

/// A gate over the running config and store, with nothing the replicas
/// share: a cache, known-hash set, limits and use recorder of its own.
pub async fn dry_gate(cfg: &Config, store: Store) -> Result<Gate, crate::serve_error::ServeError> {
    let metrics = Metrics::new();
    let policy = PolicyStore::new(cfg);
    if store.capabilities().stores_content_types {
        let client = crate::store::connect(&cfg.postgres).await?;
        crate::strapi5_sync::load_content_types(&client, &policy).await?;
    }
    let lookup = Lookup::new(
        Hasher::new(cfg.tokens.salt.expose()),
        Arc::new(KnownHashes::default()),
        Arc::new(TokenCache::<Resolved>::new(&cfg.cache, metrics.clone())),
        store,
        metrics.clone(),
    );
    let parts = GateParts {
        policy: policy.handle(),
        forwarder: Forwarder::from_config(cfg)?,
        lookup,
        usage: Arc::new(UsageRecorder::new(cfg.tokens.last_used_interval)),
        limiter: RateLimiter::new(&cfg.rate_limit, metrics.clone()),
        metrics,
        // A dry run exports no traces.
        tracer: crate::trace::Tracer::off(),
    };
    Ok(Gate::new(cfg, parts))
}

/// Judge `q` as the proxy would, and say why.
pub async fn explain(gate: &Gate, q: Question) -> Explanation {
    let held = gate.hold(
        Door::Proxy,
        q.method.clone(),
        q.target.clone(),
        Version::HTTP_11,
    );
    let peer = Peer::new(SocketAddr::new(q.client, 0), false);
    let presented = Presented {
        headers: &q.headers,
        client: q.client,
        body: q.body.clone().map_or(Body::Absent, Body::Buffered),
    };
    let judged = gate
        .decide(&held, &peer, presented, &Recent::default())
        .await;
    let policy = held.policy();
    let normal = route::normalise(q.target.path()).map(|p| p.into_owned());
    let (readings, route) = match &normal {
        Ok(normal) => (
            readings(&policy.routes, &q.method, q.target.path(), normal),
            Some(route_facts(&policy.routes, &q.method, normal)),
        ),
        Err(_) => (
            Readings {
                agree: false,
                readings: Vec::new(),
            },
            None,
        ),
    };
    let token = token_facts(&judged);
    let notes = notes(route.as_ref(), token.as_ref(), q.client);
    Explanation {
        method: q.method.to_string(),
        target: q.target.to_string(),
        client: q.client.to_string(),
        normal_path: normal.map_err(|e| e.to_string()),
        readings,
        route,
        token,
        decision: decision_facts(&judged),
        notes,
    }
}

/// The facts that explain a terse reason.
fn notes(route: Option<&RouteFacts>, token: Option<&TokenFacts>, client: IpAddr) -> Vec<String> {
    let mut out = Vec::new();
    let (Some(route), Some(token)) = (route, token) else {
        return out;
    };
    let takes = match route.class {
        "admin" => Some("admin"),
        "content-api" => Some("content-api"),
        _ => None,
    };
    if let Some(kind) = takes.filter(|k| *k != token.kind) {
        out.push(format!(
            "the key is a {} token; {} routes take {kind} tokens only",
            token.kind, route.class
        ));
    }
    if !token.networks.is_empty() {
        let admitted = token.networks.iter().any(|n| {
            n.parse::<crate::cidr::Cidr>()
                .is_ok_and(|c| c.contains(client))
        });
        if !admitted {
            out.push(format!(
                "the token is pinned to {} and {client} is outside them",
                token.networks.join(", ")
            ));
        }
    }
    if let Some(o) = &token.owner {
        match (o.id, o.active, o.blocked) {
            (None, _, _) => out.push("the token's owner no longer exists".into()),
            (_, false, _) => out.push("the token's owner is deactivated".into()),
            (_, _, true) => out.push("the token's owner is blocked".into()),
            _ => {}
        }
    }
    out
}

/// The route of every reading of `raw`, against the normal form's.
fn readings(table: &RouteTable, method: &Method, raw: &str, normal: &str) -> Readings {
    let of = |path: &str| {
        let r = table.classify(method, path);
        (r.class.as_str(), r.action.name().map(str::to_owned))
    };
    let normal_route = table.classify(method, normal);
    let mut out = vec![Reading {
        path: normal.to_owned(),
        class: normal_route.class.as_str(),
        action: normal_route.action.name().map(str::to_owned),
        differs: false,
    }];
    if let Ok(all) = route::readings::readings(raw) {
        for path in all.into_iter().filter(|p| p != normal) {
            let (class, action) = of(&path);
            let differs = table.classify(method, &path) != normal_route;
            out.push(Reading {
                path,
                class,
                action,
                differs,
            });
        }
    }
    Readings {
        agree: !out.iter().any(|r| r.differs),
        readings: out,
    }
}

fn route_facts(table: &RouteTable, method: &Method, normal: &str) -> RouteFacts {
    let route = table.classify(method, normal);
    let mapping = table.mapping(method, normal);
    let subject = match &route.action {
        route::RouteAction::Admin { subject, .. } => subject.as_deref().map(str::to_owned),
        _ => None,
    };
    RouteFacts {
        class: route.class.as_str(),
        auth_required: route.auth_required,
        action: route.action.name().map(str::to_owned),
        subject,
        prefix: mapping.prefix,
        rule: mapping.rule,
        mapped_by: match mapping.action {
            MappedBy::Nothing => "nothing: the route class alone decides".into(),
            MappedBy::Row(row) => format!("action table row `{row}`"),
            MappedBy::ContentType(uid) => format!("content type {uid} (its CRUD routes)"),
            MappedBy::GraphQl => "the GraphQL endpoint: the operation decides".into(),
        },
    }
}

fn token_facts(judged: &Judged<'_>) -> Option<TokenFacts> {
    let Judged::Judged { outcome, .. } = judged else {
        return None;
    };
    let r: &TokenRecord = &outcome.token()?.record;
    let expires = r.expires_at.get();
    Some(TokenFacts {
        id: r.id,
        kind: r.kind.as_str(),
        token_type: r.token_type.map(|t| t.as_str()),
        name: r.name.to_string(),
        expires_at: expires.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
        expired: expires.is_some_and(|t| t <= SystemTime::now()),
        owner: match &r.ownership {
            Ownership::None => None,
            Ownership::Missing => Some(OwnerFacts {
                id: None,
                email: None,
                active: false,
                blocked: false,
            }),
            Ownership::Owner(o) => Some(OwnerFacts {
                id: Some(o.id),
                email: Some(o.email.clone()),
                active: o.is_active,
                blocked: o.blocked,
            }),
        },
        networks: r
            .networks
            .as_slice()
            .iter()
            .map(|c| c.to_string())
            .collect(),
    })
}

fn decision_facts(judged: &Judged<'_>) -> DecisionFacts {
    let refused = |decision, r: Refusal| DecisionFacts {
        decision,
        status: Some(r.status()),
        reason: Some(r.label()),
        name: Some(r.name()),
        message: Some(r.message()),
    };
    let forwarded = |decision| DecisionFacts {
        decision,
        status: None,
        reason: None,
        name: None,
        message: None,
    };
    match judged {
        Judged::Unjudged { refusal, .. } => refused("deny", *refusal),
        Judged::Judged { outcome, .. } => match outcome {
            Outcome::Allow(_) => forwarded("allow"),
            Outcome::Pass => forwarded("pass"),
            Outcome::Reported { refusal, .. } => refused("would_deny", *refusal),
            Outcome::Refuse { refusal, .. } | Outcome::Failed { refusal, .. } => {
                refused("deny", *refusal)
            }
        },
    }
}
