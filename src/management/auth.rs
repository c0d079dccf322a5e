//! Who is calling: an admin token's key, checked exactly as the gateway
//! checks it on an admin route.
//!
//! The key is hashed ([`crate::token::Hasher`]) and looked up in the store
//! (not the cache: management calls are rare and must see the latest
//! revocation), and the record goes through [`authz::decide`] as if the
//! request were an admin route needing the endpoint's action. So the kind,
//! expiry, owner presence and status checks, and the token ∩ owner
//! permission rule, are the gateway's own, with the same 401/403 answers.
//! A token pinned to networks is refused from anywhere else, here as on
//! the proxy: `client` is the management request's client address (the
//! peer, or what `server.trusted_proxies` resolve).
//! The acting user is then the token's owner, acting through the token
//! ([`crate::control::TokenActor`]), and every management rule applies on
//! top in [`crate::control`].

use std::net::IpAddr;
use std::time::SystemTime;

use crate::authz::{self, Denial, Verdict};
use crate::control::TokenActor;
use crate::model::Ownership;
use crate::route::{Route, RouteAction, RouteClass};
use crate::token::{self, Hasher};

use super::State;

/// Authenticate `key`, sent from `client`, as an admin token holding
/// `action` (token AND owner; `None`: any valid admin token). Uses are
/// recorded as the gateway records them (`last_used_at`), also when the
/// action is then refused.
pub async fn authenticate(
    state: &State,
    key: &[u8],
    action: Option<&str>,
    client: IpAddr,
) -> Result<TokenActor, Denial> {
    if !token::looks_like_key(key) {
        return Err(Denial::InvalidCredentials);
    }
    let hasher = Hasher::new(state.cfg.tokens.salt.expose());
    let record = match state.store.find_token(&hasher.hash(key).to_hex()).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "management: token lookup failed");
            return Err(Denial::StoreUnavailable);
        }
    };
    let route = Route {
        class: RouteClass::Admin,
        auth_required: true,
        action: match action {
            Some(action) => RouteAction::Admin {
                action,
                subject: None,
            },
            None => RouteAction::None,
        },
    };
    let now = SystemTime::now();
    let verdict = authz::decide(&route, record.as_ref(), None, now, client);
    let authenticated = matches!(
        verdict,
        Verdict::Allow
            | Verdict::Deny {
                authenticated: true,
                ..
            }
    );
    if let (true, Some(r)) = (authenticated, &record) {
        state.usage.record(r.id, now);
    }
    match verdict {
        Verdict::Allow => {}
        Verdict::Deny { denial, .. } => return Err(denial),
        // Only content-API tokens on GraphQL ask for this.
        Verdict::NeedGraphQlOperation => return Err(Denial::InvalidCredentials),
    }
    let Some(record) = record else {
        return Err(Denial::InvalidCredentials);
    };
    let Ownership::Owner(owner) = &record.ownership else {
        return Err(Denial::OwnerNotFound);
    };
    // The owner as a user row (roles, name) for the management rules.
    let user = match state.store.user_by_id(owner.id).await {
        Ok(Some(u)) => u,
        Ok(None) => return Err(Denial::OwnerNotFound),
        Err(e) => {
            tracing::error!(error = %e, "management: owner lookup failed");
            return Err(Denial::StoreUnavailable);
        }
    };
    if !user.is_active || user.blocked {
        return Err(Denial::OwnerDeactivated);
    }
    Ok(TokenActor {
        user,
        token_id: record.id,
        permissions: record.permissions,
    })
}
