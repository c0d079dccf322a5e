//! Token control: who may do what to which token, and the operations
//! themselves (key generation, hashing, encryption, store writes). Named
//! apart from [`crate::management`], the listener that serves them over HTTP.
//!
//! Shared by the CLI and the management API and web page, so all enforce the
//! same rules, stated once in [`Manager::check`]:
//!
//! | operation | content-API token | admin token |
//! | --- | --- | --- |
//! | list, show | `admin::api-tokens.read` | `admin::admin-tokens.read` |
//! | create | `admin::api-tokens.create` | `admin::admin-tokens.create`; owner = the actor; every permission held by the owner |
//! | edit | `admin::api-tokens.update` | `admin::admin-tokens.update`, and owner or super-admin |
//! | delete | `admin::api-tokens.delete` | `admin::admin-tokens.delete`, and owner or super-admin |
//! | regenerate | `admin::api-tokens.regenerate` | `admin::admin-tokens.regenerate`, and owner only |
//! | view the key | `admin::api-tokens.read` | `admin::admin-tokens.read`, and owner only |
//! | owner's permissions | — | `admin::admin-tokens.read`, and owner or super-admin |
//!
//! The actor is the host operator (the CLI without `--as`), who holds every
//! right: whoever runs the CLI on the host already has the database and the
//! keys; or an admin user (`--as EMAIL`), who holds what their roles grant;
//! or an admin user acting through one of their admin tokens (the management
//! API and web page), who holds only what the token AND the user hold, the
//! same intersection the gateway applies on admin routes.
//!
//! Nobody hands out what they do not hold: an admin token's permissions must
//! be held by its owner and by the actor granting them. So a token that may
//! create admin tokens cannot mint one broader than itself (Strapi lets it
//! reach the owner's full ceiling; we do not, see ARCHITECTURE.md).
//!
//! | file | holds |
//! | --- | --- |
//! | `mod.rs` | the rules: [`Op`], [`Manager::check`], [`ControlError`], [`Rule`] |
//! | `actor.rs` | who is acting: [`Actor`], [`TokenActor`] |
//! | `tokens.rs` | the token operations: create, import, show, regenerate, update, delete |
//! | `catalog.rs` | the permissions a token can be given, grouped for display |
//! | `bootstrap.rs` | the bootstrap token from `[management] bootstrap_token_file` |

mod actor;
mod bootstrap;
mod catalog;
mod tokens;

use std::sync::Arc;

use crate::audit::{AuditCtx, AuditKey, Origin};
use crate::config::Config;
use crate::model::{Permission, TokenKind};
use crate::route::RouteTable;
use crate::store::admin::TokenRow;
use crate::store::{Store, StoreError};
use crate::token::{self, Hasher, KeyCipher};

pub use actor::{Actor, TokenActor};
pub use bootstrap::{Bootstrapped, BOOTSTRAP_EMAIL, BOOTSTRAP_TOKEN_NAME};
pub use catalog::PermissionGroup;
pub use tokens::{
    keep_expiring, parse_duration, CreateRequest, NewKey, TokenRef, TokenWithKey, LIFESPANS,
    MAX_KEEP_OLD,
};

/// Management failures. `Denied`, `NotFound` and `Invalid` map to 403, 404
/// and 400 in the API.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    /// A rule about a token's shape, which the CLI words with its flags and
    /// the API with its fields ([`Rule::cli_message`]).
    #[error("{}", .0.message())]
    Rule(Rule),
    /// A key brought along (`token import`) that cannot be one.
    #[error(transparent)]
    KeyShape(#[from] token::KeyShapeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Token(#[from] token::TokenError),
}

/// The shape rules of a new token, named apart from how a caller spells
/// the fields: an HTTP client never reads about a CLI flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    ContentTokenHasNoOwner,
    CustomNeedsPermission,
    PermissionsOnlyForCustom,
    ContentTokenNeedsType,
    AdminTokenHasNoType,
    AdminTokenNeedsOwner,
}

impl Rule {
    /// In the terms of the token's fields (the API, the web page).
    pub fn message(self) -> &'static str {
        match self {
            Rule::ContentTokenHasNoOwner => "content-API tokens have no owner",
            Rule::CustomNeedsPermission => "a custom token needs at least one permission",
            Rule::PermissionsOnlyForCustom => "permissions are only for custom tokens",
            Rule::ContentTokenNeedsType => "a content-API token needs a type",
            Rule::AdminTokenHasNoType => "admin tokens have no type",
            Rule::AdminTokenNeedsOwner => "an admin token needs an owner",
        }
    }

    /// In the terms of the command line's flags.
    pub fn cli_message(self) -> &'static str {
        match self {
            Rule::ContentTokenHasNoOwner => {
                "content-API tokens have no owner (--owner is for admin tokens)"
            }
            Rule::CustomNeedsPermission => "a custom token needs at least one --permission ACTION",
            Rule::PermissionsOnlyForCustom => {
                "--permission is only for custom tokens (--type custom)"
            }
            Rule::ContentTokenNeedsType => "a content-API token needs --type",
            Rule::AdminTokenHasNoType => {
                "admin tokens have no type (--type is for content-API tokens)"
            }
            Rule::AdminTokenNeedsOwner => "an admin token needs --owner EMAIL",
        }
    }
}

/// What a token operation does, for the permission check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Create,
    Update,
    Delete,
    Regenerate,
    /// Show the plaintext key again (needs an encryption key).
    ViewKey,
}

impl Op {
    fn verb(self) -> &'static str {
        match self {
            Op::Read | Op::ViewKey => "read",
            Op::Create => "create",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Regenerate => "regenerate",
        }
    }

    /// The operations that have a permission of their own.
    pub const MANAGED: [Op; 5] = [Op::Read, Op::Create, Op::Update, Op::Delete, Op::Regenerate];
}

/// The management permission for an operation on a kind of token.
pub fn management_action(kind: TokenKind, op: Op) -> String {
    let area = match kind {
        TokenKind::ContentApi => "api-tokens",
        TokenKind::Admin => "admin-tokens",
    };
    format!("admin::{area}.{}", op.verb())
}

/// The management service.
pub struct Manager<'a> {
    pub store: &'a Store,
    pub cfg: &'a Config,
    /// The route table permissions are checked against and catalogs built
    /// from: the config's, or (management listener) the gateway's live one.
    routes: Arc<RouteTable>,
    hasher: Hasher,
    cipher: Option<KeyCipher>,
    audit_key: AuditKey,
    origin: Origin,
}

impl<'a> Manager<'a> {
    /// A manager for the host CLI; see [`Manager::with_origin`].
    pub fn new(store: &'a Store, cfg: &'a Config) -> Self {
        Self {
            store,
            cfg,
            routes: cfg.routes.clone(),
            hasher: Hasher::new(cfg.tokens.salt.expose()),
            cipher: cfg
                .tokens
                .encryption_key
                .as_ref()
                .map(|k| KeyCipher::new(k.expose())),
            audit_key: AuditKey::from_config(cfg),
            origin: Origin::cli(),
        }
    }

    /// Check against, and list from, `routes` (the policy in force) instead
    /// of the table the config was started with.
    pub fn with_routes(mut self, routes: Arc<RouteTable>) -> Self {
        self.routes = routes;
        self
    }

    /// Record what this manager does as coming from `origin` (the API, the
    /// web page, the bootstrap file, with a request id and client address).
    pub fn with_origin(mut self, origin: Origin) -> Self {
        self.origin = origin;
        self
    }

    /// Who and how, for the audit event of a write by `actor`.
    pub fn audit(&self, actor: &Actor) -> AuditCtx {
        AuditCtx {
            actor: actor.audit_name(),
            origin: self.origin.clone(),
            key: self.audit_key.clone(),
        }
    }

    /// Resolve `--as EMAIL` to an actor.
    pub async fn actor(&self, email: Option<&str>) -> Result<Actor, ControlError> {
        match email {
            None => Ok(Actor::Operator),
            Some(e) => {
                let u = self
                    .store
                    .user_by_email(e)
                    .await?
                    .ok_or_else(|| ControlError::NotFound(format!("no user with email {e}")))?;
                if !u.is_active || u.blocked {
                    return Err(ControlError::Denied(format!(
                        "user {e} is deactivated or blocked"
                    )));
                }
                Ok(Actor::User(u))
            }
        }
    }

    /// Are keys viewable again (is an encryption key configured)?
    pub fn keys_viewable(&self) -> bool {
        self.cipher.is_some()
    }

    /// Does the actor hold the management permission for `op` on `kind`?
    pub fn require(&self, actor: &Actor, kind: TokenKind, op: Op) -> Result<(), ControlError> {
        let action = management_action(kind, op);
        if actor.holds(&Permission::new(action.clone(), None)) {
            Ok(())
        } else {
            Err(ControlError::Denied(format!(
                "{actor} lacks the permission {action}"
            )))
        }
    }

    /// May `actor` perform `op` on the existing token `t`? The rules table
    /// of this module, in one place.
    pub fn check(&self, actor: &Actor, op: Op, t: &TokenRow) -> Result<(), ControlError> {
        self.require(actor, t.kind, op)?;
        match op {
            Op::Update => require_owner_or_super(actor, t, "edit"),
            Op::Delete => require_owner_or_super(actor, t, "delete"),
            Op::Regenerate => require_owner(actor, t, "regenerate"),
            Op::ViewKey => require_owner(actor, t, "view the key of"),
            Op::Read | Op::Create => Ok(()),
        }
    }

    /// [`Manager::check`] as a yes/no, for showing or hiding a button.
    pub fn may(&self, actor: &Actor, op: Op, t: &TokenRow) -> bool {
        self.check(actor, op, t).is_ok()
    }
}

/// Owner or super-admin (edit, delete of admin tokens).
fn require_owner_or_super(actor: &Actor, t: &TokenRow, what: &str) -> Result<(), ControlError> {
    match actor.user() {
        Some(u) if t.kind == TokenKind::Admin && !u.super_admin && t.owner_id != Some(u.id) => {
            Err(ControlError::Denied(format!(
                "only the owner of admin token {} or a super admin may {what} it",
                t.id
            )))
        }
        _ => Ok(()),
    }
}

/// Owner only (regenerate, view key of admin tokens).
fn require_owner(actor: &Actor, t: &TokenRow, what: &str) -> Result<(), ControlError> {
    match actor.user() {
        Some(u) if t.kind == TokenKind::Admin && t.owner_id != Some(u.id) => {
            Err(ControlError::Denied(format!(
                "only the owner of admin token {} may {what} it",
                t.id
            )))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
