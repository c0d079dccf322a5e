//! The token operations under the rules of [`super::Manager::check`]:
//! create (with a new key, or one brought along), list, show (and show the
//! key again), regenerate, edit, delete; the shapes a token may take.

use std::time::Duration;

use zeroize::Zeroizing;

use super::{require_owner_or_super, Actor, ControlError, Manager, Op, Rule};
use crate::cidr::{self, Cidr, MAX_NETWORKS};
use crate::model::{ContentApiType, Permission, TokenKind};
use crate::store::admin::{NewToken, ReplacementKey, TokenRow, TokenUpdate, UserRow};
use crate::token::{self, TokenHash};

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

impl Manager<'_> {
    /// Record that `actor` was shown the key of `t` again.
    async fn viewed(&self, actor: &Actor, t: &TokenRow) -> Result<(), ControlError> {
        let draft = crate::store::admin::token_draft(t, "view-key", serde_json::json!({}));
        self.store.record(&self.audit(actor), draft).await?;
        Ok(())
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

    pub(super) async fn create_with_key(
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

    pub(super) async fn replace_key(
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
