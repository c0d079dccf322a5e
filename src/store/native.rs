//! The authgate layout: authgate's own tables (`migrations/authgate/`).
//!
//! The lookup statements of the native layout; its management statements
//! are in [`super::admin`].

use super::{zip_permissions, StoreError};
use crate::model::{ContentApiType, Ownership, TokenKind, TokenRecord};

pub(super) const ISSUED_HASHES: &str = "SELECT access_key FROM tokens";

pub(super) const FIND_TOKEN: &str = "
SELECT t.id, t.kind, t.name, t.type, t.expires_at, t.rate_limit, t.owner_id,
       ARRAY(SELECT p.action FROM token_permissions p WHERE p.token_id = t.id ORDER BY p.id) AS perm_actions,
       ARRAY(SELECT p.subject FROM token_permissions p WHERE p.token_id = t.id ORDER BY p.id) AS perm_subjects,
       u.id AS user_id, u.email, u.is_active, u.blocked,
       EXISTS (SELECT 1 FROM user_roles ur JOIN roles r ON r.id = ur.role_id
               WHERE ur.user_id = u.id AND r.code = 'super-admin') AS super_admin,
       ARRAY(SELECT ur.role_id FROM user_roles ur WHERE ur.user_id = u.id ORDER BY ur.role_id) AS role_ids,
       ARRAY(SELECT rp.action FROM user_roles ur JOIN role_permissions rp ON rp.role_id = ur.role_id
             WHERE ur.user_id = u.id ORDER BY rp.id) AS role_actions,
       ARRAY(SELECT rp.subject FROM user_roles ur JOIN role_permissions rp ON rp.role_id = ur.role_id
             WHERE ur.user_id = u.id ORDER BY rp.id) AS role_subjects
FROM tokens t
LEFT JOIN users u ON u.id = t.owner_id
WHERE t.access_key = $1";

pub(super) const TOUCH_TOKENS: &str = "
UPDATE tokens SET last_used_at = v.ts
FROM (SELECT unnest($1::bigint[]) AS id, unnest($2::timestamptz[]) AS ts) v
WHERE tokens.id = v.id AND (tokens.last_used_at IS NULL OR tokens.last_used_at < v.ts)";

pub(super) fn record_from_row(row: &tokio_postgres::Row) -> Result<TokenRecord, StoreError> {
    let kind_s: String = row.try_get("kind")?;
    let kind: TokenKind = kind_s.parse().map_err(StoreError::Invalid)?;
    let token_type = match row.try_get::<_, Option<String>>("type")? {
        Some(t) if kind == TokenKind::ContentApi => {
            Some(t.parse::<ContentApiType>().map_err(StoreError::Invalid)?)
        }
        _ => None,
    };
    let permissions = zip_permissions(row.try_get("perm_actions")?, row.try_get("perm_subjects")?);
    let ownership = match kind {
        TokenKind::ContentApi => Ownership::None,
        TokenKind::Admin => super::ownership_from_row(row)?,
    };
    let rate_limit: Option<i32> = row.try_get("rate_limit")?;
    Ok(TokenRecord {
        id: row.try_get("id")?,
        kind,
        name: row.try_get("name")?,
        token_type,
        expires_at: row.try_get("expires_at")?,
        permissions,
        ownership,
        rate_limit: crate::model::RateOverride::new(rate_limit.and_then(|r| u32::try_from(r).ok())),
    })
}
