//! Token management: who may do what to which token, and the operations
//! themselves (key generation, hashing, encryption, store writes).
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

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::audit::{AuditCtx, AuditKey, Origin};
use crate::cidr::{self, Cidr, MAX_NETWORKS};
use crate::config::Config;
use crate::model::{ContentApiType, Permission, PermissionSet, TokenKind};
use crate::route::{ActionSubject, RouteTable};
use crate::store::admin::{NewToken, ReplacementKey, TokenRow, TokenUpdate, UserRow};
use crate::store::{Store, StoreError};
use crate::token::{self, Hasher, KeyCipher, TokenHash};

/// Who is acting.
#[derive(Debug, Clone)]
pub enum Actor {
    /// The host operator: every right.
    Operator,
    /// An admin user, with the permissions of their roles.
    User(UserRow),
    /// An admin user acting through one of their admin tokens.
    Token(TokenActor),
}

/// An admin user acting through an admin token (management API, web page).
#[derive(Debug, Clone)]
pub struct TokenActor {
    /// The token's owner, as of this request.
    pub user: UserRow,
    pub token_id: i64,
    /// The token's own permissions.
    pub permissions: PermissionSet,
}

impl Actor {
    /// The admin user behind the actor, if any.
    pub fn user(&self) -> Option<&UserRow> {
        match self {
            Actor::Operator => None,
            Actor::User(u) => Some(u),
            Actor::Token(t) => Some(&t.user),
        }
    }

    /// Does the actor hold `p`? A token actor holds what both the token and
    /// its owner hold.
    pub fn holds(&self, p: &Permission) -> bool {
        match self {
            Actor::Operator => true,
            Actor::User(u) => u.holds(p),
            Actor::Token(t) => {
                t.user.holds(p) && t.permissions.grants(&p.action, p.subject.as_deref())
            }
        }
    }
}

impl Actor {
    /// How the audit trail names the actor: the admin user's email, or
    /// `operator` for the host CLI.
    pub fn audit_name(&self) -> String {
        self.user()
            .map_or_else(|| "operator".to_owned(), |u| u.email.clone())
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Operator => f.write_str("the host operator"),
            Actor::User(u) => f.write_str(&u.email),
            Actor::Token(t) => write!(f, "{} (admin token {})", t.user.email, t.token_id),
        }
    }
}

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

/// Keep the active tokens that expire within `window` of `now`, soonest
/// first (`token list --expiring`, `GET ...?expiring=`): what the
/// `AuthgateTokensExpiringSoon` alert sends an operator to look at.
pub fn keep_expiring(
    rows: &mut Vec<TokenRow>,
    window: std::time::Duration,
    now: std::time::SystemTime,
) {
    rows.retain(|t| crate::model::expires_within(t.expires_at, now, window));
    rows.sort_by_key(|t| t.expires_at);
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

/// Token lifespans offered: 7, 30, 90 days or unlimited.
pub fn parse_duration(s: &str) -> Result<Option<i64>, String> {
    match s {
        "7d" | "7" => Ok(Some(7 * DAY_MS)),
        "30d" | "30" => Ok(Some(30 * DAY_MS)),
        "90d" | "90" => Ok(Some(90 * DAY_MS)),
        "unlimited" | "never" => Ok(None),
        other => Err(format!(
            "invalid duration `{other}`: expected 7d, 30d, 90d or unlimited"
        )),
    }
}

const DAY_MS: i64 = 86_400_000;

/// The longest a replaced key keeps working after a regenerate.
pub const MAX_KEEP_OLD: Duration = Duration::from_secs(7 * 86_400);

/// How long a replaced key keeps working, in ms for the store: `None` (it
/// stops at once) for zero; refused beyond [`MAX_KEEP_OLD`].
fn keep_old_ms(keep_old_for: Duration) -> Result<Option<i64>, ControlError> {
    if keep_old_for > MAX_KEEP_OLD {
        return Err(ControlError::Invalid(format!(
            "the old key can keep working for at most 7 days, not {}",
            humantime::format_duration(keep_old_for)
        )));
    }
    // At most 7 days: the milliseconds fit.
    let ms = i64::try_from(keep_old_for.as_millis()).unwrap_or(i64::MAX);
    Ok((ms > 0).then_some(ms))
}

/// The key a new token gets: generated, from the bootstrap file, or
/// brought along from a legacy CMS (`token import`, checked by
/// [`NewKey::plain`] and [`NewKey::hash`]).
pub enum NewKey {
    /// The plaintext key: hashed here, and kept encrypted when keys are
    /// viewable.
    Plain(Zeroizing<String>),
    /// Only its stored hash (a Strapi row's `access_key`, same salt): the
    /// key itself cannot be shown again.
    Hash(TokenHash),
}

impl NewKey {
    /// A plaintext key, surrounding blanks (a trailing newline) dropped:
    /// 20 to 512 visible characters a `Bearer` credential can carry, not
    /// JWT-shaped ([`token::check_key_shape`], the rule the gateway's
    /// precheck applies).
    pub fn plain(text: &str) -> Result<Self, ControlError> {
        let key = text.trim_matches(|c: char| c.is_ascii_whitespace());
        token::check_key_shape(key.as_bytes())?;
        Ok(Self::Plain(Zeroizing::new(key.to_owned())))
    }

    /// A stored hash: 128 hexadecimal characters (HMAC-SHA512), surrounding
    /// blanks dropped.
    pub fn hash(text: &str) -> Result<Self, ControlError> {
        let hex = text.trim_matches(|c: char| c.is_ascii_whitespace());
        match TokenHash::from_hex(hex) {
            Some(h) => Ok(Self::Hash(h)),
            None if hex.len() == token::HASH_BYTES * 2 => Err(ControlError::Invalid(
                "an access_key hash is 128 hexadecimal characters: this one holds others".into(),
            )),
            None => Err(ControlError::Invalid(format!(
                "an access_key hash is 128 hexadecimal characters (HMAC-SHA512 of the key), not {}",
                hex.chars().count()
            ))),
        }
    }
}

/// The lifespans a token may have, in ms (`None` = unlimited), as Strapi's
/// `lifespan` field carries them.
pub const LIFESPANS: [Option<i64>; 4] =
    [Some(7 * DAY_MS), Some(30 * DAY_MS), Some(90 * DAY_MS), None];

/// The user that owns the bootstrap token (see [`Manager::bootstrap`]).
pub const BOOTSTRAP_EMAIL: &str = "bootstrap@authgate.local";
/// The name of the bootstrap token.
pub const BOOTSTRAP_TOKEN_NAME: &str = "bootstrap";

/// A token and, right after create/regenerate (or on an allowed view), its key.
#[derive(Debug, Clone)]
pub struct TokenWithKey {
    pub token: TokenRow,
    /// Zeroed when dropped.
    pub key: Option<Zeroizing<String>>,
}

/// What a new token should be, before checks.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub kind: TokenKind,
    pub name: String,
    pub description: String,
    pub token_type: Option<ContentApiType>,
    pub lifespan_ms: Option<i64>,
    /// Admin tokens: the owner's email (defaults to the acting user).
    pub owner: Option<String>,
    pub permissions: Vec<Permission>,
    /// The networks the token may be used from; empty: anywhere.
    pub allowed_cidrs: Vec<Cidr>,
}

/// Which token an operation is on: an id, and optionally the kind it must
/// be (the API's `/admin/api-tokens/:id` never reaches an admin token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenRef {
    pub id: i64,
    pub kind: Option<TokenKind>,
}

impl From<i64> for TokenRef {
    fn from(id: i64) -> Self {
        Self { id, kind: None }
    }
}

impl TokenRef {
    pub fn of_kind(id: i64, kind: TokenKind) -> Self {
        Self {
            id,
            kind: Some(kind),
        }
    }
}

/// A group of permissions shown together (one content type, one admin area).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionGroup {
    /// e.g. `api::article.article`, `plugin::content-manager`, `admin::api-tokens`.
    pub category: String,
    pub permissions: Vec<Permission>,
}

/// What happened to the bootstrap token at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bootstrapped {
    /// A token with the key exists already: nothing to do.
    Present(i64),
    /// The bootstrap token was created.
    Created(i64),
    /// The bootstrap token existed with another key (the Secret was
    /// rotated): it now has the new key and the old one stopped working.
    Rotated(i64),
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

    /// Record that `actor` was shown the key of `t` again.
    async fn viewed(&self, actor: &Actor, t: &TokenRow) -> Result<(), ControlError> {
        let draft = crate::store::admin::token_draft(t, "view-key", serde_json::json!({}));
        self.store.record(&self.audit(actor), draft).await?;
        Ok(())
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

    async fn token(&self, r: TokenRef) -> Result<TokenRow, ControlError> {
        let not_found = || {
            ControlError::NotFound(match r.kind {
                Some(TokenKind::ContentApi) => format!("no API token with id {}", r.id),
                Some(TokenKind::Admin) => format!("no admin token with id {}", r.id),
                None => format!("no token with id {}", r.id),
            })
        };
        let t = self.store.get_token(r.id).await?.ok_or_else(not_found)?;
        if r.kind.is_some_and(|k| k != t.kind) {
            return Err(not_found());
        }
        Ok(t)
    }

    /// The permissions an admin token may be given: each must be held by
    /// the owner, and by the actor handing it out.
    fn check_admin_ceiling(
        &self,
        actor: &Actor,
        owner: &UserRow,
        perms: &[Permission],
    ) -> Result<(), ControlError> {
        for p in perms {
            if !owner.holds(p) {
                return Err(ControlError::Invalid(format!(
                    "owner {} does not hold the permission {p}, so the token cannot have it",
                    owner.email
                )));
            }
            if !actor.holds(p) {
                return Err(ControlError::Invalid(format!(
                    "{actor} does not hold the permission {p}, so cannot give it to a token"
                )));
            }
        }
        Ok(())
    }

    /// Content-API permissions are actions some route maps to, without subject.
    fn check_content_actions(&self, perms: &[Permission]) -> Result<(), ControlError> {
        for p in perms {
            if p.subject.is_some() {
                return Err(ControlError::Invalid(format!(
                    "content-API permissions take no subject: `{p}`"
                )));
            }
            if !self.routes.is_known_content_action(&p.action) {
                return Err(ControlError::Invalid(format!(
                    "unknown content-API action `{}` (no route maps to it; known actions: {})",
                    p.action,
                    self.routes.content_actions().join(", ")
                )));
            }
        }
        Ok(())
    }

    fn check_permissions(
        &self,
        actor: &Actor,
        req: &CreateRequest,
        owner: Option<&UserRow>,
    ) -> Result<(), ControlError> {
        match req.kind {
            TokenKind::ContentApi => {
                if req.owner.is_some() {
                    return Err(ControlError::Rule(Rule::ContentTokenHasNoOwner));
                }
                match req.token_type {
                    Some(ContentApiType::Custom) => {
                        if req.permissions.is_empty() {
                            return Err(ControlError::Rule(Rule::CustomNeedsPermission));
                        }
                        self.check_content_actions(&req.permissions)?;
                    }
                    Some(_) if !req.permissions.is_empty() => {
                        return Err(ControlError::Rule(Rule::PermissionsOnlyForCustom))
                    }
                    Some(_) => {}
                    None => return Err(ControlError::Rule(Rule::ContentTokenNeedsType)),
                }
            }
            TokenKind::Admin => {
                if req.token_type.is_some() {
                    return Err(ControlError::Rule(Rule::AdminTokenHasNoType));
                }
                let owner = owner
                    .ok_or_else(|| ControlError::Invalid("an admin token needs an owner".into()))?;
                self.check_admin_ceiling(actor, owner, &req.permissions)?;
            }
        }
        Ok(())
    }

    /// Create a token and return it with its plaintext key (shown once).
    pub async fn create(
        &self,
        actor: &Actor,
        req: CreateRequest,
    ) -> Result<TokenWithKey, ControlError> {
        let key = Zeroizing::new(token::generate_key()?);
        let token = self
            .create_with_key(actor, req, &NewKey::Plain(key.clone()), false)
            .await?;
        Ok(TokenWithKey {
            token,
            key: Some(key),
        })
    }

    /// Create a token with a key brought along from a legacy CMS, under
    /// the rules of [`Manager::create`]; refused when a token has the key
    /// already (as its current or replaced key). The audit event is a
    /// `*.create` with `changes.imported = true`.
    pub async fn import(
        &self,
        actor: &Actor,
        req: CreateRequest,
        key: &NewKey,
    ) -> Result<TokenRow, ControlError> {
        self.create_with_key(actor, req, key, true).await
    }

    async fn create_with_key(
        &self,
        actor: &Actor,
        req: CreateRequest,
        key: &NewKey,
        imported: bool,
    ) -> Result<TokenRow, ControlError> {
        self.require(actor, req.kind, Op::Create)?;
        if req.name.trim().is_empty() {
            return Err(ControlError::Invalid(
                "a token needs a non-empty name".into(),
            ));
        }
        if !LIFESPANS.contains(&req.lifespan_ms) {
            return Err(ControlError::Invalid(
                "the lifespan must be 7, 30 or 90 days or unlimited".into(),
            ));
        }
        let owner = match req.kind {
            TokenKind::ContentApi => None,
            TokenKind::Admin => {
                let email = match (&req.owner, actor.user()) {
                    (Some(o), Some(u)) if !o.eq_ignore_ascii_case(&u.email) => {
                        return Err(ControlError::Denied(format!(
                            "{} may only create admin tokens owned by themselves",
                            u.email
                        )))
                    }
                    (Some(o), _) => o.clone(),
                    (None, Some(u)) => u.email.clone(),
                    (None, None) => return Err(ControlError::Rule(Rule::AdminTokenNeedsOwner)),
                };
                let u =
                    self.store.user_by_email(&email).await?.ok_or_else(|| {
                        ControlError::NotFound(format!("no user with email {email}"))
                    })?;
                Some(u)
            }
        };
        self.check_permissions(actor, &req, owner.as_ref())?;
        let allowed_cidrs = networks(req.allowed_cidrs)?;
        let (access_key, encrypted_key) = match key {
            NewKey::Plain(key) => (
                self.hasher.hash_hex(key),
                self.cipher.as_ref().map(|c| c.encrypt(key)).transpose()?,
            ),
            NewKey::Hash(h) => (h.to_hex(), None),
        };
        Ok(self
            .store
            .create_token(
                &NewToken {
                    imported,
                    kind: req.kind,
                    name: req.name.trim().to_owned(),
                    description: req.description,
                    token_type: req.token_type,
                    lifespan_ms: req.lifespan_ms,
                    owner_id: owner.as_ref().map(|u| u.id),
                    permissions: req.permissions,
                    access_key,
                    encrypted_key,
                    allowed_cidrs,
                },
                &self.audit(actor),
            )
            .await?)
    }

    pub async fn list(
        &self,
        actor: &Actor,
        kind: Option<TokenKind>,
    ) -> Result<Vec<TokenRow>, ControlError> {
        match kind {
            Some(k) => self.require(actor, k, Op::Read)?,
            None => {
                self.require(actor, TokenKind::ContentApi, Op::Read)?;
                self.require(actor, TokenKind::Admin, Op::Read)?;
            }
        }
        Ok(self.store.list_tokens(kind).await?)
    }

    /// The stored key of `t`, decrypted.
    fn stored_key(&self, t: &TokenRow) -> Result<Zeroizing<String>, ControlError> {
        let cipher = self.cipher.as_ref().ok_or_else(|| {
            ControlError::Invalid(
                "keys cannot be shown again: no tokens.encryption_key is configured".into(),
            )
        })?;
        let enc = t.encrypted_key.as_deref().ok_or_else(|| {
            ControlError::Invalid(format!(
                "token {} has no stored key (created before an encryption key was configured): regenerate it",
                t.id
            ))
        })?;
        Ok(Zeroizing::new(cipher.decrypt(enc)?))
    }

    /// Show a token; with `reveal`, also its key when it may be viewed
    /// (an error otherwise).
    pub async fn show(
        &self,
        actor: &Actor,
        r: impl Into<TokenRef>,
        reveal: bool,
    ) -> Result<TokenWithKey, ControlError> {
        let t = self.token(r.into()).await?;
        self.check(actor, Op::Read, &t)?;
        let key = if reveal {
            self.check(actor, Op::ViewKey, &t)?;
            let key = self.stored_key(&t)?;
            self.viewed(actor, &t).await?;
            Some(key)
        } else {
            None
        };
        Ok(TokenWithKey { token: t, key })
    }

    /// Show a token, with its key whenever the actor may view it and it
    /// can be shown (Strapi's `GET /admin/*-tokens/:id`): never an error for
    /// a key that cannot be shown.
    pub async fn show_viewable(
        &self,
        actor: &Actor,
        r: impl Into<TokenRef>,
    ) -> Result<TokenWithKey, ControlError> {
        let t = self.token(r.into()).await?;
        self.check(actor, Op::Read, &t)?;
        let key = if self.may(actor, Op::ViewKey, &t) {
            self.stored_key(&t).ok()
        } else {
            None
        };
        if key.is_some() {
            self.viewed(actor, &t).await?;
        }
        Ok(TokenWithKey { token: t, key })
    }

    /// New key, same token. The old key stops working at commit, or keeps
    /// working (same token, same identity) for `keep_old_for` (at most
    /// [`MAX_KEEP_OLD`]; zero: at once), ending any earlier old key.
    pub async fn regenerate(
        &self,
        actor: &Actor,
        r: impl Into<TokenRef>,
        keep_old_for: Duration,
    ) -> Result<TokenWithKey, ControlError> {
        let keep_old_ms = keep_old_ms(keep_old_for)?;
        let t = self.token(r.into()).await?;
        self.check(actor, Op::Regenerate, &t)?;
        let key = Zeroizing::new(token::generate_key()?);
        let row = self.replace_key(actor, t.id, &key, keep_old_ms).await?;
        Ok(TokenWithKey {
            token: row,
            key: Some(key),
        })
    }

    async fn replace_key(
        &self,
        actor: &Actor,
        id: i64,
        key: &str,
        keep_old_ms: Option<i64>,
    ) -> Result<TokenRow, ControlError> {
        let encrypted = self.cipher.as_ref().map(|c| c.encrypt(key)).transpose()?;
        let access_key = self.hasher.hash_hex(key);
        let replacement = ReplacementKey {
            access_key: &access_key,
            encrypted_key: encrypted.as_deref(),
            keep_old_ms,
        };
        self.store
            .regenerate_token(id, &replacement, &self.audit(actor))
            .await?
            .ok_or_else(|| ControlError::NotFound(format!("no token with id {id}")))
    }

    /// Edit a token. A content-API token whose type is no longer `custom`
    /// loses its permissions; a `custom` one must keep at least one.
    pub async fn update(
        &self,
        actor: &Actor,
        r: impl Into<TokenRef>,
        mut u: TokenUpdate,
    ) -> Result<TokenRow, ControlError> {
        let t = self.token(r.into()).await?;
        self.check(actor, Op::Update, &t)?;
        if u.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return Err(ControlError::Invalid(
                "a token needs a non-empty name".into(),
            ));
        }
        u.name = u.name.map(|n| n.trim().to_owned());
        u.allowed_cidrs = u.allowed_cidrs.map(networks).transpose()?;
        let token_type = match t.kind {
            TokenKind::Admin if u.token_type.is_some() => {
                return Err(ControlError::Invalid("admin tokens have no type".into()))
            }
            TokenKind::Admin => None,
            TokenKind::ContentApi => u.token_type.or(t.token_type),
        };
        if t.kind == TokenKind::ContentApi {
            if token_type == Some(ContentApiType::Custom) {
                if u.permissions.as_ref().unwrap_or(&t.permissions).is_empty() {
                    return Err(ControlError::Invalid(
                        "a custom token needs at least one permission".into(),
                    ));
                }
            } else if u.permissions.is_none() && !t.permissions.is_empty() {
                u.permissions = Some(Vec::new());
            }
        }
        if let Some(perms) = &u.permissions {
            // Only what is added is checked: keeping a permission the token
            // already has hands nothing out (and the role trigger already
            // removed whatever the owner lost).
            let added: Vec<Permission> = perms
                .iter()
                .filter(|p| !t.permissions.contains(p))
                .cloned()
                .collect();
            match t.kind {
                TokenKind::ContentApi => {
                    if token_type != Some(ContentApiType::Custom) && !perms.is_empty() {
                        return Err(ControlError::Invalid(
                            "permissions are only for custom tokens".into(),
                        ));
                    }
                    self.check_content_actions(&added)?;
                }
                TokenKind::Admin => {
                    let owner = match t.owner_id {
                        Some(oid) => self.store.user_by_id(oid).await?,
                        None => None,
                    }
                    .ok_or_else(|| {
                        ControlError::NotFound(format!("the owner of admin token {} is gone", t.id))
                    })?;
                    self.check_admin_ceiling(actor, &owner, &added)?;
                }
            }
        }
        self.store
            .update_token(t.id, &u, &self.audit(actor))
            .await?
            .ok_or_else(|| ControlError::NotFound(format!("no token with id {}", t.id)))
    }

    pub async fn delete(
        &self,
        actor: &Actor,
        r: impl Into<TokenRef>,
    ) -> Result<TokenRow, ControlError> {
        let t = self.token(r.into()).await?;
        self.check(actor, Op::Delete, &t)?;
        if !self.store.delete_token(t.id, &self.audit(actor)).await? {
            return Err(ControlError::NotFound(format!("no token with id {}", t.id)));
        }
        Ok(t)
    }

    /// The owner of admin token `id`, whose permissions bound the token's
    /// (Strapi's `owner-permissions`): for the owner or a super admin.
    pub async fn owner_of(&self, actor: &Actor, id: i64) -> Result<UserRow, ControlError> {
        let t = self.token(TokenRef::of_kind(id, TokenKind::Admin)).await?;
        self.check(actor, Op::Read, &t)?;
        require_owner_or_super(actor, &t, "see the owner permissions of")?;
        let owner_id = t
            .owner_id
            .ok_or_else(|| ControlError::NotFound(format!("admin token {id} has no owner")))?;
        self.store
            .user_by_id(owner_id)
            .await?
            .ok_or_else(|| ControlError::NotFound(format!("the owner of admin token {id} is gone")))
    }

    /// The content-API actions a custom token can hold, grouped by content
    /// type (or plugin controller).
    pub fn content_api_catalog(&self) -> Vec<PermissionGroup> {
        let mut groups: Vec<PermissionGroup> = Vec::new();
        for action in self.routes.content_actions() {
            let category = action.rsplit_once('.').map_or(action, |(c, _)| c);
            push_grouped(&mut groups, category, Permission::new(action, None));
        }
        groups
    }

    /// The permissions an admin token can hold: every action of the admin
    /// action table (one per configured content type where the route takes
    /// its subject from the path), plus `also` (e.g. what the owner holds),
    /// grouped by admin area or plugin.
    pub fn admin_catalog(&self, also: &[Permission]) -> Vec<PermissionGroup> {
        let uids: Vec<&str> = self.routes.content_type_uids().collect();
        let mut all: Vec<Permission> = Vec::new();
        for (action, subject) in self.routes.admin_action_subjects() {
            match subject {
                ActionSubject::None => all.push(Permission::new(action, None)),
                ActionSubject::Fixed(s) => all.push(Permission::new(action, Some(s.to_owned()))),
                ActionSubject::FromPath if uids.is_empty() => {
                    all.push(Permission::new(action, None))
                }
                ActionSubject::FromPath => all.extend(
                    uids.iter()
                        .map(|uid| Permission::new(action, Some((*uid).to_owned()))),
                ),
            }
        }
        all.extend(also.iter().cloned());
        all.sort();
        all.dedup();
        let mut groups: Vec<PermissionGroup> = Vec::new();
        for p in all {
            let category = p
                .action
                .split_once('.')
                .map_or(p.action.as_str(), |(c, _)| c)
                .to_owned();
            push_grouped(&mut groups, &category, p);
        }
        groups
    }

    /// Provision the bootstrap token from `key` (a mounted Secret): if no
    /// token has this key, make sure the super-admin user
    /// [`BOOTSTRAP_EMAIL`] exists and give it an admin token with this key
    /// holding every token-management permission. Idempotent; a bootstrap
    /// token with an older key gets the new one (the old key stops working).
    pub async fn bootstrap(&self, key: &str) -> Result<Bootstrapped, ControlError> {
        if !token::looks_like_key(key.as_bytes()) {
            return Err(ControlError::Invalid(
                "the bootstrap key must be 256 lower-case hex characters (e.g. `openssl rand -hex 128`)"
                    .into(),
            ));
        }
        // Only as a current key: a key a regenerate replaced (with overlap)
        // is put back, the file being what the operator holds.
        let holder = self.store.key_holder(&self.hasher.hash_hex(key)).await?;
        if let Some(h) = holder.filter(|h| h.current) {
            if let Some(found) = self.store.get_token(h.id).await? {
                if found.kind != TokenKind::Admin {
                    return Err(ControlError::Invalid(format!(
                        "the bootstrap key belongs to content-API token {}",
                        found.id
                    )));
                }
                return Ok(Bootstrapped::Present(found.id));
            }
        }
        if self.store.layout() == crate::store::Layout::Strapi5 {
            // Strapi's admin panel owns users and tokens: nothing to
            // provision, and no retry will change that.
            return Err(ControlError::Invalid(
                "in the strapi5 layout the bootstrap key must be an admin token made in Strapi's admin panel, and no token has it".into(),
            ));
        }
        let super_role = self
            .store
            .list_roles()
            .await?
            .into_iter()
            .find(|r| r.super_admin)
            .ok_or_else(|| {
                ControlError::Invalid("no super-admin role: run `authgate migrate`".into())
            })?;
        let user = match self.store.user_by_email(BOOTSTRAP_EMAIL).await? {
            Some(u) => {
                if !u.super_admin {
                    self.store
                        .set_user_role(
                            BOOTSTRAP_EMAIL,
                            &super_role.name,
                            true,
                            &self.audit(&Actor::Operator),
                        )
                        .await?;
                }
                u
            }
            None => {
                self.store
                    .create_user(
                        BOOTSTRAP_EMAIL,
                        "Bootstrap (authgate)",
                        std::slice::from_ref(&super_role.name),
                        &self.audit(&Actor::Operator),
                    )
                    .await?
            }
        };
        let previous = self
            .store
            .list_tokens(Some(TokenKind::Admin))
            .await?
            .into_iter()
            .find(|t| t.name == BOOTSTRAP_TOKEN_NAME && t.owner_id == Some(user.id));
        if let Some(t) = previous {
            self.replace_key(&Actor::Operator, t.id, key, None).await?;
            return Ok(Bootstrapped::Rotated(t.id));
        }
        let permissions = [TokenKind::ContentApi, TokenKind::Admin]
            .into_iter()
            .flat_map(|k| {
                Op::MANAGED
                    .into_iter()
                    .map(move |op| Permission::new(management_action(k, op), None))
            })
            .chain([Permission::new(crate::audit::READ_PERMISSION, None)])
            .collect();
        let created = self
            .create_with_key(
                &Actor::Operator,
                CreateRequest {
                    kind: TokenKind::Admin,
                    name: BOOTSTRAP_TOKEN_NAME.into(),
                    description: "Provisioned from [management] bootstrap_token_file".into(),
                    token_type: None,
                    lifespan_ms: None,
                    owner: Some(BOOTSTRAP_EMAIL.into()),
                    permissions,
                    allowed_cidrs: Vec::new(),
                },
                &NewKey::Plain(Zeroizing::new(key.to_owned())),
                false,
            )
            .await?;
        Ok(Bootstrapped::Created(created.id))
    }
}

/// A token's networks as stored (sorted, each once), at most
/// [`MAX_NETWORKS`] of them.
fn networks(blocks: Vec<Cidr>) -> Result<Vec<Cidr>, ControlError> {
    let blocks = cidr::canonical(blocks);
    if blocks.len() > MAX_NETWORKS {
        return Err(ControlError::Invalid(format!(
            "a token may be pinned to at most {MAX_NETWORKS} CIDR blocks, not {}",
            blocks.len()
        )));
    }
    Ok(blocks)
}

fn push_grouped(groups: &mut Vec<PermissionGroup>, category: &str, p: Permission) {
    match groups.iter_mut().find(|g| g.category == category) {
        Some(g) => g.permissions.push(p),
        None => groups.push(PermissionGroup {
            category: category.to_owned(),
            permissions: vec![p],
        }),
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
mod tests {
    use super::*;

    #[test]
    fn rule_messages_name_flags_only_on_the_command_line() {
        let rules = [
            Rule::ContentTokenHasNoOwner,
            Rule::CustomNeedsPermission,
            Rule::PermissionsOnlyForCustom,
            Rule::ContentTokenNeedsType,
            Rule::AdminTokenHasNoType,
            Rule::AdminTokenNeedsOwner,
        ];
        for r in rules {
            assert!(!r.message().contains("--"), "{r:?}: {}", r.message());
            assert!(r.cli_message().contains("--"), "{r:?}: {}", r.cli_message());
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("7d"), Ok(Some(604_800_000)));
        assert_eq!(parse_duration("30d"), Ok(Some(2_592_000_000)));
        assert_eq!(parse_duration("90d"), Ok(Some(7_776_000_000)));
        assert_eq!(parse_duration("unlimited"), Ok(None));
        assert!(parse_duration("8d").is_err());
    }

    #[test]
    fn management_actions() {
        assert_eq!(
            management_action(TokenKind::ContentApi, Op::Read),
            "admin::api-tokens.read"
        );
        assert_eq!(
            management_action(TokenKind::Admin, Op::Regenerate),
            "admin::admin-tokens.regenerate"
        );
    }

    fn user(id: i64, super_admin: bool, perms: &[&str]) -> UserRow {
        UserRow {
            id,
            email: format!("u{id}@example.com"),
            name: String::new(),
            is_active: true,
            blocked: false,
            roles: Vec::new(),
            super_admin,
            permissions: perms.iter().map(|p| Permission::new(*p, None)).collect(),
        }
    }

    fn admin_token(owner: i64) -> TokenRow {
        TokenRow {
            id: 7,
            kind: TokenKind::Admin,
            name: "t".into(),
            description: String::new(),
            token_type: None,
            lifespan_ms: None,
            expires_at: None,
            last_used_at: None,
            owner_id: Some(owner),
            owner_email: None,
            permissions: Vec::new(),
            encrypted_key: None,
            rate_limit: None,
            old_key_expires_at: None,
            allowed_cidrs: Vec::new(),
            created_at: std::time::SystemTime::UNIX_EPOCH,
            updated_at: std::time::SystemTime::UNIX_EPOCH,
        }
    }

    const ALL: &[&str] = &[
        "admin::admin-tokens.read",
        "admin::admin-tokens.create",
        "admin::admin-tokens.update",
        "admin::admin-tokens.delete",
        "admin::admin-tokens.regenerate",
    ];

    #[test]
    fn a_token_actor_holds_the_intersection() {
        let read = Permission::new("admin::admin-tokens.read", None);
        let update = Permission::new("admin::admin-tokens.update", None);
        let through = |user: UserRow, token: &[&str]| {
            Actor::Token(TokenActor {
                user,
                token_id: 1,
                permissions: token.iter().map(|p| Permission::new(*p, None)).collect(),
            })
        };
        let a = through(user(1, false, ALL), &["admin::admin-tokens.read"]);
        assert!(a.holds(&read));
        assert!(!a.holds(&update), "the token lacks it");
        let a = through(user(1, false, &["admin::admin-tokens.read"]), ALL);
        assert!(!a.holds(&update), "the owner lacks it");
        let a = through(user(1, true, &[]), &["admin::admin-tokens.read"]);
        assert!(
            a.holds(&read) && !a.holds(&update),
            "a super admin's token too"
        );
        assert!(Actor::Operator.holds(&update));
        assert!(Actor::User(user(1, true, &[])).holds(&update));
    }

    #[tokio::test]
    async fn the_rules_table() {
        let cfg = crate::config::parse_raw(
            "[tokens]\nsalt = \"s\"\n",
            std::path::Path::new("t.toml"),
            Vec::new(),
        )
        .and_then(|r| r.compile())
        .expect("config");
        let store = Store::new(&cfg.postgres).expect("pool is lazy");
        let mgr = Manager::new(&store, &cfg);
        let owner = Actor::User(user(1, false, ALL));
        let other = Actor::User(user(2, false, ALL));
        let root = Actor::User(user(3, true, &[]));
        let narrow = Actor::Token(TokenActor {
            user: user(1, false, ALL),
            token_id: 9,
            permissions: [Permission::new("admin::admin-tokens.read", None)]
                .into_iter()
                .collect(),
        });
        let t = admin_token(1);
        // (actor, op, allowed)
        let rows: &[(&Actor, Op, bool)] = &[
            (&owner, Op::Read, true),
            (&owner, Op::Update, true),
            (&owner, Op::Delete, true),
            (&owner, Op::Regenerate, true),
            (&owner, Op::ViewKey, true),
            (&other, Op::Read, true),
            (&other, Op::Update, false),
            (&other, Op::Delete, false),
            (&other, Op::Regenerate, false),
            (&other, Op::ViewKey, false),
            (&root, Op::Update, true),
            (&root, Op::Delete, true),
            (&root, Op::Regenerate, false),
            (&root, Op::ViewKey, false),
            (&narrow, Op::Read, true),
            (&narrow, Op::ViewKey, true),
            (&narrow, Op::Update, false),
            (&narrow, Op::Regenerate, false),
            (&Actor::Operator, Op::Regenerate, true),
        ];
        for (actor, op, allowed) in rows {
            assert_eq!(mgr.may(actor, *op, &t), *allowed, "{actor} {op:?}");
        }
        // Content-API tokens: the permission alone decides.
        let mut c = admin_token(1);
        c.kind = TokenKind::ContentApi;
        c.owner_id = None;
        let api = Actor::User(user(
            2,
            false,
            &["admin::api-tokens.regenerate", "admin::api-tokens.read"],
        ));
        assert!(mgr.may(&api, Op::Regenerate, &c));
        assert!(mgr.may(&api, Op::ViewKey, &c));
        assert!(!mgr.may(&api, Op::Delete, &c));
    }
}
