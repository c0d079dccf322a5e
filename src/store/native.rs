//! The authgate layout: authgate's own tables (`migrations/authgate/`).
//!
//! Every statement of the native layout: the lookups ([`STATEMENTS`]),
//! the migrations ([`migrate`]), and the management reads and writes the
//! [`Store`] dispatches to here (see [`super::admin`]). Every write runs
//! inside `Store::audited` (`store/audit.rs`): one transaction, which
//! records the write's audit event last and commits.

use crate::store::sql::Db;
use serde_json::{json, Value};
use tokio_postgres::error::SqlState;

use super::audit::{
    diff, perms_json, role_draft, token_draft, token_fields, user_draft, user_fields, Outcome,
};
use super::rows::{
    self, corrupt, Col, NewToken, ReplacementKey, RoleRow, TokenRow, TokenUpdate, UserFlag,
    UserRow, Users,
};
use super::{connect, Statements, Store, StoreError};
use crate::audit::{changes, rfc3339, AuditCtx, Draft};
use crate::config::PostgresConfig;
use crate::model::{
    ContentApiType, Networks, Ownership, Permission, RateOverride, TokenKind, TokenRecord,
};

/// The embedded migrations of the native layout, in order.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../migrations/authgate/0001_init.sql"),
    ),
    (
        2,
        "notify",
        include_str!("../../migrations/authgate/0002_notify.sql"),
    ),
    (3, "audit", super::AUDIT_MIGRATION),
    (
        4,
        "key_overlap",
        include_str!("../../migrations/authgate/0004_key_overlap.sql"),
    ),
    (
        5,
        "network_pinning",
        include_str!("../../migrations/authgate/0005_network_pinning.sql"),
    ),
    (6, "audit_anchor", super::AUDIT_ANCHOR_MIGRATION),
    (
        7,
        "bootstrap_once",
        include_str!("../../migrations/authgate/0007_bootstrap_once.sql"),
    ),
];

/// See [`Statements::token_stats`].
const TOKEN_STATS: &str =
    super::token_stats_sql!("FROM (SELECT kind, expires_at AS e FROM tokens) t GROUP BY kind");

pub(super) const STATEMENTS: Statements = Statements {
    issued_hashes: ISSUED_HASHES,
    find_token: FIND_TOKEN,
    key_holder: "SELECT id, access_key = $1 AS current FROM tokens
                 WHERE access_key = $1 OR previous_access_key = $1
                 ORDER BY access_key = $1 DESC, id LIMIT 1",
    touch_tokens: TOUCH_TOKENS,
    record: |row| record_from_row(row).map(Some),
    audit_table: "audit_events",
    token_stats: TOKEN_STATS,
    channel: |schema| format!("authgate_{schema}"),
};

/// Current keys, and replaced keys that may still be in their overlap (a
/// superset: an ended one costs at most a lookup whose record refuses it).
const ISSUED_HASHES: &str = "SELECT access_key FROM tokens
UNION ALL SELECT previous_access_key FROM tokens WHERE previous_access_key IS NOT NULL";

const FIND_TOKEN: &str = "
SELECT t.id, t.kind, t.name, t.type, t.expires_at, t.rate_limit, t.owner_id,
       t.allowed_cidrs::text[] AS allowed_cidrs,
       ARRAY(SELECT p.action FROM token_permissions p WHERE p.token_id = t.id ORDER BY p.id) AS perm_actions,
       ARRAY(SELECT p.subject FROM token_permissions p WHERE p.token_id = t.id ORDER BY p.id) AS perm_subjects,
       u.id AS user_id, u.email, u.is_active, u.blocked,
       EXISTS (SELECT 1 FROM user_roles ur JOIN roles r ON r.id = ur.role_id
               WHERE ur.user_id = u.id AND r.code = 'super-admin') AS super_admin,
       ARRAY(SELECT ur.role_id FROM user_roles ur WHERE ur.user_id = u.id ORDER BY ur.role_id) AS role_ids,
       ARRAY(SELECT rp.action FROM user_roles ur JOIN role_permissions rp ON rp.role_id = ur.role_id
             WHERE ur.user_id = u.id ORDER BY rp.id) AS role_actions,
       ARRAY(SELECT rp.subject FROM user_roles ur JOIN role_permissions rp ON rp.role_id = ur.role_id
             WHERE ur.user_id = u.id ORDER BY rp.id) AS role_subjects,
       t.old_key_until
-- The token whose current key this is, else the one that kept it as its
-- replaced key, with until when it works. Two index probes in order, the
-- second only on a miss: as cheap as the single one for a current key
-- (an OR of the two columns measured 40% slower), and a current key wins
-- over a replaced one another token left behind.
FROM (SELECT id, kind, name, type, expires_at, rate_limit, owner_id, allowed_cidrs,
             NULL::timestamptz AS old_key_until
      FROM tokens WHERE access_key = $1
      UNION ALL
      SELECT id, kind, name, type, expires_at, rate_limit, owner_id, allowed_cidrs,
             previous_key_expires_at
      FROM tokens WHERE previous_access_key = $1
      LIMIT 1) t
LEFT JOIN users u ON u.id = t.owner_id";

const TOUCH_TOKENS: &str = "
UPDATE tokens SET last_used_at = v.ts
FROM (SELECT unnest($1::bigint[]) AS id, unnest($2::timestamptz[]) AS ts) v
WHERE tokens.id = v.id AND (tokens.last_used_at IS NULL OR tokens.last_used_at < v.ts)";

fn record_from_row(row: &tokio_postgres::Row) -> Result<TokenRecord, StoreError> {
    let kind = rows::kind(row)?;
    let token_type = token_type(row, kind)?;
    let permissions = rows::permission_set(row, "perm_actions", "perm_subjects")?;
    let ownership = match kind {
        TokenKind::ContentApi => Ownership::None,
        TokenKind::Admin => rows::ownership(row)?,
    };
    let rate_limit: Option<i32> = row.col("rate_limit")?;
    let rate_limit = RateOverride::new(rate_limit.and_then(|r| u32::try_from(r).ok()));
    let record = TokenRecord {
        networks: Networks::new(rows::allowed_cidrs(row)?),
        ..rows::record(row, kind, token_type, permissions, ownership, rate_limit)?
    };
    Ok(match row.col("old_key_until")? {
        Some(until) => record.through_old_key(until),
        None => record,
    })
}

/// A content-API token's stored `type` (an admin token's means nothing).
fn token_type(
    row: &tokio_postgres::Row,
    kind: TokenKind,
) -> Result<Option<ContentApiType>, StoreError> {
    match row.col::<_, Option<String>>("type")? {
        Some(t) if kind == TokenKind::ContentApi => t.parse().map(Some).map_err(corrupt),
        _ => Ok(None),
    }
}

/// The migrations this authgate has that the schema lacks (all of them
/// when it has none).
pub(super) async fn pending(cfg: &PostgresConfig) -> Result<Vec<i32>, StoreError> {
    let client = connect(cfg).await?;
    let exists: bool = client
        .one(
            "SELECT to_regclass(format('%I.schema_migrations', $1::text)) IS NOT NULL",
            &[&cfg.schema],
        )
        .await?
        .col(0)?;
    let done: Vec<i32> = if exists {
        client
            .rows(
                &format!("SELECT version FROM {}.schema_migrations", cfg.schema),
                &[],
            )
            .await?
            .iter()
            .map(|r| r.col(0))
            .collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    Ok(MIGRATIONS
        .iter()
        .map(|m| m.0)
        .filter(|v| !done.contains(v))
        .collect())
}

/// Create or upgrade the schema. Returns the versions applied now.
pub(super) async fn migrate(cfg: &PostgresConfig) -> Result<Vec<i32>, StoreError> {
    let mut client = connect(cfg).await?;
    let tx = client.transaction().await?;
    // The migrations name their tables unqualified; no statement timeout
    // (a migration may take long).
    tx.batch_execute(&format!("SET LOCAL search_path TO \"{}\"", cfg.schema))
        .await?;
    // Serialise concurrent migrations of the same schema.
    super::migration_lock(&tx, &format!("authgate:{}", cfg.schema)).await?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {s};
         CREATE TABLE IF NOT EXISTS {s}.schema_migrations (
             version integer PRIMARY KEY,
             name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );",
        s = cfg.schema
    ))
    .await?;
    let rows = tx
        .rows("SELECT version FROM schema_migrations", &[])
        .await?;
    let done = super::applied_versions(&rows, MIGRATIONS, |v, newest| {
        format!(
            "schema `{}` is at version {v}, newer than this authgate knows ({newest}): upgrade authgate",
            cfg.schema
        )
    })?;
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if done.contains(version) {
            continue;
        }
        tx.batch_execute(sql).await?;
        tx.exec(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await?;
        applied.push(*version);
    }
    tx.commit().await?;
    Ok(applied)
}

// ----- management reads ------------------------------------------------------

/// Tokens as listed, with their owner's email; `WHERE` follows.
const TOKENS: &str = "
    SELECT t.id, t.kind, t.name, t.description, t.type, t.lifespan, t.expires_at, t.last_used_at,
    t.owner_id, u.email AS owner_email, t.encrypted_key, t.rate_limit, t.created_at, t.updated_at,
    CASE WHEN t.previous_key_expires_at > now() THEN t.previous_key_expires_at END AS old_key_expires_at,
    t.allowed_cidrs::text[] AS allowed_cidrs,
    ARRAY(SELECT p.action FROM token_permissions p WHERE p.token_id = t.id ORDER BY p.action, p.subject) AS perm_actions,
    ARRAY(SELECT p.subject FROM token_permissions p WHERE p.token_id = t.id ORDER BY p.action, p.subject) AS perm_subjects
    FROM tokens t LEFT JOIN users u ON u.id = t.owner_id";

fn token_row(row: &tokio_postgres::Row) -> Result<TokenRow, StoreError> {
    let kind = rows::kind(row)?;
    let permissions = rows::permission_list(row, "perm_actions", "perm_subjects")?;
    Ok(TokenRow {
        rate_limit: row.col("rate_limit")?,
        old_key_expires_at: row.col("old_key_expires_at")?,
        allowed_cidrs: rows::allowed_cidrs(row)?,
        ..rows::token_row(row, kind, token_type(row, kind)?, permissions)?
    })
}

/// Tokens, of one kind or all, lowest id first.
pub(super) async fn tokens(
    c: &impl Db,
    kind: Option<TokenKind>,
) -> Result<Vec<TokenRow>, StoreError> {
    let kind = kind.map(TokenKind::as_str);
    let rows = c
        .rows(
            &format!("{TOKENS} WHERE $1::text IS NULL OR t.kind = $1 ORDER BY t.id"),
            &[&kind],
        )
        .await?;
    rows.iter().map(token_row).collect()
}

/// The token with this id.
pub(super) async fn token(c: &impl Db, id: i64) -> Result<Option<TokenRow>, StoreError> {
    let row = c.opt(&format!("{TOKENS} WHERE t.id = $1"), &[&id]).await?;
    row.as_ref().map(token_row).transpose()
}

/// Users with their roles and permissions (for [`rows::users`]).
pub(super) const USERS: &str = "
    SELECT u.id, u.email, u.name, u.is_active, u.blocked,
           ARRAY(SELECT r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id
                 WHERE ur.user_id = u.id ORDER BY r.name) AS roles,
           EXISTS (SELECT 1 FROM user_roles ur JOIN roles r ON r.id = ur.role_id
                   WHERE ur.user_id = u.id AND r.code = 'super-admin') AS super_admin,
           ARRAY(SELECT rp.action FROM user_roles ur JOIN role_permissions rp ON rp.role_id = ur.role_id
                 WHERE ur.user_id = u.id ORDER BY rp.id) AS actions,
           ARRAY(SELECT rp.subject FROM user_roles ur JOIN role_permissions rp ON rp.role_id = ur.role_id
                 WHERE ur.user_id = u.id ORDER BY rp.id) AS subjects
    FROM users u";

async fn user(c: &impl Db, which: Users<'_>) -> Result<Option<UserRow>, StoreError> {
    Ok(rows::users(c, USERS, which).await?.into_iter().next())
}

/// Every role, lowest id first.
pub(super) async fn roles(c: &impl Db) -> Result<Vec<RoleRow>, StoreError> {
    let rows = c
        .rows(
            "SELECT r.id, r.name, coalesce(r.code = 'super-admin', false) AS super_admin,
                    ARRAY(SELECT rp.action FROM role_permissions rp WHERE rp.role_id = r.id ORDER BY rp.action, rp.subject) AS actions,
                    ARRAY(SELECT rp.subject FROM role_permissions rp WHERE rp.role_id = r.id ORDER BY rp.action, rp.subject) AS subjects
             FROM roles r ORDER BY r.id",
            &[],
        )
        .await?;
    rows.iter().map(rows::role_row).collect()
}

// ----- management writes -----------------------------------------------------

/// Turn unique-violation errors into a readable message.
fn conflict(e: tokio_postgres::Error, what: impl FnOnce() -> String) -> StoreError {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        StoreError::Invalid(what())
    } else {
        StoreError::Db(e)
    }
}

async fn role_permissions(c: &impl Db, id: i64) -> Result<Value, StoreError> {
    let rows = c
        .rows(
            "SELECT action, subject FROM role_permissions WHERE role_id = $1",
            &[&id],
        )
        .await?;
    let perms = rows
        .iter()
        .map(|r| Ok(Permission::new(r.col::<_, String>(0)?, r.col(1)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(perms_json(&perms))
}

async fn insert_permissions<C: Db>(
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
    c.exec(
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

// ----- users ---------------------------------------------------------

pub(super) async fn create_user(
    store: &Store,
    email: &str,
    name: &str,
    roles: &[String],
    audit: &AuditCtx,
) -> Result<UserRow, StoreError> {
    store
        .audited(audit, |tx, _| {
            Box::pin(async move {
                let id: i64 = tx
                    .one(
                        "INSERT INTO users (email, name) VALUES ($1, $2) RETURNING id",
                        &[&email, &name],
                    )
                    .await
                    .map_err(|e| {
                        conflict(e, || format!("a user with email {email} already exists"))
                    })?
                    .col(0)?;
                for role in roles {
                    add_role(tx, id, role).await?;
                }
                let user = user(tx, Users::Id(id))
                    .await?
                    .ok_or_else(|| corrupt("a user vanished during its creation"))?;
                let c = diff(user_fields(None), user_fields(Some(&user)));
                let draft = user_draft(&user, "create", c);
                Ok(Outcome::Commit(user, Some(draft)))
            })
        })
        .await
}

/// Give the new user `id` the role `role`, which must exist.
async fn add_role(tx: &impl Db, id: i64, role: &str) -> Result<(), StoreError> {
    let n = tx
        .exec(
            "INSERT INTO user_roles (user_id, role_id) SELECT $1, id FROM roles WHERE name = $2
             ON CONFLICT DO NOTHING",
            &[&id, &role],
        )
        .await?;
    if n == 0
        && !tx
            .rows("SELECT 1 FROM roles WHERE name = $1", &[&role])
            .await?
            .iter()
            .any(|_| true)
    {
        return Err(StoreError::Invalid(format!(
            "no role named `{role}` (see `authgate role list`)"
        )));
    }
    Ok(())
}

/// Set `is_active` or `blocked`. Returns false when no such user.
pub(super) async fn set_user_flag(
    store: &Store,
    email: &str,
    flag: UserFlag,
    value: bool,
    audit: &AuditCtx,
) -> Result<bool, StoreError> {
    let column = match flag {
        UserFlag::Active => "is_active",
        UserFlag::Blocked => "blocked",
    };
    store
        .audited(audit, |tx, _| {
            Box::pin(async move {
                let Some(before) = user(tx, Users::Email(email)).await? else {
                    return Ok(Outcome::Rollback(false));
                };
                tx.exec(
                    &format!("UPDATE users SET {column} = $2, updated_at = now() WHERE id = $1"),
                    &[&before.id, &value],
                )
                .await?;
                Ok(Outcome::Commit(true, user_updated(tx, &before).await?))
            })
        })
        .await
}

/// The `user.update` event of a change to `before`'s row or roles, when
/// an audited field changed.
async fn user_updated(tx: &impl Db, before: &UserRow) -> Result<Option<Draft>, StoreError> {
    let after = user(tx, Users::Id(before.id)).await?;
    let c = diff(user_fields(Some(before)), user_fields(after.as_ref()));
    if !c.as_object().is_some_and(|m| !m.is_empty()) {
        return Ok(None);
    }
    Ok(Some(user_draft(before, "update", c)))
}

/// Delete a user; the database deletes their admin tokens with them.
/// Returns the number of tokens deleted, or `None` when no such user.
pub(super) async fn delete_user(
    store: &Store,
    email: &str,
    audit: &AuditCtx,
) -> Result<Option<i64>, StoreError> {
    store
        .audited(audit, |tx, _| {
            Box::pin(async move {
                if tx
                    .opt(
                        "SELECT id FROM users WHERE lower(email) = lower($1) FOR UPDATE",
                        &[&email],
                    )
                    .await?
                    .is_none()
                {
                    return Ok(Outcome::Rollback(None));
                }
                let Some(user) = user(tx, Users::Email(email)).await? else {
                    return Ok(Outcome::Rollback(None));
                };
                let tokens: Vec<i64> = tx
                    .rows(
                        "SELECT id FROM tokens WHERE owner_id = $1 ORDER BY id",
                        &[&user.id],
                    )
                    .await?
                    .iter()
                    .map(|r| r.col(0))
                    .collect::<Result<_, _>>()?;
                tx.exec("DELETE FROM users WHERE id = $1", &[&user.id])
                    .await?;
                let mut c = diff(user_fields(Some(&user)), user_fields(None));
                if let Some(m) = c.as_object_mut() {
                    // Their admin tokens go with them (ON DELETE CASCADE).
                    m.insert(
                        "tokens".into(),
                        json!({"before": tokens, "after": Value::Array(Vec::new())}),
                    );
                }
                let draft = user_draft(&user, "delete", c);
                Ok(Outcome::Commit(Some(tokens.len() as i64), Some(draft)))
            })
        })
        .await
}

// ----- roles ---------------------------------------------------------

pub(super) async fn create_role(
    store: &Store,
    name: &str,
    audit: &AuditCtx,
) -> Result<RoleRow, StoreError> {
    store
        .audited(audit, |tx, _| {
            Box::pin(async move {
                let id: i64 = tx
                    .one(
                        "INSERT INTO roles (name) VALUES ($1) RETURNING id",
                        &[&name],
                    )
                    .await
                    .map_err(|e| conflict(e, || format!("a role named `{name}` already exists")))?
                    .col(0)?;
                let c = changes(&[("name", Value::Null, json!(name))]);
                let role = RoleRow {
                    id,
                    name: name.to_owned(),
                    super_admin: false,
                    permissions: Vec::new(),
                };
                Ok(Outcome::Commit(
                    role,
                    Some(role_draft(id, name, "create", c)),
                ))
            })
        })
        .await
}

async fn role_id(client: &impl Db, name: &str) -> Result<i64, StoreError> {
    client
        .opt("SELECT id FROM roles WHERE name = $1", &[&name])
        .await?
        .map(|r| r.col(0))
        .transpose()?
        .ok_or_else(|| {
            StoreError::Invalid(format!("no role named `{name}` (see `authgate role list`)"))
        })
}

/// Delete a role; its members lose what it granted (and, through the
/// role-permission trigger, their admin tokens lose what no other role
/// of theirs grants). Returns the number of members, or `None` when no
/// such role. The super-admin role cannot be deleted.
pub(super) async fn delete_role(
    store: &Store,
    name: &str,
    audit: &AuditCtx,
) -> Result<Option<usize>, StoreError> {
    store
        .audited(audit, |tx, _| {
            Box::pin(async move {
                let Some(row) = tx
                    .opt(
                        "SELECT id, coalesce(code = 'super-admin', false) FROM roles WHERE name = $1 FOR UPDATE",
                        &[&name],
                    )
                    .await?
                else {
                    return Ok(Outcome::Rollback(None));
                };
                let (id, super_admin): (i64, bool) = (row.col(0)?, row.col(1)?);
                if super_admin {
                    return Err(StoreError::Invalid(format!(
                        "`{name}` is the super-admin role and cannot be deleted"
                    )));
                }
                let members: Vec<String> = tx
                    .rows(
                        "SELECT u.email FROM user_roles ur JOIN users u ON u.id = ur.user_id
                         WHERE ur.role_id = $1 ORDER BY u.email",
                        &[&id],
                    )
                    .await?
                    .iter()
                    .map(|r| r.col(0))
                    .collect::<Result<_, _>>()?;
                let perms = role_permissions(tx, id).await?;
                // Permissions first, so the trigger trims the members' tokens.
                tx.exec("DELETE FROM role_permissions WHERE role_id = $1", &[&id])
                    .await?;
                tx.exec("DELETE FROM roles WHERE id = $1", &[&id])
                    .await?;
                let c = changes(&[
                    ("name", json!(name), Value::Null),
                    ("permissions", perms, Value::Null),
                    ("users", json!(members), json!([])),
                ]);
                let draft = role_draft(id, name, "delete", c);
                Ok(Outcome::Commit(Some(members.len()), Some(draft)))
            })
        })
        .await
}

/// The `role.update` event of a grant or revoke: the role's
/// permissions before (`before`) and now.
async fn role_updated(
    tx: &impl Db,
    id: i64,
    role: &str,
    before: Value,
) -> Result<Draft, StoreError> {
    let after = role_permissions(tx, id).await?;
    let c = changes(&[("permissions", before, after)]);
    Ok(role_draft(id, role, "update", c))
}

/// Grant a permission to a role. Returns false when it already held it.
pub(super) async fn grant(
    store: &Store,
    role: &str,
    p: &Permission,
    audit: &AuditCtx,
) -> Result<bool, StoreError> {
    store
        .audited(audit, |tx, _| {
            Box::pin(async move {
                let id = role_id(tx, role).await?;
                let before = role_permissions(tx, id).await?;
                let n = tx
                    .exec(
                        "INSERT INTO role_permissions (role_id, action, subject) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                        &[&id, &p.action, &p.subject],
                    )
                    .await?;
                let draft = match n {
                    0 => None,
                    _ => Some(role_updated(tx, id, role, before).await?),
                };
                Ok(Outcome::Commit(n > 0, draft))
            })
        })
        .await
}

/// Revoke a permission from a role; a trigger removes it from the admin
/// tokens of the role's users in the same transaction. Returns the
/// number of token permissions removed, or `None` when the role did not
/// hold it.
pub(super) async fn revoke(
    store: &Store,
    role: &str,
    p: &Permission,
    audit: &AuditCtx,
) -> Result<Option<i64>, StoreError> {
    // Count the affected token permissions before and after, inside the
    // transaction, to report what the trigger removed.
    const AFFECTED: &str = "SELECT count(*) FROM token_permissions tp
        JOIN tokens t ON t.id = tp.token_id
        JOIN user_roles ur ON ur.user_id = t.owner_id AND ur.role_id = $1
        WHERE tp.action = $2 AND tp.subject IS NOT DISTINCT FROM $3";
    store
        .audited(audit, |tx, _| {
            Box::pin(async move {
                let id = role_id(tx, role).await?;
                let before_perms = role_permissions(tx, id).await?;
                let params: [&dyn crate::store::sql::Param; 3] =
                    [&id, &p.action, &p.subject];
                let before: i64 = tx.one(AFFECTED, &params).await?.col(0)?;
                let n = tx
                    .exec(
                        "DELETE FROM role_permissions WHERE role_id = $1 AND action = $2 AND subject IS NOT DISTINCT FROM $3",
                        &params,
                    )
                    .await?;
                let after: i64 = tx.one(AFFECTED, &params).await?.col(0)?;
                let draft = match n {
                    0 => None,
                    _ => Some(role_updated(tx, id, role, before_perms).await?),
                };
                Ok(Outcome::Commit((n > 0).then_some(before - after), draft))
            })
        })
        .await
}

/// Add a user to a role, or remove them from it.
pub(super) async fn set_user_role(
    store: &Store,
    email: &str,
    role: &str,
    member: bool,
    audit: &AuditCtx,
) -> Result<bool, StoreError> {
    let sql = if member {
        "INSERT INTO user_roles (user_id, role_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
    } else {
        "DELETE FROM user_roles WHERE user_id = $1 AND role_id = $2"
    };
    store
        .audited(audit, |tx, _| {
            Box::pin(async move {
                let role_id = role_id(tx, role).await?;
                let before = user(tx, Users::Email(email))
                    .await?
                    .ok_or_else(|| StoreError::Invalid(format!("no user with email {email}")))?;
                let n = tx.exec(sql, &[&before.id, &role_id]).await?;
                let draft = match n {
                    0 => None,
                    _ => user_updated(tx, &before).await?,
                };
                Ok(Outcome::Commit(n > 0, draft))
            })
        })
        .await
}

// ----- tokens --------------------------------------------------------

/// Why a token cannot be inserted: its name, or (imported) its key, is taken.
fn insert_conflict(e: tokio_postgres::Error, t: &NewToken) -> StoreError {
    let constraint = e.as_db_error().and_then(|d| d.constraint());
    if constraint == Some("tokens_access_key_key") {
        return conflict(e, || "the key is already in use by another token".into());
    }
    conflict(e, || {
        format!("a {} token named `{}` already exists", t.kind, t.name)
    })
}

/// An imported key must be no token's key, current or replaced.
async fn check_key_unused(c: &impl Db, access_key: &str) -> Result<(), StoreError> {
    match super::key_holder(c, super::Layout::Authgate, access_key).await? {
        None => Ok(()),
        Some(h) => Err(StoreError::Invalid(format!(
            "the key is already in use by token {}{}",
            h.id,
            if h.current {
                ""
            } else {
                " (the key a regenerate replaced)"
            }
        ))),
    }
}

pub(super) async fn create_token(
    store: &Store,
    t: &NewToken,
    audit: &AuditCtx,
) -> Result<TokenRow, StoreError> {
    let kind = t.kind.as_str();
    let ty = t.token_type.map(ContentApiType::as_str);
    let cidrs = rows::cidr_texts(&t.allowed_cidrs);
    store
        .audited(audit, |tx, _| {
            Box::pin(async move {
                if t.imported {
                    check_key_unused(tx, &t.access_key).await?;
                }
                let id: i64 = tx
                    .one(
                        "INSERT INTO tokens (kind, name, description, type, access_key, encrypted_key, lifespan, expires_at, owner_id, allowed_cidrs)
                         VALUES ($1, $2, $3, $4, $5, $6, $7::bigint,
                                 CASE WHEN $7::bigint IS NULL THEN NULL ELSE now() + $7::bigint * interval '1 millisecond' END,
                                 $8, $9::text[]::cidr[])
                         RETURNING id",
                        &[&kind, &t.name, &t.description, &ty, &t.access_key, &t.encrypted_key, &t.lifespan_ms, &t.owner_id, &cidrs],
                    )
                    .await
                    .map_err(|e| insert_conflict(e, t))?
                    .col(0)?;
                insert_permissions(tx, "token_permissions", "token_id", id, &t.permissions)
                    .await?;
                let row = token(tx, id)
                    .await?
                    .ok_or_else(|| corrupt("a token vanished during its creation"))?;
                let mut c = diff(token_fields(None), token_fields(Some(&row)));
                if let (true, Some(m)) = (t.imported, c.as_object_mut()) {
                    m.insert("imported".into(), Value::Bool(true));
                }
                let draft = token_draft(&row, "create", c);
                Ok(Outcome::Commit(row, Some(draft)))
            })
        })
        .await
}

/// Replace a token's hash (and encrypted copy) in one update. The replaced
/// key stops working at commit, or, with `keep_old_ms`, that many
/// milliseconds later (it becomes the token's previous key, ending any
/// earlier one). `expires_at` is unchanged, as in Strapi.
pub(super) async fn regenerate_token(
    store: &Store,
    id: i64,
    key: &ReplacementKey<'_>,
    audit: &AuditCtx,
) -> Result<Option<TokenRow>, StoreError> {
    store
        .audited(audit, |tx, _| {
            Box::pin(async move {
                let Some(before) = token(tx, id).await? else {
                    return Ok(Outcome::Rollback(None));
                };
                tx.exec(
                    "UPDATE tokens SET
                         previous_access_key = CASE WHEN $4::bigint IS NULL THEN NULL ELSE access_key END,
                         previous_key_expires_at = CASE WHEN $4::bigint IS NULL THEN NULL
                                                        ELSE now() + $4::bigint * interval '1 millisecond' END,
                         access_key = $2, encrypted_key = $3, updated_at = now()
                     WHERE id = $1",
                    &[&id, &key.access_key, &key.encrypted_key, &key.keep_old_ms],
                )
                .await?;
                let row = token(tx, id).await?;
                let draft = row.as_ref().map(|t| {
                    let c = changes(&[(
                        "old_key_expiry",
                        json!(before.old_key_expires_at.map(rfc3339)),
                        json!(t.old_key_expires_at.map(rfc3339)),
                    )]);
                    token_draft(t, "regenerate", c)
                });
                Ok(Outcome::Commit(row, draft))
            })
        })
        .await
}

/// Edit a token's name, description, type, permissions or networks.
pub(super) async fn update_token(
    store: &Store,
    id: i64,
    u: &TokenUpdate,
    audit: &AuditCtx,
) -> Result<Option<TokenRow>, StoreError> {
    let ty = u.token_type.map(ContentApiType::as_str);
    let cidrs = u.allowed_cidrs.as_deref().map(rows::cidr_texts);
    store
        .audited(audit, |tx, _| {
            Box::pin(async move {
                let Some(before) = token(tx, id).await? else {
                    return Ok(Outcome::Rollback(None));
                };
                tx.exec(
                    "UPDATE tokens SET name = coalesce($2, name), description = coalesce($3, description),
                                       type = coalesce($4, type),
                                       allowed_cidrs = coalesce($5::text[]::cidr[], allowed_cidrs), updated_at = now()
                     WHERE id = $1",
                    &[&id, &u.name, &u.description, &ty, &cidrs],
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
                    tx.exec("DELETE FROM token_permissions WHERE token_id = $1", &[&id])
                        .await?;
                    insert_permissions(tx, "token_permissions", "token_id", id, perms).await?;
                }
                let after = token(tx, id).await?;
                let draft = after.as_ref().map(|a| {
                    let c = diff(token_fields(Some(&before)), token_fields(Some(a)));
                    token_draft(a, "update", c)
                });
                Ok(Outcome::Commit(after, draft))
            })
        })
        .await
}

/// Delete a token. Returns false when there was none.
pub(super) async fn delete_token(
    store: &Store,
    id: i64,
    audit: &AuditCtx,
) -> Result<bool, StoreError> {
    store
        .audited(audit, |tx, _| {
            Box::pin(async move {
                let Some(before) = token(tx, id).await? else {
                    return Ok(Outcome::Rollback(false));
                };
                let n = tx.exec("DELETE FROM tokens WHERE id = $1", &[&id]).await?;
                let draft = (n > 0).then(|| {
                    let c = diff(token_fields(Some(&before)), token_fields(None));
                    token_draft(&before, "delete", c)
                });
                Ok(Outcome::Commit(n > 0, draft))
            })
        })
        .await
}

// ----- the bootstrap file's keys ------------------------------------------------

/// Whether a bootstrap key with this fingerprint was provisioned before.
pub(super) async fn bootstrap_consumed(c: &impl Db, fingerprint: &str) -> Result<bool, StoreError> {
    c.one(
        "SELECT EXISTS (SELECT 1 FROM bootstrap_keys WHERE fingerprint = $1)",
        &[&fingerprint],
    )
    .await?
    .col(0)
}

/// Record a provisioned bootstrap key's fingerprint (once).
pub(super) async fn consume_bootstrap(
    c: &impl Db,
    fingerprint: &str,
    token_id: i64,
) -> Result<(), StoreError> {
    c.exec(
        "INSERT INTO bootstrap_keys (fingerprint, token_id) VALUES ($1, $2)
         ON CONFLICT (fingerprint) DO NOTHING",
        &[&fingerprint, &token_id],
    )
    .await?;
    Ok(())
}
