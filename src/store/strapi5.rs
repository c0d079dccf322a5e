//! The strapi5 layout: a Strapi 5 database, read in place.
//!
//! Users who run Strapi itself put authgate in front of it without moving
//! any data, so a token made in Strapi's admin panel works here the moment
//! it is saved. This module is the only place that knows Strapi's tables
//! (checked against a real Strapi 5.54 schema): the lookup turns them into
//! the same [`TokenRecord`] the native layout produces, so the decision
//! (`authz`) does not know which layout it runs on.
//!
//! | fact | where Strapi keeps it |
//! | --- | --- |
//! | token | `strapi_api_tokens` (`kind` NULL = content-API, rows older than admin tokens) |
//! | custom content-API actions | `strapi_api_token_permissions.action` via `strapi_api_token_permissions_token_lnk` |
//! | admin token owner | `strapi_api_tokens_admin_user_owner_lnk` → `admin_users(is_active, blocked)` |
//! | admin token permissions | `admin_permissions(action, subject)` via `admin_permissions_api_token_lnk` |
//! | owner's role permissions | `admin_users_roles_lnk` → `admin_permissions_role_lnk` → `admin_permissions` |
//! | super admin | a role with `admin_roles.code = 'strapi-super-admin'` |
//!
//! Readings that are not obvious from the schema:
//! * Strapi writes timestamps as `timestamp without time zone` in UTC, so
//!   every one is read `AT TIME ZONE 'UTC'`, whatever the session's zone.
//! * Admin tokens are stored with `type = 'read-only'`, which means nothing
//!   for them: it is dropped. A content-API token with a type Strapi does
//!   not know (or none) is refused on every route by Strapi, so it is read
//!   as a custom token without actions.
//! * A `kind` other than `content-api`, `admin` or NULL is accepted by none
//!   of Strapi's token strategies: such a row is read as no token at all.
//! * `admin_permissions.properties` (fields, locales) and `conditions` are
//!   not read: authgate decides on action and subject, and Strapi enforces
//!   the rest on the data (see `docs/strapi5.md`).
//! * Nothing in the schema stops two tokens from sharing an `access_key` or
//!   a token from having two owner links; the lowest id wins in both cases.
//! * NULL `is_active` is "not active" and NULL `blocked` is "not blocked",
//!   as Strapi tests `isActive !== true || blocked === true`.
//!
//! authgate writes nothing here except `last_used_at`. Invalidation: by
//! default `strapi5_sync` polls these tables' fingerprints (read by
//! [`watch`]) and turns each change into the native layout's events;
//! opt-in, [`install`] adds triggers (functions in schema `authgate`) that
//! announce them at commit.

pub mod watch;

use std::collections::BTreeSet;

use crate::store::sql::Db;

use super::rows::{self, Col, RoleRow, TokenRow};
use super::{connect, Statements, StoreError};
use crate::config::PostgresConfig;
use crate::model::{ContentApiType, Ownership, Permission, PermissionSet, TokenKind, TokenRecord};

/// The schema holding authgate's trigger functions and their bookkeeping.
pub const FUNCTIONS_SCHEMA: &str = "authgate";

/// The index Strapi does not create: without it every lookup (Strapi's and
/// authgate's) scans `strapi_api_tokens`.
pub const RECOMMENDED_INDEX: &str =
    "CREATE INDEX CONCURRENTLY strapi_api_tokens_access_key_idx ON strapi_api_tokens (access_key);";

/// Strapi's tables this layout reads.
pub const TABLES: &[&str] = &[
    "strapi_api_tokens",
    "strapi_api_token_permissions",
    "strapi_api_token_permissions_token_lnk",
    "strapi_api_tokens_admin_user_owner_lnk",
    "admin_users",
    "admin_roles",
    "admin_users_roles_lnk",
    "admin_permissions",
    "admin_permissions_role_lnk",
    "admin_permissions_api_token_lnk",
];

/// The triggers [`install`] puts on Strapi's tables, as (table, trigger).
pub const TRIGGERS: &[(&str, &str)] = &[
    ("strapi_api_tokens", "authgate_notify"),
    ("strapi_api_tokens", "authgate_notify_update"),
    ("strapi_api_tokens", "authgate_notify_truncate"),
    ("strapi_api_token_permissions", "authgate_notify_update"),
    ("strapi_api_token_permissions", "authgate_notify_truncate"),
    ("strapi_api_token_permissions_token_lnk", "authgate_notify"),
    (
        "strapi_api_token_permissions_token_lnk",
        "authgate_notify_truncate",
    ),
    ("strapi_api_tokens_admin_user_owner_lnk", "authgate_notify"),
    (
        "strapi_api_tokens_admin_user_owner_lnk",
        "authgate_notify_truncate",
    ),
    ("admin_users", "authgate_notify"),
    ("admin_users", "authgate_notify_update"),
    ("admin_users", "authgate_notify_truncate"),
    ("admin_users_roles_lnk", "authgate_notify"),
    ("admin_users_roles_lnk", "authgate_notify_truncate"),
    ("admin_roles", "authgate_notify"),
    ("admin_roles", "authgate_notify_update"),
    ("admin_roles", "authgate_notify_truncate"),
    ("admin_permissions", "authgate_notify_update"),
    ("admin_permissions", "authgate_notify_truncate"),
    ("admin_permissions_role_lnk", "authgate_notify"),
    ("admin_permissions_role_lnk", "authgate_notify_truncate"),
    ("admin_permissions_api_token_lnk", "authgate_notify"),
    (
        "admin_permissions_api_token_lnk",
        "authgate_notify_truncate",
    ),
];

/// The trigger migrations, in order; `{strapi}` stands for Strapi's schema.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "notify",
    include_str!("../../migrations/strapi5/0001_notify.sql"),
)];

/// The NOTIFY channel of the triggers on the Strapi tables in `schema`.
pub fn channel(schema: &str) -> String {
    format!("authgate_strapi5_{schema}")
}

/// Postgres truncates identifiers (channel names too) at 63 bytes.
const MAX_CHANNEL: usize = 63;

pub(super) const STATEMENTS: Statements = Statements {
    issued_hashes: ISSUED_HASHES,
    find_token: FIND_TOKEN,
    key_holder: "SELECT id::bigint AS id, true AS current FROM strapi_api_tokens
                 WHERE access_key = $1 ORDER BY id LIMIT 1",
    touch_tokens: TOUCH_TOKENS,
    record: record_from_row,
    audit_table: "authgate.audit_events",
    channel,
    token_stats: TOKEN_STATS,
};

/// See [`Statements::token_stats`]; `kind` NULL is a content-API token.
const TOKEN_STATS: &str = super::token_stats_sql!(
    "FROM (SELECT coalesce(kind, 'content-api') AS kind, expires_at AT TIME ZONE 'UTC' AS e
      FROM strapi_api_tokens) t GROUP BY kind"
);

/// Every management write: Strapi's admin panel owns this data.
pub(super) fn read_only(what: &str) -> StoreError {
    StoreError::ReadOnly(format!(
        "cannot {what} in the strapi5 layout: tokens, users and roles are managed in Strapi's admin panel"
    ))
}

const ISSUED_HASHES: &str = "SELECT access_key FROM strapi_api_tokens WHERE access_key IS NOT NULL";

/// One round trip: the token, its permissions (custom content-API actions
/// and admin permissions), its owner, and the owner's roles and their
/// permissions.
const FIND_TOKEN: &str = "
SELECT t.id::bigint AS id,
       coalesce(t.kind, 'content-api') AS kind,
       coalesce(t.name, '') AS name,
       t.type,
       t.expires_at AT TIME ZONE 'UTC' AS expires_at,
       ARRAY(SELECT p.action
             FROM strapi_api_token_permissions_token_lnk l
             JOIN strapi_api_token_permissions p ON p.id = l.api_token_permission_id
             WHERE l.api_token_id = t.id AND p.action IS NOT NULL
             ORDER BY p.id) AS content_actions,
       ARRAY(SELECT p.action
             FROM admin_permissions_api_token_lnk l
             JOIN admin_permissions p ON p.id = l.permission_id
             WHERE l.api_token_id = t.id AND p.action IS NOT NULL
             ORDER BY p.id, l.id) AS token_actions,
       ARRAY(SELECT p.subject
             FROM admin_permissions_api_token_lnk l
             JOIN admin_permissions p ON p.id = l.permission_id
             WHERE l.api_token_id = t.id AND p.action IS NOT NULL
             ORDER BY p.id, l.id) AS token_subjects,
       u.id::bigint AS user_id,
       coalesce(u.email, '') AS email,
       coalesce(u.is_active, false) AS is_active,
       coalesce(u.blocked, false) AS blocked,
       EXISTS (SELECT 1 FROM admin_users_roles_lnk ur JOIN admin_roles r ON r.id = ur.role_id
               WHERE ur.user_id = u.id AND r.code = 'strapi-super-admin') AS super_admin,
       ARRAY(SELECT DISTINCT ur.role_id::bigint FROM admin_users_roles_lnk ur
             WHERE ur.user_id = u.id AND ur.role_id IS NOT NULL
             ORDER BY 1) AS role_ids,
       ARRAY(SELECT p.action
             FROM admin_users_roles_lnk ur
             JOIN admin_permissions_role_lnk rl ON rl.role_id = ur.role_id
             JOIN admin_permissions p ON p.id = rl.permission_id
             WHERE ur.user_id = u.id AND p.action IS NOT NULL
             ORDER BY p.id, rl.id, ur.id) AS role_actions,
       ARRAY(SELECT p.subject
             FROM admin_users_roles_lnk ur
             JOIN admin_permissions_role_lnk rl ON rl.role_id = ur.role_id
             JOIN admin_permissions p ON p.id = rl.permission_id
             WHERE ur.user_id = u.id AND p.action IS NOT NULL
             ORDER BY p.id, rl.id, ur.id) AS role_subjects
FROM strapi_api_tokens t
LEFT JOIN LATERAL (SELECT o.user_id FROM strapi_api_tokens_admin_user_owner_lnk o
                   WHERE o.api_token_id = t.id AND o.user_id IS NOT NULL
                   ORDER BY o.id LIMIT 1) o ON true
LEFT JOIN admin_users u ON u.id = o.user_id
WHERE t.access_key = $1
ORDER BY t.id
LIMIT 1";

/// `last_used_at` only (the one column authgate writes here), in UTC like
/// Strapi, never backwards.
const TOUCH_TOKENS: &str = "
UPDATE strapi_api_tokens AS t SET last_used_at = v.ts
FROM (SELECT x.id, x.ts AT TIME ZONE 'UTC' AS ts
      FROM unnest($1::bigint[], $2::timestamptz[]) AS x(id, ts)) v
WHERE t.id = v.id AND (t.last_used_at IS NULL OR t.last_used_at < v.ts)";

fn kind_of(kind: &str) -> Option<TokenKind> {
    match kind {
        "content-api" => Some(TokenKind::ContentApi),
        "admin" => Some(TokenKind::Admin),
        _ => None,
    }
}

/// A row of [`FIND_TOKEN`] as a record; `None` for a kind no Strapi token
/// strategy accepts.
fn record_from_row(row: &tokio_postgres::Row) -> Result<Option<TokenRecord>, StoreError> {
    let Some(kind) = kind_of(row.col("kind")?) else {
        return Ok(None);
    };
    let (token_type, permissions, ownership) = match kind {
        TokenKind::ContentApi => {
            let actions: Vec<String> = row.col("content_actions")?;
            match row
                .col::<_, Option<&str>>("type")?
                .map(str::parse::<ContentApiType>)
            {
                Some(Ok(ty)) => (
                    Some(ty),
                    actions
                        .into_iter()
                        .map(|a| Permission::new(a, None))
                        .collect(),
                    Ownership::None,
                ),
                // Strapi refuses such a token on every route: so do we.
                _ => (
                    Some(ContentApiType::Custom),
                    PermissionSet::default(),
                    Ownership::None,
                ),
            }
        }
        TokenKind::Admin => {
            let permissions = rows::permission_set(row, "token_actions", "token_subjects")?;
            (None, permissions, rows::ownership(row)?)
        }
    };
    // Strapi has no per-token limit; rate_limit.per_token applies.
    let rate_limit = crate::model::RateOverride::default();
    rows::record(row, kind, token_type, permissions, ownership, rate_limit).map(Some)
}

// ---------------------------------------------------------------------------
// What is installed: tables, triggers, the access_key index.
// ---------------------------------------------------------------------------

/// Whether authgate's triggers are on Strapi's tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Triggers {
    /// All of them, enabled: every change is announced.
    Installed,
    /// None: changes are seen when cached records expire.
    Missing,
    /// Some are missing or disabled (named `table.trigger`).
    Incomplete(Vec<String>),
}

/// What a Strapi database looks like to authgate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// Tables of [`TABLES`] not found in the schema.
    pub missing_tables: Vec<&'static str>,
    pub triggers: Triggers,
    /// Some valid index leads with `strapi_api_tokens.access_key`.
    pub access_key_indexed: bool,
}

/// Look at the catalog: Strapi's tables, authgate's triggers, the index.
pub async fn inspect(
    client: &tokio_postgres::Client,
    schema: &str,
) -> Result<Inspection, StoreError> {
    let present: BTreeSet<String> = client
        .rows(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND c.relname = ANY($2)",
            &[&schema, &TABLES],
        )
        .await?
        .iter()
        .map(|r| r.col(0))
        .collect::<Result<_, _>>()?;
    let missing_tables: Vec<&'static str> = TABLES
        .iter()
        .copied()
        .filter(|t| !present.contains(*t))
        .collect();
    let installed: BTreeSet<(String, String)> = client
        .rows(
            "SELECT c.relname::text, t.tgname::text
             FROM pg_trigger t
             JOIN pg_class c ON c.oid = t.tgrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND NOT t.tgisinternal AND t.tgenabled <> 'D'
               AND t.tgname LIKE 'authgate\\_%'",
            &[&schema],
        )
        .await?
        .iter()
        .map(|r| Ok((r.col(0)?, r.col(1)?)))
        .collect::<Result<_, StoreError>>()?;
    let absent: Vec<String> = TRIGGERS
        .iter()
        .filter(|(table, trigger)| !installed.contains(&((*table).into(), (*trigger).into())))
        .map(|(table, trigger)| format!("{table}.{trigger}"))
        .collect();
    let triggers = if absent.is_empty() {
        Triggers::Installed
    } else if absent.len() == TRIGGERS.len() {
        Triggers::Missing
    } else {
        Triggers::Incomplete(absent)
    };
    let access_key_indexed: bool = client
        .one(
            "SELECT EXISTS (
                 SELECT 1 FROM pg_index i
                 JOIN pg_class c ON c.oid = i.indrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
                 WHERE n.nspname = $1 AND c.relname = 'strapi_api_tokens'
                   AND a.attname = 'access_key' AND i.indisvalid AND i.indpred IS NULL)",
            &[&schema],
        )
        .await?
        .col(0)?;
    Ok(Inspection {
        missing_tables,
        triggers,
        access_key_indexed,
    })
}

/// What to tell an operator about an inspection: one line per problem.
pub fn warnings(schema: &str, i: &Inspection) -> Vec<String> {
    let mut out = Vec::new();
    if !i.missing_tables.is_empty() {
        out.push(format!(
            "strapi5 layout: schema `{schema}` has no table {}: is this Strapi 5's database, and postgres.schema right?",
            i.missing_tables.join(", ")
        ));
        return out;
    }
    let relies_on_ttl = "a change made in Strapi (a deleted or regenerated token, a deactivated user, a removed permission) is seen by polling Strapi's tables (every postgres.poll_interval, 250ms by default) instead of at once; run `authgate migrate --layout strapi5` to have changes announced by triggers";
    match &i.triggers {
        Triggers::Installed => {}
        Triggers::Missing => out.push(format!(
            "strapi5 layout: authgate's invalidation triggers are not installed on Strapi's tables in schema `{schema}`: {relies_on_ttl}"
        )),
        Triggers::Incomplete(absent) => out.push(format!(
            "strapi5 layout: authgate's invalidation triggers are incomplete in schema `{schema}` (missing or disabled: {}): {relies_on_ttl}",
            absent.join(", ")
        )),
    }
    if !i.access_key_indexed {
        out.push(format!(
            "strapi5 layout: strapi_api_tokens has no index on access_key, so every token lookup (Strapi's and authgate's) scans the table; create one: {RECOMMENDED_INDEX}"
        ));
    }
    out
}

/// Does this database announce every change (all triggers installed)?
/// Logs what is missing: called by the invalidation listener on each
/// (re)connect, so the warning appears at start-up.
pub(super) async fn announces_changes(
    client: &tokio_postgres::Client,
    cfg: &PostgresConfig,
) -> Result<bool, StoreError> {
    let i = inspect(client, &cfg.schema).await?;
    for w in warnings(&cfg.schema, &i) {
        tracing::warn!("{w}");
    }
    Ok(i.missing_tables.is_empty() && i.triggers == Triggers::Installed)
}

// ---------------------------------------------------------------------------
// `authgate migrate --layout strapi5`
// ---------------------------------------------------------------------------

/// Install (or upgrade, or repair) the invalidation triggers on the Strapi
/// tables of `cfg.schema`; the functions go to schema `authgate`, with
/// their own bookkeeping table `authgate.strapi5_migrations`. Strapi's
/// tables gain triggers and nothing else: no row of theirs is written.
/// Returns the versions applied now.
pub async fn install(cfg: &PostgresConfig) -> Result<Vec<i32>, StoreError> {
    let schema = &cfg.schema;
    if channel(schema).len() > MAX_CHANNEL {
        return Err(StoreError::Invalid(format!(
            "postgres.schema `{schema}` is too long for the strapi5 layout's NOTIFY channel `{}` (at most {} characters)",
            channel(schema),
            MAX_CHANNEL - channel("").len()
        )));
    }
    let mut client = connect(cfg).await?;
    let found = inspect(&client, schema).await?;
    if !found.missing_tables.is_empty() {
        return Err(StoreError::Invalid(format!(
            "schema `{schema}` has no table {}: point postgres.schema at Strapi 5's tables",
            found.missing_tables.join(", ")
        )));
    }
    let tx = client.transaction().await?;
    tx.batch_execute(&format!("SET LOCAL search_path TO \"{schema}\""))
        .await?;
    // One lock for every Strapi schema: the functions are shared.
    super::migration_lock(&tx, "authgate:strapi5").await?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {f};
         CREATE TABLE IF NOT EXISTS {f}.strapi5_migrations (
             strapi_schema text NOT NULL,
             version integer NOT NULL,
             name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (strapi_schema, version)
         );",
        f = FUNCTIONS_SCHEMA
    ))
    .await?;
    let rows = tx
        .rows(
            &format!(
                "SELECT version FROM {FUNCTIONS_SCHEMA}.strapi5_migrations WHERE strapi_schema = $1"
            ),
            &[schema],
        )
        .await?;
    let done = super::applied_versions(&rows, MIGRATIONS, |v, newest| {
        format!(
            "the triggers on schema `{schema}` are at version {v}, newer than this authgate knows ({newest}): upgrade authgate"
        )
    })?;
    // Every version is idempotent; re-apply them all when a trigger went
    // missing (dropped by hand, or a table recreated).
    let repair = found.triggers != Triggers::Installed;
    let quoted = format!("\"{schema}\"");
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if done.contains(version) && !repair {
            continue;
        }
        tx.batch_execute(&sql.replace("{strapi}", &quoted)).await?;
        tx.exec(
            &format!(
                "INSERT INTO {FUNCTIONS_SCHEMA}.strapi5_migrations (strapi_schema, version, name)
                 VALUES ($1, $2, $3)
                 ON CONFLICT (strapi_schema, version) DO UPDATE SET applied_at = now()"
            ),
            &[schema, version, name],
        )
        .await?;
        applied.push(*version);
    }
    // The audit trail of what is done through authgate (key views, in this
    // layout) lives beside the functions, shared by every Strapi schema.
    let audit_exists: bool = tx
        .one(
            &format!("SELECT to_regclass('{FUNCTIONS_SCHEMA}.audit_events') IS NOT NULL"),
            &[],
        )
        .await?
        .col(0)?;
    if !audit_exists {
        tx.batch_execute(&format!(
            "SET LOCAL search_path = {FUNCTIONS_SCHEMA}; {}",
            super::AUDIT_MIGRATION
        ))
        .await?;
    }
    tx.batch_execute(&format!(
        "SET LOCAL search_path = {FUNCTIONS_SCHEMA}; {}",
        super::AUDIT_ANCHOR_MIGRATION
    ))
    .await?;
    tx.commit().await?;
    Ok(applied)
}

// ---------------------------------------------------------------------------
// Management reads (the CLI's `token list|show`, `user list`, `role list`,
// `--as`). Writes are refused with `read_only`.
// ---------------------------------------------------------------------------

/// Tokens as listed, with their owner; `WHERE` follows.
const TOKENS: &str = "
    SELECT t.id::bigint AS id, coalesce(t.kind, 'content-api') AS kind, coalesce(t.name, '') AS name,
    coalesce(t.description, '') AS description, t.type, t.lifespan,
    t.expires_at AT TIME ZONE 'UTC' AS expires_at,
    t.last_used_at AT TIME ZONE 'UTC' AS last_used_at,
    o.user_id::bigint AS owner_id, u.email AS owner_email, t.encrypted_key,
    coalesce(t.created_at AT TIME ZONE 'UTC', 'epoch') AS created_at,
    coalesce(t.updated_at AT TIME ZONE 'UTC', t.created_at AT TIME ZONE 'UTC', 'epoch') AS updated_at,
    ARRAY(SELECT p.action FROM strapi_api_token_permissions_token_lnk l
          JOIN strapi_api_token_permissions p ON p.id = l.api_token_permission_id
          WHERE l.api_token_id = t.id AND p.action IS NOT NULL ORDER BY p.id) AS content_actions,
    ARRAY(SELECT p.action FROM admin_permissions_api_token_lnk l
          JOIN admin_permissions p ON p.id = l.permission_id
          WHERE l.api_token_id = t.id AND p.action IS NOT NULL ORDER BY p.id, l.id) AS token_actions,
    ARRAY(SELECT p.subject FROM admin_permissions_api_token_lnk l
          JOIN admin_permissions p ON p.id = l.permission_id
          WHERE l.api_token_id = t.id AND p.action IS NOT NULL ORDER BY p.id, l.id) AS token_subjects
FROM strapi_api_tokens t
LEFT JOIN LATERAL (SELECT o.user_id FROM strapi_api_tokens_admin_user_owner_lnk o
                   WHERE o.api_token_id = t.id AND o.user_id IS NOT NULL
                   ORDER BY o.id LIMIT 1) o ON true
LEFT JOIN admin_users u ON u.id = o.user_id";

fn token_row(row: &tokio_postgres::Row) -> Result<Option<TokenRow>, StoreError> {
    let Some(kind) = kind_of(row.col("kind")?) else {
        return Ok(None);
    };
    let row = match kind {
        TokenKind::ContentApi => {
            let actions: Vec<String> = row.col("content_actions")?;
            let ty = row
                .col::<_, Option<&str>>("type")?
                .and_then(|t| t.parse().ok());
            let actions = actions.into_iter().map(|a| Permission::new(a, None));
            TokenRow {
                owner_id: None,
                owner_email: None,
                ..rows::token_row(row, kind, ty, actions.collect())?
            }
        }
        TokenKind::Admin => {
            let permissions = rows::permission_set(row, "token_actions", "token_subjects")?;
            rows::token_row(row, kind, None, permissions.to_sorted_vec())?
        }
    };
    Ok(Some(row))
}

/// Tokens of a kind Strapi accepts, of one kind or all, lowest id first.
pub(super) async fn tokens(
    c: &impl Db,
    kind: Option<TokenKind>,
) -> Result<Vec<TokenRow>, StoreError> {
    let kind = kind.map(TokenKind::as_str);
    let sql = format!(
        "{TOKENS}
         WHERE coalesce($1::text, coalesce(t.kind, 'content-api')) = coalesce(t.kind, 'content-api')
         ORDER BY t.id"
    );
    let mut out = Vec::new();
    for row in &c.rows(&sql, &[&kind]).await? {
        out.extend(token_row(row)?);
    }
    Ok(out)
}

/// The token with this id, unless its kind is one Strapi refuses.
pub(super) async fn token(c: &impl Db, id: i64) -> Result<Option<TokenRow>, StoreError> {
    let sql = format!("{TOKENS} WHERE t.id = $1::bigint");
    match c.opt(&sql, &[&id]).await? {
        Some(row) => token_row(&row),
        None => Ok(None),
    }
}

/// Users with their roles and permissions (for [`rows::users`]).
pub(super) const USERS: &str = "
    SELECT u.id::bigint AS id, coalesce(u.email, '') AS email,
    trim(concat_ws(' ', u.firstname, u.lastname)) AS name,
    coalesce(u.is_active, false) AS is_active, coalesce(u.blocked, false) AS blocked,
    ARRAY(SELECT coalesce(r.name, r.code, r.id::text) FROM admin_users_roles_lnk ur
          JOIN admin_roles r ON r.id = ur.role_id WHERE ur.user_id = u.id ORDER BY 1) AS roles,
    EXISTS (SELECT 1 FROM admin_users_roles_lnk ur JOIN admin_roles r ON r.id = ur.role_id
            WHERE ur.user_id = u.id AND r.code = 'strapi-super-admin') AS super_admin,
    ARRAY(SELECT p.action FROM admin_users_roles_lnk ur
          JOIN admin_permissions_role_lnk rl ON rl.role_id = ur.role_id
          JOIN admin_permissions p ON p.id = rl.permission_id
          WHERE ur.user_id = u.id AND p.action IS NOT NULL ORDER BY p.id, rl.id, ur.id) AS actions,
    ARRAY(SELECT p.subject FROM admin_users_roles_lnk ur
          JOIN admin_permissions_role_lnk rl ON rl.role_id = ur.role_id
          JOIN admin_permissions p ON p.id = rl.permission_id
          WHERE ur.user_id = u.id AND p.action IS NOT NULL ORDER BY p.id, rl.id, ur.id) AS subjects
FROM admin_users u";

/// Every role, lowest id first.
pub(super) async fn roles(c: &impl Db) -> Result<Vec<RoleRow>, StoreError> {
    let rows = c
        .rows(
            "SELECT r.id::bigint AS id, coalesce(r.name, r.code, r.id::text) AS name,
                    coalesce(r.code = 'strapi-super-admin', false) AS super_admin,
                    ARRAY(SELECT p.action FROM admin_permissions_role_lnk rl
                          JOIN admin_permissions p ON p.id = rl.permission_id
                          WHERE rl.role_id = r.id AND p.action IS NOT NULL ORDER BY p.id, rl.id) AS actions,
                    ARRAY(SELECT p.subject FROM admin_permissions_role_lnk rl
                          JOIN admin_permissions p ON p.id = rl.permission_id
                          WHERE rl.role_id = r.id AND p.action IS NOT NULL ORDER BY p.id, rl.id) AS subjects
             FROM admin_roles r ORDER BY r.id",
            &[],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let role = rows::role_row(row)?;
            let sorted: PermissionSet = role.permissions.into_iter().collect();
            Ok(RoleRow {
                permissions: sorted.to_sorted_vec(),
                ..role
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The trigger list the start-up check expects is the one the SQL creates.
    #[test]
    fn trigger_list_matches_the_migration() {
        let mut created: Vec<(String, String)> = Vec::new();
        for (_, _, sql) in MIGRATIONS {
            for stmt in sql.split(';') {
                let words: Vec<&str> = stmt.split_whitespace().collect();
                if let Some(i) = words.windows(2).position(|w| w == ["CREATE", "TRIGGER"]) {
                    let name = words[i + 2];
                    let on = words
                        .iter()
                        .position(|w| *w == "ON")
                        .expect("CREATE TRIGGER ... ON");
                    let table = words[on + 1]
                        .strip_prefix("{strapi}.")
                        .expect("triggers are on {strapi}.<table>");
                    created.push((table.to_owned(), name.to_owned()));
                }
            }
        }
        let mut expected: Vec<(String, String)> = TRIGGERS
            .iter()
            .map(|(t, n)| ((*t).to_owned(), (*n).to_owned()))
            .collect();
        created.sort();
        expected.sort();
        assert_eq!(created, expected);
        for (table, _) in TRIGGERS {
            assert!(TABLES.contains(table), "{table}");
        }
    }

    #[test]
    fn channel_names() {
        assert_eq!(channel("public"), "authgate_strapi5_public");
        assert!(channel(&"s".repeat(46)).len() <= MAX_CHANNEL);
        assert!(channel(&"s".repeat(47)).len() > MAX_CHANNEL);
    }

    #[test]
    fn warnings_name_the_fix() {
        let ok = Inspection {
            missing_tables: vec![],
            triggers: Triggers::Installed,
            access_key_indexed: true,
        };
        assert!(warnings("public", &ok).is_empty());
        let bare = Inspection {
            triggers: Triggers::Missing,
            access_key_indexed: false,
            ..ok.clone()
        };
        let w = warnings("public", &bare).join("\n");
        assert!(w.contains("authgate migrate --layout strapi5"), "{w}");
        assert!(w.contains("postgres.poll_interval"), "{w}");
        assert!(w.contains(RECOMMENDED_INDEX), "{w}");
        let partial = Inspection {
            triggers: Triggers::Incomplete(vec!["admin_users.authgate_notify".into()]),
            ..ok.clone()
        };
        assert!(warnings("public", &partial)[0].contains("admin_users.authgate_notify"));
        let elsewhere = Inspection {
            missing_tables: vec!["strapi_api_tokens"],
            ..bare
        };
        let w = warnings("cms", &elsewhere);
        assert_eq!(w.len(), 1, "one line: the tables are not there");
        assert!(w[0].contains("postgres.schema"), "{w:?}");
    }
}
