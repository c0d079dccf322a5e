//! The rows both layouts return, and the decoders they share.
//!
//! Each layout's SQL names its columns alike (`id`, `email`, `actions`,
//! `subjects`, ...), so one decoder reads a user, a role or the common part
//! of a token whichever tables it came from. Every column is read with
//! [`Col::col`]: a value that does not decode is [`StoreError::Corrupt`],
//! never a panic and never the caller's mistake.

use std::fmt::Display;
use std::time::SystemTime;

use crate::store::sql::Db;
use tokio_postgres::row::RowIndex;
use tokio_postgres::types::FromSql;
use tokio_postgres::Row;

use super::StoreError;
use crate::cidr::Cidr;
use crate::model::{
    ContentApiType, Ending, Owner, Ownership, Permission, PermissionSet, RateOverride, TokenKind,
    TokenRecord,
};

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
    /// When the key replaced by the last regenerate stops working, while
    /// it still works (`token regenerate --keep-old-for`).
    pub old_key_expires_at: Option<SystemTime>,
    /// The networks the token may be used from, in stored order; empty:
    /// anywhere.
    pub allowed_cidrs: Vec<Cidr>,
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
    /// The key was brought along (`token import`), not generated: it may
    /// already be in use, and the audit event says so.
    pub imported: bool,
    pub kind: TokenKind,
    pub name: String,
    pub description: String,
    pub token_type: Option<ContentApiType>,
    pub lifespan_ms: Option<i64>,
    pub owner_id: Option<i64>,
    pub permissions: Vec<Permission>,
    pub access_key: String,
    pub encrypted_key: Option<String>,
    /// Empty: usable from anywhere.
    pub allowed_cidrs: Vec<Cidr>,
}

/// A regenerated token's new key (its hash and encrypted copy, computed by
/// the caller), and how long the key it replaces keeps working (`None`:
/// it stops at once).
#[derive(Debug, Clone, Copy)]
pub struct ReplacementKey<'a> {
    pub access_key: &'a str,
    pub encrypted_key: Option<&'a str>,
    pub keep_old_ms: Option<i64>,
}

/// Editable fields of a token; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct TokenUpdate {
    pub name: Option<String>,
    pub description: Option<String>,
    pub token_type: Option<ContentApiType>,
    pub permissions: Option<Vec<Permission>>,
    /// The whole list of networks (empty: no longer pinned).
    pub allowed_cidrs: Option<Vec<Cidr>>,
}

/// A user status flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserFlag {
    Active,
    Blocked,
}

/// `Ty { field: row.col("field")?, ..., other: expr }`: a struct whose
/// fields before the `;` are the row's columns of the same names.
macro_rules! columns {
    ($row:ident => $ty:ident { $($col:ident),* $(,)? ; $($f:ident : $e:expr),* $(,)? }) => {
        $ty { $($col: $row.col(stringify!($col))?,)* $($f: $e,)* }
    };
}
pub(crate) use columns;

/// Reading a column of a stored row.
pub(crate) trait Col {
    /// The column `idx` as a `T`; [`StoreError::Corrupt`] when it is not one.
    fn col<'a, I, T>(&'a self, idx: I) -> Result<T, StoreError>
    where
        I: RowIndex + Display,
        T: FromSql<'a>;
}

impl Col for Row {
    fn col<'a, I, T>(&'a self, idx: I) -> Result<T, StoreError>
    where
        I: RowIndex + Display,
        T: FromSql<'a>,
    {
        self.try_get(&idx).map_err(|e| StoreError::Corrupt {
            what: format!("column `{idx}`"),
            source: Some(e),
        })
    }
}

/// A stored value that is the right type but means nothing (an unknown
/// token kind, say).
pub(crate) fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        source: None,
    }
}

/// A stored token kind.
pub(super) fn kind(row: &Row) -> Result<TokenKind, StoreError> {
    let kind: String = row.col("kind")?;
    kind.parse().map_err(corrupt)
}

/// The `actions` and `subjects` array columns of a row, paired, in order.
pub(super) fn permission_list(
    row: &Row,
    actions: &str,
    subjects: &str,
) -> Result<Vec<Permission>, StoreError> {
    let a: Vec<String> = row.col(actions)?;
    let s: Vec<Option<String>> = row.col(subjects)?;
    if a.len() != s.len() {
        return Err(corrupt(format!(
            "columns `{actions}` and `{subjects}` differ in length"
        )));
    }
    Ok(a.into_iter()
        .zip(s)
        .map(|(a, s)| Permission::new(a, s))
        .collect())
}

/// The same as a set.
pub(super) fn permission_set(
    row: &Row,
    actions: &str,
    subjects: &str,
) -> Result<PermissionSet, StoreError> {
    Ok(permission_list(row, actions, subjects)?
        .into_iter()
        .collect())
}

/// The `allowed_cidrs` column (`cidr[]`, read as `text[]`).
pub(super) fn allowed_cidrs(row: &Row) -> Result<Vec<Cidr>, StoreError> {
    let texts: Vec<String> = row.col("allowed_cidrs")?;
    texts
        .iter()
        .map(|t| Cidr::parse(t).map_err(|e| corrupt(format!("column `allowed_cidrs`: {e}"))))
        .collect()
}

/// Networks as the `text[]` a `cidr[]` column is written from.
pub(super) fn cidr_texts(blocks: &[Cidr]) -> Vec<String> {
    blocks.iter().map(ToString::to_string).collect()
}

/// An admin token's owner from a lookup row. Both layouts' lookup queries
/// name the owner's columns alike: `user_id` (NULL when the owner row is
/// gone), `email`, `is_active`, `blocked`, `super_admin`, `role_ids`,
/// `role_actions`, `role_subjects`.
pub(super) fn ownership(row: &Row) -> Result<Ownership, StoreError> {
    Ok(match row.col::<_, Option<i64>>("user_id")? {
        None => Ownership::Missing,
        Some(id) => Ownership::owner(Owner {
            id,
            email: row.col("email")?,
            is_active: row.col("is_active")?,
            blocked: row.col("blocked")?,
            super_admin: row.col("super_admin")?,
            permissions: permission_set(row, "role_actions", "role_subjects")?,
            role_ids: row.col("role_ids")?,
        }),
    })
}

/// The columns every layout's token listing has, with what the layout
/// decided of kind, type and permissions. `rate_limit` and
/// `old_key_expires_at` are left `None`, `allowed_cidrs` empty.
pub(super) fn token_row(
    row: &Row,
    kind: TokenKind,
    token_type: Option<ContentApiType>,
    permissions: Vec<Permission>,
) -> Result<TokenRow, StoreError> {
    Ok(columns!(row => TokenRow {
        id, name, description, expires_at, last_used_at, owner_id, owner_email, encrypted_key,
        created_at, updated_at;
        kind: kind, token_type: token_type, permissions: permissions,
        lifespan_ms: row.col("lifespan")?, rate_limit: None, old_key_expires_at: None,
        allowed_cidrs: Vec::new(),
    }))
}

/// The columns every layout's lookup has, with what the layout decided of
/// the rest. Not pinned to networks.
pub(super) fn record(
    row: &Row,
    kind: TokenKind,
    token_type: Option<ContentApiType>,
    permissions: PermissionSet,
    ownership: Ownership,
    rate_limit: RateOverride,
) -> Result<TokenRecord, StoreError> {
    Ok(columns!(row => TokenRecord {
        id, name;
        expires_at: row.col::<_, Option<SystemTime>>("expires_at")?.into(),
        kind: kind, token_type: token_type, permissions: permissions, ownership: ownership,
        rate_limit: rate_limit, ends: Ending::Token, networks: Default::default(),
    }))
}

/// A user: `id`, `email`, `name`, `is_active`, `blocked`, `roles`,
/// `super_admin`, `actions`, `subjects`.
pub(super) fn user_row(row: &Row) -> Result<UserRow, StoreError> {
    Ok(columns!(row => UserRow {
        id, email, name, is_active, blocked, roles, super_admin;
        permissions: permission_set(row, "actions", "subjects")?,
    }))
}

/// A role: `id`, `name`, `super_admin`, `actions`, `subjects` (in the
/// order the query gave them).
pub(super) fn role_row(row: &Row) -> Result<RoleRow, StoreError> {
    Ok(columns!(row => RoleRow {
        id, name, super_admin;
        permissions: permission_list(row, "actions", "subjects")?,
    }))
}

/// Which users to read: every layout's user query has the user as `u`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Users<'a> {
    /// By email, ignoring case.
    Email(&'a str),
    Id(i64),
    All,
}

/// The users `which` picks from `select` (a layout's user query, up to
/// its `FROM`), lowest id first: one statement however many there are.
pub(super) async fn users(
    c: &impl Db,
    select: &str,
    which: Users<'_>,
) -> Result<Vec<UserRow>, StoreError> {
    let (clause, arg): (&str, Option<&dyn crate::store::sql::Param>) = match &which {
        Users::Email(email) => ("lower(u.email) = lower($1)", Some(email)),
        Users::Id(id) => ("u.id = $1::bigint", Some(id)),
        Users::All => ("true", None),
    };
    let rows = c
        .rows(
            &format!("{select} WHERE {clause} ORDER BY u.id"),
            arg.as_slice(),
        )
        .await?;
    rows.iter().map(user_row).collect()
}
