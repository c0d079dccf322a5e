//! The bootstrap token: `[management] bootstrap_token_file` (a mounted
//! Secret) becomes the admin token of a super admin at start, so a fresh
//! install can be managed without a shell on the host.
//!
//! **A key provisions once.** The Secret stays mounted for the life of the
//! deployment and every rollout restarts authgate, so "provision at start"
//! must not mean "give the file's key super-admin again at every start":
//! an operator who deleted the bootstrap token, or regenerated it, ended
//! that key on purpose. So each key the file provisions is recorded as
//! consumed (`bootstrap_keys`: a fingerprint, an HMAC of its access_key
//! under a label of its own, never the key or the access_key), and a start
//! whose file holds a consumed key that no token has any more provisions
//! nothing and says so in one log line ([`Bootstrapped::Consumed`]). A new
//! key in the file (the Secret rotated) provisions as before.

use zeroize::Zeroizing;

use super::tokens::NewKey;
use super::{management_action, Actor, ControlError, CreateRequest, Manager, Op};
use crate::model::{Permission, TokenKind};
use crate::token;

/// The user that owns the bootstrap token (see [`Manager::bootstrap`]).
pub const BOOTSTRAP_EMAIL: &str = "bootstrap@authgate.local";
/// The name of the bootstrap token.
pub const BOOTSTRAP_TOKEN_NAME: &str = "bootstrap";

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
    /// The file's key provisioned a token before, which was since deleted
    /// or regenerated: nothing is provisioned.
    Consumed,
}

/// The fingerprint recorded for a provisioned bootstrap key: hex
/// HMAC-SHA256 of its access_key (itself salted) under a label of its own,
/// so the table holds nothing a lookup by access_key could use.
fn fingerprint(access_key: &str) -> String {
    use hmac::Mac;
    let mut mac = token::hmac_sha256(b"authgate bootstrap key v1");
    mac.update(access_key.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

impl Manager<'_> {
    /// Provision the bootstrap token from `key` (a mounted Secret): if no
    /// token has this key, make sure the super-admin user
    /// [`BOOTSTRAP_EMAIL`] exists and give it an admin token with this key
    /// holding every token-management permission. Idempotent; a bootstrap
    /// token with an older key gets the new one (the old key stops working).
    /// A key provisioned before whose token is gone or has another key now
    /// is [`Bootstrapped::Consumed`]: never provisioned again.
    pub async fn bootstrap(&self, key: &str) -> Result<Bootstrapped, ControlError> {
        if !token::looks_like_key(key.as_bytes()) {
            return Err(ControlError::Invalid(
                "the bootstrap key must be 256 lower-case hex characters (e.g. `openssl rand -hex 128`)"
                    .into(),
            ));
        }
        // Only as a current key: a key a regenerate replaced (with overlap)
        // is put back, the file being what the operator holds.
        let access_key = self.hasher.hash_hex(key);
        let fingerprint = fingerprint(&access_key);
        let holder = self.store.key_holder(&access_key).await?;
        if let Some(h) = holder.filter(|h| h.current) {
            if let Some(found) = self.store.get_token(h.id).await? {
                if found.kind != TokenKind::Admin {
                    return Err(ControlError::Invalid(format!(
                        "the bootstrap key belongs to content-API token {}",
                        found.id
                    )));
                }
                // Recorded here too: a token provisioned before this record
                // existed is covered from its first start after the upgrade.
                self.store.consume_bootstrap(&fingerprint, found.id).await?;
                return Ok(Bootstrapped::Present(found.id));
            }
        }
        if self.store.bootstrap_consumed(&fingerprint).await? {
            return Ok(Bootstrapped::Consumed);
        }
        if !self.store.capabilities().writes {
            // Another program (Strapi's admin panel) owns users and tokens:
            // nothing to provision, and no retry will change that.
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
            self.store.consume_bootstrap(&fingerprint, t.id).await?;
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
        self.store
            .consume_bootstrap(&fingerprint, created.id)
            .await?;
        Ok(Bootstrapped::Created(created.id))
    }
}
