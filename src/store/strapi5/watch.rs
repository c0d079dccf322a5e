//! What the strapi5 layout's change poller reads ([`crate::strapi5_sync`]),
//! so every statement that names Strapi's tables stays in the store.
//!
//! The poller keeps the snapshots, the diff and the events; it asks this
//! module for three things, all on the connection (or the one read-only
//! snapshot transaction) it holds:
//!
//! * [`fingerprints`]: per watched [`Table`], `count(*)`, `max(id)` and
//!   `sum(hashtext(row(<the columns a decision reads>, <version>)::text))`,
//!   plus the same of the stored content types, in one query;
//! * [`reread`]: one table's rows as an id, up to two link ids and a row
//!   digest (and, for the tokens, their keys);
//! * [`stored_content_types`]: the raw value Strapi stores under a key of
//!   `strapi_core_store_settings`.
//!
//! A row's version is its `xmin` (the transaction that last wrote it), so a
//! change undone before the next poll still moves the fingerprint; tokens
//! are versioned by `updated_at` instead, which Strapi sets on every edit,
//! so that `last_used_at`, which authgate itself writes, moves nothing.

use std::collections::HashMap;

use crate::store::sql::Db;

use super::{inspect, Triggers};
use crate::store::StoreError;
use crate::token::TokenHash;

/// A table of Strapi's that a decision reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// `strapi_api_tokens`.
    Tokens,
    /// `strapi_api_token_permissions`: custom content-API actions.
    TokenPermissions,
    /// `strapi_api_token_permissions_token_lnk`: content-API permission → token.
    TokenPermissionLinks,
    /// `strapi_api_tokens_admin_user_owner_lnk`: admin token → owner.
    TokenOwnerLinks,
    /// `admin_users`.
    Users,
    /// `admin_users_roles_lnk`: user → role.
    UserRoleLinks,
    /// `admin_roles`.
    Roles,
    /// `admin_permissions`: admin actions and subjects (roles' and tokens').
    AdminPermissions,
    /// `admin_permissions_role_lnk`: admin permission → role.
    RolePermissionLinks,
    /// `admin_permissions_api_token_lnk`: admin permission → admin token.
    TokenAdminPermissionLinks,
}

/// What the id in a link column is the id of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    Token,
    ContentPermission,
    User,
    Role,
    AdminPermission,
}

/// The SQL side of a [`Table`].
struct Watched {
    table: &'static str,
    /// Link columns (ids of other rows), kept in the snapshot, and what
    /// they hold.
    links: &'static [(&'static str, RowKind)],
    /// The other columns a decision reads, and the row's version, digested.
    columns: &'static str,
}

/// In the order of [`Table::ALL`].
const WATCHED: [Watched; 10] = [
    Watched {
        table: "strapi_api_tokens",
        links: &[],
        columns: "access_key, kind, type, name, expires_at, updated_at",
    },
    Watched {
        table: "strapi_api_token_permissions",
        links: &[],
        columns: "action, xmin",
    },
    Watched {
        table: "strapi_api_token_permissions_token_lnk",
        links: &[
            ("api_token_permission_id", RowKind::ContentPermission),
            ("api_token_id", RowKind::Token),
        ],
        columns: "xmin",
    },
    Watched {
        table: "strapi_api_tokens_admin_user_owner_lnk",
        links: &[("api_token_id", RowKind::Token), ("user_id", RowKind::User)],
        columns: "xmin",
    },
    Watched {
        table: "admin_users",
        links: &[],
        columns: "is_active, blocked, email, xmin",
    },
    Watched {
        table: "admin_users_roles_lnk",
        links: &[("user_id", RowKind::User), ("role_id", RowKind::Role)],
        columns: "xmin",
    },
    Watched {
        table: "admin_roles",
        links: &[],
        columns: "code, xmin",
    },
    Watched {
        table: "admin_permissions",
        links: &[],
        columns: "action, subject, xmin",
    },
    Watched {
        table: "admin_permissions_role_lnk",
        links: &[
            ("permission_id", RowKind::AdminPermission),
            ("role_id", RowKind::Role),
        ],
        columns: "xmin",
    },
    Watched {
        table: "admin_permissions_api_token_lnk",
        links: &[
            ("permission_id", RowKind::AdminPermission),
            ("api_token_id", RowKind::Token),
        ],
        columns: "xmin",
    },
];

impl Table {
    /// Every watched table; a table's place here is its [`Table::index`].
    pub const ALL: [Table; 10] = [
        Table::Tokens,
        Table::TokenPermissions,
        Table::TokenPermissionLinks,
        Table::TokenOwnerLinks,
        Table::Users,
        Table::UserRoleLinks,
        Table::Roles,
        Table::AdminPermissions,
        Table::RolePermissionLinks,
        Table::TokenAdminPermissionLinks,
    ];

    /// Where the table's snapshot and fingerprint are kept by the poller.
    pub fn index(self) -> usize {
        self as usize
    }

    fn watched(self) -> &'static Watched {
        &WATCHED[self.index()]
    }

    /// Which of [`RowState::links`] holds the ids of `kind` (`None`: the
    /// table links no such row).
    pub fn link(self, kind: RowKind) -> Option<usize> {
        self.watched().links.iter().position(|(_, k)| *k == kind)
    }

    /// The table's name in Strapi's schema (for messages and tests).
    pub fn name(self) -> &'static str {
        self.watched().table
    }
}

/// The row expression whose hash is a row's digest.
fn row_expr(w: &Watched) -> String {
    let mut cols = vec!["id".to_owned()];
    cols.extend(w.links.iter().map(|(l, _)| (*l).to_owned()));
    if !w.columns.is_empty() {
        cols.push(w.columns.to_owned());
    }
    format!("row({})::text", cols.join(", "))
}

/// The fingerprint of the content types Strapi stores under `$1` (one row,
/// in every mode).
const CONTENT_TYPES_FINGERPRINT: &str = "SELECT count(*)::bigint, coalesce(max(id), 0)::bigint, coalesce(sum(hashtext(coalesce(value, ''))), 0)::bigint FROM strapi_core_store_settings WHERE key = $1";

/// One query: the fingerprint of the tables `which`, then the content
/// types'.
fn fingerprint_query(which: &[Table]) -> String {
    let mut parts: Vec<String> = which
        .iter()
        .map(|t| {
            let w = t.watched();
            format!(
                "SELECT count(*)::bigint, coalesce(max(id), 0)::bigint, coalesce(sum(hashtext({})), 0)::bigint FROM {}",
                row_expr(w),
                w.table
            )
        })
        .collect();
    parts.push(CONTENT_TYPES_FINGERPRINT.to_owned());
    parts
        .into_iter()
        .map(|p| format!("({p})"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

/// count, max id, checksum.
pub type Fingerprint = (i64, i64, i64);

/// What [`fingerprints`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprints {
    /// One per table asked for, in that order.
    pub tables: Vec<Fingerprint>,
    /// The stored content types'.
    pub content_types: Fingerprint,
}

fn fingerprint_of(row: &tokio_postgres::Row) -> Result<Fingerprint, StoreError> {
    Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
}

/// The fingerprints of the tables `which` and of the content types Strapi
/// stores under `content_types_key`, in one query.
pub async fn fingerprints(
    client: &impl Db,
    which: &[Table],
    content_types_key: &str,
) -> Result<Fingerprints, StoreError> {
    let rows = client
        .rows(&fingerprint_query(which), &[&content_types_key])
        .await?;
    let prints: Vec<Fingerprint> = rows.iter().map(fingerprint_of).collect::<Result<_, _>>()?;
    match prints.split_last() {
        Some((content_types, tables)) if tables.len() == which.len() => Ok(Fingerprints {
            tables: tables.to_vec(),
            content_types: *content_types,
        }),
        _ => Err(StoreError::Invalid(
            "fingerprint query: wrong row count".into(),
        )),
    }
}

/// A row of a snapshot: its link ids and its digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowState {
    /// The table's link columns ([`Table::link`]), `None` past them.
    pub links: [Option<i64>; 2],
    pub digest: i32,
}

/// A table's rows by id.
pub type Snapshot = HashMap<i64, RowState>;

/// What [`reread`] found.
#[derive(Debug, Default)]
pub struct Reread {
    pub rows: Snapshot,
    /// The tokens' keys, by token id (the tokens table only).
    pub keys: HashMap<i64, TokenHash>,
}

/// Read one table into a snapshot (and, for the tokens, their keys).
pub async fn reread(client: &impl Db, table: Table) -> Result<Reread, StoreError> {
    let w = table.watched();
    let mut cols = vec!["id::bigint".to_owned()];
    for i in 0..2 {
        cols.push(match w.links.get(i) {
            Some((l, _)) => format!("{l}::bigint"),
            None => "NULL::bigint".to_owned(),
        });
    }
    cols.push(format!("hashtext({})", row_expr(w)));
    cols.push(if table == Table::Tokens {
        "access_key".to_owned()
    } else {
        "NULL::text".to_owned()
    });
    let sql = format!("SELECT {} FROM {}", cols.join(", "), w.table);
    let rows = client.rows(&sql, &[]).await?;
    let mut out = Reread {
        rows: Snapshot::with_capacity(rows.len()),
        keys: HashMap::new(),
    };
    for row in &rows {
        let id: i64 = row.try_get(0)?;
        out.rows.insert(
            id,
            RowState {
                links: [row.try_get(1)?, row.try_get(2)?],
                digest: row.try_get(3)?,
            },
        );
        let key: Option<&str> = row.try_get(4)?;
        if let Some(h) = key.and_then(TokenHash::from_hex) {
            out.keys.insert(id, h);
        }
    }
    Ok(out)
}

/// The value Strapi stores under `key` in `strapi_core_store_settings`
/// (`None`: no such row, or no value).
pub async fn stored_content_types(
    client: &impl Db,
    key: &str,
) -> Result<Option<String>, StoreError> {
    let row = client
        .opt(
            "SELECT value FROM strapi_core_store_settings WHERE key = $1 ORDER BY id LIMIT 1",
            &[&key],
        )
        .await?;
    match row {
        Some(row) => Ok(row.try_get(0)?),
        None => Ok(None),
    }
}

/// Are authgate's triggers on every watched table of `schema` (then the
/// poller need only watch the tokens)? An error when Strapi's tables are
/// not there at all.
pub async fn triggers_installed(
    client: &tokio_postgres::Client,
    schema: &str,
) -> Result<bool, StoreError> {
    let i = inspect(client, schema).await?;
    if !i.missing_tables.is_empty() {
        return Err(StoreError::Invalid(format!(
            "schema `{schema}` has no table {}",
            i.missing_tables.join(", ")
        )));
    }
    Ok(i.triggers == Triggers::Installed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watched_list_is_the_layouts_tables() {
        let watched: Vec<&str> = Table::ALL.iter().map(|t| t.name()).collect();
        let mut a = watched.clone();
        a.sort_unstable();
        let mut b = super::super::TABLES.to_vec();
        b.sort_unstable();
        assert_eq!(a, b);
        for (i, t) in Table::ALL.iter().enumerate() {
            assert_eq!(t.index(), i, "{t:?}");
        }
        assert_eq!(Table::Tokens.name(), "strapi_api_tokens");
        assert_eq!(
            Table::TokenPermissionLinks.name(),
            "strapi_api_token_permissions_token_lnk"
        );
        assert_eq!(
            Table::RolePermissionLinks.name(),
            "admin_permissions_role_lnk"
        );
        assert_eq!(
            Table::TokenAdminPermissionLinks.name(),
            "admin_permissions_api_token_lnk"
        );
        let q = fingerprint_query(&Table::ALL);
        assert_eq!(q.matches("UNION ALL").count(), Table::ALL.len());
        assert_eq!(
            fingerprint_query(&[Table::Tokens])
                .matches("UNION ALL")
                .count(),
            1
        );
        assert!(
            q.contains("row(id, permission_id, role_id, xmin)::text"),
            "{q}"
        );
    }

    /// The link columns the poller follows, by what they hold.
    #[test]
    fn links_by_kind() {
        let at = |t: Table, k: RowKind| t.link(k).map(|i| t.watched().links[i].0);
        assert_eq!(
            at(Table::TokenPermissionLinks, RowKind::Token),
            Some("api_token_id")
        );
        assert_eq!(
            at(Table::TokenPermissionLinks, RowKind::ContentPermission),
            Some("api_token_permission_id")
        );
        assert_eq!(
            at(Table::TokenOwnerLinks, RowKind::Token),
            Some("api_token_id")
        );
        assert_eq!(at(Table::UserRoleLinks, RowKind::User), Some("user_id"));
        assert_eq!(
            at(Table::RolePermissionLinks, RowKind::Role),
            Some("role_id")
        );
        assert_eq!(
            at(Table::TokenAdminPermissionLinks, RowKind::AdminPermission),
            Some("permission_id")
        );
        assert_eq!(Table::Tokens.link(RowKind::Token), None);
        assert_eq!(Table::UserRoleLinks.link(RowKind::Token), None);
    }
}
