//! Management operations on tokens, users and roles.
//!
//! These are plain data operations. Who may perform them is decided by
//! [`crate::manage`]; cache invalidation follows from the NOTIFY triggers
//! every write fires. The statements here are the native layout's; in the
//! strapi5 layout the reads go to [`super::strapi5`] and every write is
//! refused ([`Store::writable`]): Strapi's admin panel owns that data.

use std::time::SystemTime;

use deadpool_postgres::GenericClient;
use serde_json::{json, Value};
use tokio_postgres::error::SqlState;

use super::audit::{append, commit};
use super::{strapi5, Layout, Store, StoreError};
use crate::audit::{changes, rfc3339, AuditCtx, Draft, Target};
use crate::model::{ContentApiType, Permission, PermissionSet, TokenKind};

/// A token as listed and shown (never the key, never the hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: i64,
    pub kind: TokenKind,
    pub name: String,
    pub description: String,
    pub token_type: Option<ContentApiType>,
    pub lifespan_ms: Option<i64>,
    pub expires_at: Option<SystemTime>,
    pub last_used_at: Option<SystemTime>,
    pub owner_id: Option<i64>,
    pub owner_email: Option<String>,
    pub permissions: Vec<Permission>,
    pub encrypted_key: Option<String>,
    pub rate_limit: Option<i32>,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

/// A user with their roles and effective permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub is_active: bool,
    pub blocked: bool,
    pub roles: Vec<String>,
    pub super_admin: bool,
    pub permissions: PermissionSet,
}

impl UserRow {
    pub fn holds(&self, p: &Permission) -> bool {
        self.super_admin || self.permissions.grants(&p.action, p.subject.as_deref())
    }
}

/// A role with its permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRow {
    pub id: i64,
    pub name: String,
    pub super_admin: bool,
    pub permissions: Vec<Permission>,
}

/// What a new token is made of. The key hash and encrypted copy are computed
/// by the caller; the store never sees the plaintext key.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub kind: TokenKind,
    pub name: String,
    pub description: String,
    pub token_type: Option<ContentApiType>,
    pub lifespan_ms: Option<i64>,
    pub owner_id: Option<i64>,
    pub permissions: Vec<Permission>,
    pub access_key: String,
    pub encrypted_key: Option<String>,
}

/// Editable fields of a token; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct TokenUpdate {
    pub name: Option<String>,
    pub description: Option<String>,
    pub token_type: Option<ContentApiType>,
    pub permissions: Option<Vec<Permission>>,
}

const TOKEN_COLUMNS: &str = "
    t.id, t.kind, t.name, t.description, t.type, t.lifespan, t.expires_at, t.last_used_at,
    t.owner_id, u.email AS owner_email, t.encrypted_key, t.rate_limit, t.created_at, t.updated_at,
    ARRAY(SELECT p.action FROM token_permissions p WHERE p.token_id = t.id ORDER BY p.action, p.subject) AS perm_actions,
    ARRAY(SELECT p.subject FROM token_permissions p WHERE p.token_id = t.id ORDER BY p.action, p.subject) AS perm_subjects";

fn token_row(row: &tokio_postgres::Row) -> Result<TokenRow, StoreError> {
    let kind: String = row.try_get("kind")?;
    let kind: TokenKind = kind.parse().map_err(StoreError::Invalid)?;
    let token_type = match row.try_get::<_, Option<String>>("type")? {
        Some(t) if kind == TokenKind::ContentApi => Some(t.parse().map_err(StoreError::Invalid)?),
        _ => None,
    };
    let actions: Vec<String> = row.try_get("perm_actions")?;
    let subjects: Vec<Option<String>> = row.try_get("perm_subjects")?;
    Ok(TokenRow {
        id: row.try_get("id")?,
        kind,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        token_type,
        lifespan_ms: row.try_get("lifespan")?,
        expires_at: row.try_get("expires_at")?,
        last_used_at: row.try_get("last_used_at")?,
        owner_id: row.try_get("owner_id")?,
        owner_email: row.try_get("owner_email")?,
        permissions: actions
            .into_iter()
            .zip(subjects)
            .map(|(a, s)| Permission::new(a, s))
            .collect(),
        encrypted_key: row.try_get("encrypted_key")?,
        rate_limit: row.try_get("rate_limit")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Turn unique-violation errors into a readable message.
fn conflict(e: tokio_postgres::Error, what: impl FnOnce() -> String) -> StoreError {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        StoreError::Invalid(what())
    } else {
        StoreError::Db(e)
    }
}

// ----- what audit events record of each row ---------------------------------

fn perms_json(perms: &[Permission]) -> Value {
    let mut v: Vec<String> = perms.iter().map(ToString::to_string).collect();
    v.sort();
    json!(v)
}

/// The audited fields of a token (never its key, hash or encrypted key).
fn token_fields(t: Option<&TokenRow>) -> [(&'static str, Value); 6] {
    let f = |g: &dyn Fn(&TokenRow) -> Value| t.map_or(Value::Null, g);
    [
        ("name", f(&|t| json!(t.name))),
        ("description", f(&|t| json!(t.description))),
        (
            "type",
            f(&|t| json!(t.token_type.map(ContentApiType::as_str))),
        ),
        ("permissions", f(&|t| perms_json(&t.permissions))),
        ("expiry", f(&|t| json!(t.expires_at.map(rfc3339)))),
        ("owner", f(&|t| json!(t.owner_email))),
    ]
}

/// `before -> after` of the audited fields of two versions of a row.
fn diff<const N: usize>(
    before: [(&'static str, Value); N],
    after: [(&'static str, Value); N],
) -> Value {
    let fields: Vec<(&str, Value, Value)> = before
        .into_iter()
        .zip(after)
        .map(|((name, b), (_, a))| (name, b, a))
        .collect();
    changes(&fields)
}

pub(crate) fn token_target(t: &TokenRow) -> Target {
    Target {
        kind: match t.kind {
            TokenKind::ContentApi => "api-token",
            TokenKind::Admin => "admin-token",
        },
        id: t.id,
        name: t.name.clone(),
    }
}

/// `api-token.<verb>` or `admin-token.<verb>`.
pub(crate) fn token_draft(t: &TokenRow, verb: &str, changes: Value) -> Draft {
    let target = token_target(t);
    Draft {
        action: format!("{}.{verb}", target.kind),
        target,
        changes,
    }
}

fn status(u: &UserRow) -> &'static str {
    match (u.is_active, u.blocked) {
        (_, true) => "blocked",
        (true, false) => "active",
        (false, false) => "inactive",
    }
}

fn user_fields(u: Option<&UserRow>) -> [(&'static str, Value); 4] {
    let f = |g: &dyn Fn(&UserRow) -> Value| u.map_or(Value::Null, g);
    [
        ("email", f(&|u| json!(u.email))),
        ("name", f(&|u| json!(u.name))),
        ("status", f(&|u| json!(status(u)))),
        ("roles", f(&|u| json!(u.roles))),
    ]
}

fn user_draft(u: &UserRow, verb: &str, changes: Value) -> Draft {
    Draft {
        action: format!("user.{verb}"),
        target: Target {
            kind: "user",
            id: u.id,
            name: u.email.clone(),
        },
        changes,
    }
}

async fn role_permissions(c: &impl GenericClient, id: i64) -> Result<Value, StoreError> {
    let rows = c
        .query(
            "SELECT action, subject FROM role_permissions WHERE role_id = $1",
            &[&id],
        )
        .await?;
    let perms = rows
        .iter()
        .map(|r| Ok(Permission::new(r.try_get::<_, String>(0)?, r.try_get(1)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(perms_json(&perms))
}

fn role_draft(id: i64, name: &str, verb: &str, changes: Value) -> Draft {
    Draft {
        action: format!("role.{verb}"),
        target: Target {
            kind: "role",
            id,
            name: name.to_owned(),
        },
        changes,
    }
}

async fn insert_permissions<C: GenericClient>(
    c: &C,
    table: &str,
    owner_col: &str,
    owner_id: i64,
    perms: &[Permission],
) -> Result<(), StoreError> {
    if perms.is_empty() {
        return Ok(());
    }
    let actions: Vec<&str> = perms.iter().map(|p| p.action.as_str()).collect();
    let subjects: Vec<Option<&str>> = perms.iter().map(|p| p.subject.as_deref()).collect();
    c.execute(
        &format!(
            "INSERT INTO {table} ({owner_col}, action, subject)
             SELECT $1, a, s FROM unnest($2::text[], $3::text[]) AS x(a, s)
             ON CONFLICT DO NOTHING"
        ),
        &[&owner_id, &actions, &subjects],
    )
    .await?;
    Ok(())
}

async fn user_where<C: GenericClient>(
    c: &C,
    clause: &str,
    arg: &(dyn tokio_postgres::types::ToSql + Sync),
) -> Result<Option<UserRow>, StoreError> {
    let row = c
        .query_opt(
            &format!(
                "SELECT u.id, u.email, u.name, u.is_active, u.blocked,
                        ARRAY(SELECT r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id
                              WHERE ur.user_id = u.id ORDER BY r.name) AS roles,
                        EXISTS (SELECT 1 FROM user_roles ur JOIN roles r ON r.id = ur.role_id
                                WHERE ur.user_id = u.id AND r.code = 'super-admin') AS super_admin,
                        ARRAY(SELECT rp.action FROM user_roles ur JOIN role_permissions rp ON rp.role_id = ur.role_id
                              WHERE ur.user_id = u.id ORDER BY rp.id) AS actions,
                        ARRAY(SELECT rp.subject FROM user_roles ur JOIN role_permissions rp ON rp.role_id = ur.role_id
                              WHERE ur.user_id = u.id ORDER BY rp.id) AS subjects
                 FROM users u WHERE {clause}"
            ),
            &[arg],
        )
        .await?;
    row.map(|row| -> Result<UserRow, StoreError> {
        let actions: Vec<String> = row.try_get("actions")?;
        let subjects: Vec<Option<String>> = row.try_get("subjects")?;
        Ok(UserRow {
            id: row.try_get("id")?,
            email: row.try_get("email")?,
            name: row.try_get("name")?,
            is_active: row.try_get("is_active")?,
            blocked: row.try_get("blocked")?,
            roles: row.try_get("roles")?,
            super_admin: row.try_get("super_admin")?,
            permissions: actions
                .into_iter()
                .zip(subjects)
                .map(|(a, s)| Permission::new(a, s))
                .collect(),
        })
    })
    .transpose()
}

impl Store {
    // ----- users ---------------------------------------------------------

    pub async fn create_user(
        &self,
        email: &str,
        name: &str,
        roles: &[String],
        audit: &AuditCtx,
    ) -> Result<UserRow, StoreError> {
        self.writable("create users")?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mut logged = Vec::new();
        let id: i64 = tx
            .query_one(
                "INSERT INTO users (email, name) VALUES ($1, $2) RETURNING id",
                &[&email, &name],
            )
            .await
            .map_err(|e| conflict(e, || format!("a user with email {email} already exists")))?
            .get(0);
        for role in roles {
            let n = tx
                .execute(
                    "INSERT INTO user_roles (user_id, role_id) SELECT $1, id FROM roles WHERE name = $2
                     ON CONFLICT DO NOTHING",
                    &[&id, role],
                )
                .await?;
            if n == 0
                && !tx
                    .query("SELECT 1 FROM roles WHERE name = $1", &[role])
                    .await?
                    .iter()
                    .any(|_| true)
            {
                return Err(StoreError::Invalid(format!(
                    "no role named `{role}` (see `authgate role list`)"
                )));
            }
        }
        let user = user_where(&tx, "u.id = $1", &id)
            .await?
            .ok_or_else(|| StoreError::Invalid("user vanished during creation".into()))?;
        let c = diff(user_fields(None), user_fields(Some(&user)));
        logged.push(
            append(
                &tx,
                self.audit_table(),
                audit,
                user_draft(&user, "create", c),
            )
            .await?,
        );
        commit(tx, &logged).await?;
        Ok(user)
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserRow>, StoreError> {
        if self.layout() == Layout::Strapi5 {
            return Ok(
                strapi5::users_where(self, "lower(u.email) = lower($1)", &[&email])
                    .await?
                    .into_iter()
                    .next(),
            );
        }
        let client = self.client().await?;
        user_where(&client, "lower(u.email) = lower($1)", &email).await
    }

    pub async fn user_by_id(&self, id: i64) -> Result<Option<UserRow>, StoreError> {
        if self.layout() == Layout::Strapi5 {
            return Ok(strapi5::users_where(self, "u.id = $1::bigint", &[&id])
                .await?
                .into_iter()
                .next());
        }
        let client = self.client().await?;
        user_where(&client, "u.id = $1", &id).await
    }

    pub async fn list_users(&self) -> Result<Vec<UserRow>, StoreError> {
        if self.layout() == Layout::Strapi5 {
            return strapi5::users_where(self, "true", &[]).await;
        }
        let client = self.client().await?;
        let ids: Vec<i64> = client
            .query("SELECT id FROM users ORDER BY id", &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(u) = user_where(&client, "u.id = $1", &id).await? {
                out.push(u);
            }
        }
        Ok(out)
    }

    /// Set `is_active` or `blocked`. Returns false when no such user.
    pub async fn set_user_flag(
        &self,
        email: &str,
        flag: UserFlag,
        value: bool,
        audit: &AuditCtx,
    ) -> Result<bool, StoreError> {
        self.writable("change users")?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mut logged = Vec::new();
        let Some(before) = user_where(&tx, "lower(u.email) = lower($1)", &email).await? else {
            tx.rollback().await?;
            return Ok(false);
        };
        let column = match flag {
            UserFlag::Active => "is_active",
            UserFlag::Blocked => "blocked",
        };
        tx.execute(
            &format!("UPDATE users SET {column} = $2, updated_at = now() WHERE id = $1"),
            &[&before.id, &value],
        )
        .await?;
        logged.extend(self.user_updated(&tx, &before, audit).await?);
        commit(tx, &logged).await?;
        Ok(true)
    }

    /// The `user.update` event of a change to `before`'s row or roles, when
    /// an audited field changed.
    async fn user_updated(
        &self,
        tx: &impl GenericClient,
        before: &UserRow,
        audit: &AuditCtx,
    ) -> Result<Option<crate::audit::Event>, StoreError> {
        let after = user_where(tx, "u.id = $1", &before.id).await?;
        let c = diff(user_fields(Some(before)), user_fields(after.as_ref()));
        if !c.as_object().is_some_and(|m| !m.is_empty()) {
            return Ok(None);
        }
        let draft = user_draft(before, "update", c);
        Ok(Some(append(tx, self.audit_table(), audit, draft).await?))
    }

    /// Delete a user; the database deletes their admin tokens with them.
    /// Returns the number of tokens deleted, or `None` when no such user.
    pub async fn delete_user(
        &self,
        email: &str,
        audit: &AuditCtx,
    ) -> Result<Option<i64>, StoreError> {
        self.writable("delete users")?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mut logged = Vec::new();
        if tx
            .query_opt(
                "SELECT id FROM users WHERE lower(email) = lower($1) FOR UPDATE",
                &[&email],
            )
            .await?
            .is_none()
        {
            tx.rollback().await?;
            return Ok(None);
        }
        let Some(user) = user_where(&tx, "lower(u.email) = lower($1)", &email).await? else {
            tx.rollback().await?;
            return Ok(None);
        };
        let tokens: Vec<i64> = tx
            .query(
                "SELECT id FROM tokens WHERE owner_id = $1 ORDER BY id",
                &[&user.id],
            )
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        tx.execute("DELETE FROM users WHERE id = $1", &[&user.id])
            .await?;
        let mut c = diff(user_fields(Some(&user)), user_fields(None));
        if let Some(m) = c.as_object_mut() {
            // Their admin tokens go with them (ON DELETE CASCADE).
            m.insert(
                "tokens".into(),
                json!({"before": tokens, "after": Value::Array(Vec::new())}),
            );
        }
        logged.push(
            append(
                &tx,
                self.audit_table(),
                audit,
                user_draft(&user, "delete", c),
            )
            .await?,
        );
        commit(tx, &logged).await?;
        Ok(Some(tokens.len() as i64))
    }

    // ----- roles ---------------------------------------------------------

    pub async fn create_role(&self, name: &str, audit: &AuditCtx) -> Result<RoleRow, StoreError> {
        self.writable("create roles")?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mut logged = Vec::new();
        let id: i64 = tx
            .query_one(
                "INSERT INTO roles (name) VALUES ($1) RETURNING id",
                &[&name],
            )
            .await
            .map_err(|e| conflict(e, || format!("a role named `{name}` already exists")))?
            .try_get(0)?;
        let c = changes(&[("name", Value::Null, json!(name))]);
        logged.push(
            append(
                &tx,
                self.audit_table(),
                audit,
                role_draft(id, name, "create", c),
            )
            .await?,
        );
        commit(tx, &logged).await?;
        Ok(RoleRow {
            id,
            name: name.to_owned(),
            super_admin: false,
            permissions: Vec::new(),
        })
    }

    async fn role_id(client: &impl GenericClient, name: &str) -> Result<i64, StoreError> {
        client
            .query_opt("SELECT id FROM roles WHERE name = $1", &[&name])
            .await?
            .map(|r| r.get(0))
            .ok_or_else(|| {
                StoreError::Invalid(format!("no role named `{name}` (see `authgate role list`)"))
            })
    }

    /// Delete a role; its members lose what it granted (and, through the
    /// role-permission trigger, their admin tokens lose what no other role
    /// of theirs grants). Returns the number of members, or `None` when no
    /// such role. The super-admin role cannot be deleted.
    pub async fn delete_role(
        &self,
        name: &str,
        audit: &AuditCtx,
    ) -> Result<Option<usize>, StoreError> {
        self.writable("delete roles")?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mut logged = Vec::new();
        let Some(row) = tx
            .query_opt(
                "SELECT id, coalesce(code = 'super-admin', false) FROM roles WHERE name = $1 FOR UPDATE",
                &[&name],
            )
            .await?
        else {
            tx.rollback().await?;
            return Ok(None);
        };
        let (id, super_admin): (i64, bool) = (row.try_get(0)?, row.try_get(1)?);
        if super_admin {
            tx.rollback().await?;
            return Err(StoreError::Invalid(format!(
                "`{name}` is the super-admin role and cannot be deleted"
            )));
        }
        let members: Vec<String> = tx
            .query(
                "SELECT u.email FROM user_roles ur JOIN users u ON u.id = ur.user_id
                 WHERE ur.role_id = $1 ORDER BY u.email",
                &[&id],
            )
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        let perms = role_permissions(&tx, id).await?;
        // Permissions first, so the trigger trims the members' tokens.
        tx.execute("DELETE FROM role_permissions WHERE role_id = $1", &[&id])
            .await?;
        tx.execute("DELETE FROM roles WHERE id = $1", &[&id])
            .await?;
        let c = changes(&[
            ("name", json!(name), Value::Null),
            ("permissions", perms, Value::Null),
            ("users", json!(members), json!([])),
        ]);
        logged.push(
            append(
                &tx,
                self.audit_table(),
                audit,
                role_draft(id, name, "delete", c),
            )
            .await?,
        );
        commit(tx, &logged).await?;
        Ok(Some(members.len()))
    }

    /// The `role.update` event of a grant or revoke: the role's
    /// permissions before (`before`) and now.
    async fn role_updated(
        &self,
        tx: &impl GenericClient,
        id: i64,
        role: &str,
        before: Value,
        audit: &AuditCtx,
    ) -> Result<crate::audit::Event, StoreError> {
        let after = role_permissions(tx, id).await?;
        let c = changes(&[("permissions", before, after)]);
        append(
            tx,
            self.audit_table(),
            audit,
            role_draft(id, role, "update", c),
        )
        .await
    }

    /// Grant a permission to a role. Returns false when it already held it.
    pub async fn grant(
        &self,
        role: &str,
        p: &Permission,
        audit: &AuditCtx,
    ) -> Result<bool, StoreError> {
        self.writable("grant permissions")?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mut logged = Vec::new();
        let id = Self::role_id(&tx, role).await?;
        let before = role_permissions(&tx, id).await?;
        let n = tx
            .execute(
                "INSERT INTO role_permissions (role_id, action, subject) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&id, &p.action, &p.subject],
            )
            .await?;
        if n > 0 {
            logged.push(self.role_updated(&tx, id, role, before, audit).await?);
        }
        commit(tx, &logged).await?;
        Ok(n > 0)
    }

    /// Revoke a permission from a role; a trigger removes it from the admin
    /// tokens of the role's users in the same transaction. Returns the
    /// number of token permissions removed, or `None` when the role did not
    /// hold it.
    pub async fn revoke(
        &self,
        role: &str,
        p: &Permission,
        audit: &AuditCtx,
    ) -> Result<Option<i64>, StoreError> {
        self.writable("revoke permissions")?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mut logged = Vec::new();
        let id = Self::role_id(&tx, role).await?;
        let before_perms = role_permissions(&tx, id).await?;
        // Count the affected token permissions before and after, inside the
        // transaction, to report what the trigger removed.
        const AFFECTED: &str = "SELECT count(*) FROM token_permissions tp
            JOIN tokens t ON t.id = tp.token_id
            JOIN user_roles ur ON ur.user_id = t.owner_id AND ur.role_id = $1
            WHERE tp.action = $2 AND tp.subject IS NOT DISTINCT FROM $3";
        let before: i64 = tx
            .query_one(AFFECTED, &[&id, &p.action, &p.subject])
            .await?
            .get(0);
        let n = tx
            .execute(
                "DELETE FROM role_permissions WHERE role_id = $1 AND action = $2 AND subject IS NOT DISTINCT FROM $3",
                &[&id, &p.action, &p.subject],
            )
            .await?;
        let after: i64 = tx
            .query_one(AFFECTED, &[&id, &p.action, &p.subject])
            .await?
            .try_get(0)?;
        if n > 0 {
            logged.push(
                self.role_updated(&tx, id, role, before_perms, audit)
                    .await?,
            );
        }
        commit(tx, &logged).await?;
        Ok((n > 0).then_some(before - after))
    }

    /// Add a user to a role, or remove them from it.
    pub async fn set_user_role(
        &self,
        email: &str,
        role: &str,
        member: bool,
        audit: &AuditCtx,
    ) -> Result<bool, StoreError> {
        self.writable("change users' roles")?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mut logged = Vec::new();
        let role_id = Self::role_id(&tx, role).await?;
        let before = user_where(&tx, "lower(u.email) = lower($1)", &email)
            .await?
            .ok_or_else(|| StoreError::Invalid(format!("no user with email {email}")))?;
        let n = if member {
            tx.execute(
                "INSERT INTO user_roles (user_id, role_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&before.id, &role_id],
            )
            .await?
        } else {
            tx.execute(
                "DELETE FROM user_roles WHERE user_id = $1 AND role_id = $2",
                &[&before.id, &role_id],
            )
            .await?
        };
        if n > 0 {
            logged.extend(self.user_updated(&tx, &before, audit).await?);
        }
        commit(tx, &logged).await?;
        Ok(n > 0)
    }

    pub async fn list_roles(&self) -> Result<Vec<RoleRow>, StoreError> {
        if self.layout() == Layout::Strapi5 {
            return strapi5::list_roles(self).await;
        }
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT r.id, r.name, coalesce(r.code = 'super-admin', false) AS super_admin,
                        ARRAY(SELECT rp.action FROM role_permissions rp WHERE rp.role_id = r.id ORDER BY rp.action, rp.subject) AS actions,
                        ARRAY(SELECT rp.subject FROM role_permissions rp WHERE rp.role_id = r.id ORDER BY rp.action, rp.subject) AS subjects
                 FROM roles r ORDER BY r.id",
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let actions: Vec<String> = row.try_get("actions")?;
                let subjects: Vec<Option<String>> = row.try_get("subjects")?;
                Ok(RoleRow {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    super_admin: row.try_get("super_admin")?,
                    permissions: actions
                        .into_iter()
                        .zip(subjects)
                        .map(|(a, s)| Permission::new(a, s))
                        .collect(),
                })
            })
            .collect()
    }

    // ----- tokens --------------------------------------------------------

    pub async fn create_token(
        &self,
        t: &NewToken,
        audit: &AuditCtx,
    ) -> Result<TokenRow, StoreError> {
        self.writable("create tokens")?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mut logged = Vec::new();
        let kind = t.kind.as_str();
        let ty = t.token_type.map(ContentApiType::as_str);
        let id: i64 = tx
            .query_one(
                "INSERT INTO tokens (kind, name, description, type, access_key, encrypted_key, lifespan, expires_at, owner_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7::bigint,
                         CASE WHEN $7::bigint IS NULL THEN NULL ELSE now() + $7::bigint * interval '1 millisecond' END,
                         $8)
                 RETURNING id",
                &[&kind, &t.name, &t.description, &ty, &t.access_key, &t.encrypted_key, &t.lifespan_ms, &t.owner_id],
            )
            .await
            .map_err(|e| conflict(e, || format!("a {} token named `{}` already exists", t.kind, t.name)))?
            .get(0);
        insert_permissions(&tx, "token_permissions", "token_id", id, &t.permissions).await?;
        let row = token_row(
            &tx.query_one(&format!("SELECT {TOKEN_COLUMNS} FROM tokens t LEFT JOIN users u ON u.id = t.owner_id WHERE t.id = $1"), &[&id])
                .await?,
        )?;
        let c = diff(token_fields(None), token_fields(Some(&row)));
        logged.push(
            append(
                &tx,
                self.audit_table(),
                audit,
                token_draft(&row, "create", c),
            )
            .await?,
        );
        commit(tx, &logged).await?;
        Ok(row)
    }

    pub async fn list_tokens(&self, kind: Option<TokenKind>) -> Result<Vec<TokenRow>, StoreError> {
        if self.layout() == Layout::Strapi5 {
            return strapi5::list_tokens(self, kind).await;
        }
        let client = self.client().await?;
        let kind = kind.map(TokenKind::as_str);
        let rows = client
            .query(
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens t LEFT JOIN users u ON u.id = t.owner_id
                     WHERE $1::text IS NULL OR t.kind = $1 ORDER BY t.id"
                ),
                &[&kind],
            )
            .await?;
        rows.iter().map(token_row).collect()
    }

    pub async fn get_token(&self, id: i64) -> Result<Option<TokenRow>, StoreError> {
        if self.layout() == Layout::Strapi5 {
            return strapi5::get_token(self, id).await;
        }
        let client = self.client().await?;
        Self::token_in(&client, id).await
    }

    async fn token_in<C: GenericClient>(c: &C, id: i64) -> Result<Option<TokenRow>, StoreError> {
        let row = c
            .query_opt(&format!("SELECT {TOKEN_COLUMNS} FROM tokens t LEFT JOIN users u ON u.id = t.owner_id WHERE t.id = $1"), &[&id])
            .await?;
        row.as_ref().map(token_row).transpose()
    }

    /// Replace a token's hash (and encrypted copy) in one update: the old key
    /// stops working at commit. `expires_at` is unchanged, as in Strapi.
    pub async fn regenerate_token(
        &self,
        id: i64,
        access_key: &str,
        encrypted_key: Option<&str>,
        audit: &AuditCtx,
    ) -> Result<Option<TokenRow>, StoreError> {
        self.writable("regenerate tokens")?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mut logged = Vec::new();
        let n = tx
            .execute(
                "UPDATE tokens SET access_key = $2, encrypted_key = $3, updated_at = now() WHERE id = $1",
                &[&id, &access_key, &encrypted_key],
            )
            .await?;
        if n == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        let row = Self::token_in(&tx, id).await?;
        if let Some(t) = &row {
            logged.push(
                append(
                    &tx,
                    self.audit_table(),
                    audit,
                    token_draft(t, "regenerate", json!({})),
                )
                .await?,
            );
        }
        commit(tx, &logged).await?;
        Ok(row)
    }

    /// Edit a token's name, description, type or permissions.
    pub async fn update_token(
        &self,
        id: i64,
        u: &TokenUpdate,
        audit: &AuditCtx,
    ) -> Result<Option<TokenRow>, StoreError> {
        self.writable("edit tokens")?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mut logged = Vec::new();
        let Some(before) = Self::token_in(&tx, id).await? else {
            tx.rollback().await?;
            return Ok(None);
        };
        let ty = u.token_type.map(ContentApiType::as_str);
        tx.execute(
            "UPDATE tokens SET name = coalesce($2, name), description = coalesce($3, description),
                               type = coalesce($4, type), updated_at = now()
             WHERE id = $1",
            &[&id, &u.name, &u.description, &ty],
        )
        .await
        .map_err(|e| {
            conflict(e, || {
                format!(
                    "a token named `{}` already exists",
                    u.name.as_deref().unwrap_or("")
                )
            })
        })?;
        if let Some(perms) = &u.permissions {
            tx.execute("DELETE FROM token_permissions WHERE token_id = $1", &[&id])
                .await?;
            insert_permissions(&tx, "token_permissions", "token_id", id, perms).await?;
        }
        let after = Self::token_in(&tx, id).await?;
        if let Some(a) = &after {
            let c = diff(token_fields(Some(&before)), token_fields(Some(a)));
            logged.push(append(&tx, self.audit_table(), audit, token_draft(a, "update", c)).await?);
        }
        commit(tx, &logged).await?;
        Ok(after)
    }

    /// Delete a token. Returns false when there was none.
    pub async fn delete_token(&self, id: i64, audit: &AuditCtx) -> Result<bool, StoreError> {
        self.writable("delete tokens")?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mut logged = Vec::new();
        let Some(before) = Self::token_in(&tx, id).await? else {
            tx.rollback().await?;
            return Ok(false);
        };
        let n = tx
            .execute("DELETE FROM tokens WHERE id = $1", &[&id])
            .await?;
        if n > 0 {
            let c = diff(token_fields(Some(&before)), token_fields(None));
            logged.push(
                append(
                    &tx,
                    self.audit_table(),
                    audit,
                    token_draft(&before, "delete", c),
                )
                .await?,
            );
        }
        commit(tx, &logged).await?;
        Ok(n > 0)
    }
}

/// A user status flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserFlag {
    Active,
    Blocked,
}
