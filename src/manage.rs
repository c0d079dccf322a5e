//! Token management: who may do what to which token, and the operations
//! themselves (key generation, hashing, encryption, store writes).
//!
//! Shared by the CLI and the management API so both enforce the same rules:
//!
//! | operation | content-API token | admin token |
//! | --- | --- | --- |
//! | list, show | `admin::api-tokens.read` | `admin::admin-tokens.read` |
//! | create | `admin::api-tokens.create` | `admin::admin-tokens.create`; owner = the actor; every permission held by the owner |
//! | edit | `admin::api-tokens.update` | `admin::admin-tokens.update`, and owner or super-admin |
//! | delete | `admin::api-tokens.delete` | `admin::admin-tokens.delete`, and owner or super-admin |
//! | regenerate | `admin::api-tokens.regenerate` | `admin::admin-tokens.regenerate`, and owner only |
//! | view the key | `admin::api-tokens.read` | owner only |
//!
//! The actor is an admin user, or the host operator (the CLI without
//! `--as`), who holds every right: whoever runs the CLI on the host already
//! has the database and the keys.

use std::fmt;

use crate::config::Config;
use crate::model::{ContentApiType, Permission, TokenKind};
use crate::store::admin::{NewToken, TokenRow, TokenUpdate, UserRow};
use crate::store::{Store, StoreError};
use crate::token::{self, Hasher, KeyCipher};

/// Who is acting.
#[derive(Debug, Clone)]
pub enum Actor {
    /// The host operator: every right.
    Operator,
    User(UserRow),
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Operator => f.write_str("the host operator"),
            Actor::User(u) => f.write_str(&u.email),
        }
    }
}

/// Management failures. `Denied` and `NotFound` map to 403/404 in the API.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Token(#[from] token::TokenError),
}

/// What a token operation does, for the permission check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Create,
    Update,
    Delete,
    Regenerate,
}

impl Op {
    fn verb(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Create => "create",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Regenerate => "regenerate",
        }
    }
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
    const DAY_MS: i64 = 86_400_000;
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

/// A token and, right after create/regenerate (or on an allowed view), its key.
#[derive(Debug, Clone)]
pub struct TokenWithKey {
    pub token: TokenRow,
    /// Zeroed when dropped.
    pub key: Option<zeroize::Zeroizing<String>>,
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
}

/// The management service.
pub struct Manager<'a> {
    pub store: &'a Store,
    pub cfg: &'a Config,
    hasher: Hasher,
    cipher: Option<KeyCipher>,
}

impl<'a> Manager<'a> {
    pub fn new(store: &'a Store, cfg: &'a Config) -> Self {
        Self {
            store,
            cfg,
            hasher: Hasher::new(cfg.tokens.salt.expose()),
            cipher: cfg
                .tokens
                .encryption_key
                .as_ref()
                .map(|k| KeyCipher::new(k.expose())),
        }
    }

    /// Resolve `--as EMAIL` to an actor.
    pub async fn actor(&self, email: Option<&str>) -> Result<Actor, ManageError> {
        match email {
            None => Ok(Actor::Operator),
            Some(e) => {
                let u = self
                    .store
                    .user_by_email(e)
                    .await?
                    .ok_or_else(|| ManageError::NotFound(format!("no user with email {e}")))?;
                if !u.is_active || u.blocked {
                    return Err(ManageError::Denied(format!(
                        "user {e} is deactivated or blocked"
                    )));
                }
                Ok(Actor::User(u))
            }
        }
    }

    fn require(&self, actor: &Actor, kind: TokenKind, op: Op) -> Result<(), ManageError> {
        if let Actor::User(u) = actor {
            let action = management_action(kind, op);
            if !u.holds(&Permission::new(action.clone(), None)) {
                return Err(ManageError::Denied(format!(
                    "{} lacks the permission {action}",
                    u.email
                )));
            }
        }
        Ok(())
    }

    /// Owner or super-admin (edit, delete of admin tokens).
    fn require_owner_or_super(
        &self,
        actor: &Actor,
        t: &TokenRow,
        what: &str,
    ) -> Result<(), ManageError> {
        match actor {
            Actor::User(u)
                if t.kind == TokenKind::Admin && !u.super_admin && t.owner_id != Some(u.id) =>
            {
                Err(ManageError::Denied(format!(
                    "only the owner of admin token {} or a super admin may {what} it",
                    t.id
                )))
            }
            _ => Ok(()),
        }
    }

    /// Owner only (regenerate, view key of admin tokens).
    fn require_owner(&self, actor: &Actor, t: &TokenRow, what: &str) -> Result<(), ManageError> {
        match actor {
            Actor::User(u) if t.kind == TokenKind::Admin && t.owner_id != Some(u.id) => {
                Err(ManageError::Denied(format!(
                    "only the owner of admin token {} may {what} it",
                    t.id
                )))
            }
            _ => Ok(()),
        }
    }

    async fn token(&self, id: i64) -> Result<TokenRow, ManageError> {
        self.store
            .get_token(id)
            .await?
            .ok_or_else(|| ManageError::NotFound(format!("no token with id {id}")))
    }

    fn check_permissions(
        &self,
        req: &CreateRequest,
        owner: Option<&UserRow>,
    ) -> Result<(), ManageError> {
        match req.kind {
            TokenKind::ContentApi => {
                if req.owner.is_some() {
                    return Err(ManageError::Invalid(
                        "content-API tokens have no owner (--owner is for admin tokens)".into(),
                    ));
                }
                match req.token_type {
                    Some(ContentApiType::Custom) => {
                        if req.permissions.is_empty() {
                            return Err(ManageError::Invalid(
                                "a custom token needs at least one --permission ACTION".into(),
                            ));
                        }
                        for p in &req.permissions {
                            if p.subject.is_some() {
                                return Err(ManageError::Invalid(format!(
                                    "content-API permissions take no subject: `{p}`"
                                )));
                            }
                            if !self.cfg.routes.is_known_content_action(&p.action) {
                                return Err(ManageError::Invalid(format!(
                                    "unknown content-API action `{}` (no route maps to it; known actions: {})",
                                    p.action,
                                    self.cfg.routes.content_actions().join(", ")
                                )));
                            }
                        }
                    }
                    Some(_) if !req.permissions.is_empty() => {
                        return Err(ManageError::Invalid(
                            "--permission is only for custom tokens (--type custom)".into(),
                        ))
                    }
                    Some(_) => {}
                    None => {
                        return Err(ManageError::Invalid(
                            "a content-API token needs --type".into(),
                        ))
                    }
                }
            }
            TokenKind::Admin => {
                if req.token_type.is_some() {
                    return Err(ManageError::Invalid(
                        "admin tokens have no type (--type is for content-API tokens)".into(),
                    ));
                }
                let owner = owner
                    .ok_or_else(|| ManageError::Invalid("an admin token needs an owner".into()))?;
                for p in &req.permissions {
                    if !owner.holds(p) {
                        return Err(ManageError::Invalid(format!(
                            "owner {} does not hold the permission {p}, so the token cannot have it",
                            owner.email
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Create a token and return it with its plaintext key (shown once).
    pub async fn create(
        &self,
        actor: &Actor,
        req: CreateRequest,
    ) -> Result<TokenWithKey, ManageError> {
        self.require(actor, req.kind, Op::Create)?;
        if req.name.trim().is_empty() {
            return Err(ManageError::Invalid(
                "a token needs a non-empty name".into(),
            ));
        }
        let owner = match req.kind {
            TokenKind::ContentApi => None,
            TokenKind::Admin => {
                let email = match (&req.owner, actor) {
                    (Some(o), Actor::User(u)) if !o.eq_ignore_ascii_case(&u.email) => {
                        return Err(ManageError::Denied(format!(
                            "{} may only create admin tokens owned by themselves",
                            u.email
                        )))
                    }
                    (Some(o), _) => o.clone(),
                    (None, Actor::User(u)) => u.email.clone(),
                    (None, Actor::Operator) => {
                        return Err(ManageError::Invalid(
                            "an admin token needs --owner EMAIL".into(),
                        ))
                    }
                };
                let u =
                    self.store.user_by_email(&email).await?.ok_or_else(|| {
                        ManageError::NotFound(format!("no user with email {email}"))
                    })?;
                Some(u)
            }
        };
        self.check_permissions(&req, owner.as_ref())?;
        let key = token::generate_key()?;
        let encrypted_key = self.cipher.as_ref().map(|c| c.encrypt(&key)).transpose()?;
        let row = self
            .store
            .create_token(&NewToken {
                kind: req.kind,
                name: req.name.trim().to_owned(),
                description: req.description,
                token_type: req.token_type,
                lifespan_ms: req.lifespan_ms,
                owner_id: owner.as_ref().map(|u| u.id),
                permissions: req.permissions,
                access_key: self.hasher.hash_hex(&key),
                encrypted_key,
            })
            .await?;
        Ok(TokenWithKey {
            token: row,
            key: Some(zeroize::Zeroizing::new(key)),
        })
    }

    pub async fn list(
        &self,
        actor: &Actor,
        kind: Option<TokenKind>,
    ) -> Result<Vec<TokenRow>, ManageError> {
        match kind {
            Some(k) => self.require(actor, k, Op::Read)?,
            None => {
                self.require(actor, TokenKind::ContentApi, Op::Read)?;
                self.require(actor, TokenKind::Admin, Op::Read)?;
            }
        }
        Ok(self.store.list_tokens(kind).await?)
    }

    /// Show a token; with `reveal`, also its key when it may be viewed.
    pub async fn show(
        &self,
        actor: &Actor,
        id: i64,
        reveal: bool,
    ) -> Result<TokenWithKey, ManageError> {
        let t = self.token(id).await?;
        self.require(actor, t.kind, Op::Read)?;
        let key = if reveal {
            self.require_owner(actor, &t, "view the key of")?;
            let cipher = self.cipher.as_ref().ok_or_else(|| {
                ManageError::Invalid(
                    "keys cannot be shown again: no tokens.encryption_key is configured".into(),
                )
            })?;
            let enc = t.encrypted_key.as_deref().ok_or_else(|| {
                ManageError::Invalid(format!(
                    "token {id} has no stored key (created before an encryption key was configured): regenerate it"
                ))
            })?;
            Some(zeroize::Zeroizing::new(cipher.decrypt(enc)?))
        } else {
            None
        };
        Ok(TokenWithKey { token: t, key })
    }

    /// New key, same token; the old key stops working at commit.
    pub async fn regenerate(&self, actor: &Actor, id: i64) -> Result<TokenWithKey, ManageError> {
        let t = self.token(id).await?;
        self.require(actor, t.kind, Op::Regenerate)?;
        self.require_owner(actor, &t, "regenerate")?;
        let key = token::generate_key()?;
        let encrypted = self.cipher.as_ref().map(|c| c.encrypt(&key)).transpose()?;
        let row = self
            .store
            .regenerate_token(id, &self.hasher.hash_hex(&key), encrypted.as_deref())
            .await?
            .ok_or_else(|| ManageError::NotFound(format!("no token with id {id}")))?;
        Ok(TokenWithKey {
            token: row,
            key: Some(zeroize::Zeroizing::new(key)),
        })
    }

    pub async fn update(
        &self,
        actor: &Actor,
        id: i64,
        u: TokenUpdate,
    ) -> Result<TokenRow, ManageError> {
        let t = self.token(id).await?;
        self.require(actor, t.kind, Op::Update)?;
        self.require_owner_or_super(actor, &t, "edit")?;
        if let Some(perms) = &u.permissions {
            let owner = match t.owner_id {
                Some(oid) => self.store.user_by_id(oid).await?,
                None => None,
            };
            let req = CreateRequest {
                kind: t.kind,
                name: t.name.clone(),
                description: String::new(),
                token_type: if t.kind == TokenKind::ContentApi {
                    u.token_type.or(t.token_type)
                } else {
                    None
                },
                lifespan_ms: None,
                owner: None,
                permissions: perms.clone(),
            };
            self.check_permissions(&req, owner.as_ref())?;
        }
        if t.kind == TokenKind::Admin && u.token_type.is_some() {
            return Err(ManageError::Invalid("admin tokens have no type".into()));
        }
        self.store
            .update_token(id, &u)
            .await?
            .ok_or_else(|| ManageError::NotFound(format!("no token with id {id}")))
    }

    pub async fn delete(&self, actor: &Actor, id: i64) -> Result<TokenRow, ManageError> {
        let t = self.token(id).await?;
        self.require(actor, t.kind, Op::Delete)?;
        self.require_owner_or_super(actor, &t, "delete")?;
        if !self.store.delete_token(id).await? {
            return Err(ManageError::NotFound(format!("no token with id {id}")));
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
