//! Management operations on tokens, users and roles.
//!
//! These are plain data operations. Who may perform them is decided by
//! [`crate::control`]; cache invalidation follows from the NOTIFY triggers
//! every write fires. Each operation chooses its layout once, here: the
//! statements are in [`super::native`] and [`super::strapi5`], the rows
//! they return in [`super::rows`]. In the strapi5 layout the reads go to
//! Strapi's tables and every write is refused ([`StoreError::ReadOnly`]):
//! Strapi's admin panel owns that data.

use super::rows::Users;
use super::{native, strapi5, Layout, Store, StoreError};
use crate::audit::AuditCtx;
use crate::model::{Permission, TokenKind};

pub(crate) use super::audit::token_draft;
pub use super::rows::{
    NewToken, ReplacementKey, RoleRow, TokenRow, TokenUpdate, UserFlag, UserRow,
};

impl Store {
    // ----- reads ---------------------------------------------------------

    async fn users(&self, which: Users<'_>) -> Result<Vec<UserRow>, StoreError> {
        let select = match self.layout {
            Layout::Authgate => native::USERS,
            Layout::Strapi5 => strapi5::USERS,
        };
        let mut client = self.client().await?;
        let tx = self.begin(&mut client).await?;
        let users = super::rows::users(&tx, select, which).await?;
        tx.commit().await?;
        Ok(users)
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserRow>, StoreError> {
        Ok(self.users(Users::Email(email)).await?.into_iter().next())
    }

    pub async fn user_by_id(&self, id: i64) -> Result<Option<UserRow>, StoreError> {
        Ok(self.users(Users::Id(id)).await?.into_iter().next())
    }

    /// Every user, lowest id first (one statement).
    pub async fn list_users(&self) -> Result<Vec<UserRow>, StoreError> {
        self.users(Users::All).await
    }

    pub async fn list_roles(&self) -> Result<Vec<RoleRow>, StoreError> {
        let mut client = self.client().await?;
        let tx = self.begin(&mut client).await?;
        let roles = match self.layout {
            Layout::Authgate => native::roles(&tx).await?,
            Layout::Strapi5 => strapi5::roles(&tx).await?,
        };
        tx.commit().await?;
        Ok(roles)
    }

    pub async fn list_tokens(&self, kind: Option<TokenKind>) -> Result<Vec<TokenRow>, StoreError> {
        let mut client = self.client().await?;
        let tx = self.begin(&mut client).await?;
        let tokens = match self.layout {
            Layout::Authgate => native::tokens(&tx, kind).await?,
            Layout::Strapi5 => strapi5::tokens(&tx, kind).await?,
        };
        tx.commit().await?;
        Ok(tokens)
    }

    pub async fn get_token(&self, id: i64) -> Result<Option<TokenRow>, StoreError> {
        let mut client = self.client().await?;
        let tx = self.begin(&mut client).await?;
        let token = match self.layout {
            Layout::Authgate => native::token(&tx, id).await?,
            Layout::Strapi5 => strapi5::token(&tx, id).await?,
        };
        tx.commit().await?;
        Ok(token)
    }

    // ----- the bootstrap file ------------------------------------------------

    /// Whether the bootstrap file's key with this fingerprint provisioned a
    /// token before (see `control::Manager::bootstrap`). Always false in
    /// the strapi5 layout, where the file provisions nothing.
    pub async fn bootstrap_consumed(&self, fingerprint: &str) -> Result<bool, StoreError> {
        if self.layout == Layout::Strapi5 {
            return Ok(false);
        }
        let mut client = self.client().await?;
        let tx = self.begin(&mut client).await?;
        let seen = native::bootstrap_consumed(&tx, fingerprint).await?;
        tx.commit().await?;
        Ok(seen)
    }

    /// Record that the bootstrap key with this fingerprint provisioned
    /// `token_id`, so it is never provisioned again.
    pub async fn consume_bootstrap(
        &self,
        fingerprint: &str,
        token_id: i64,
    ) -> Result<(), StoreError> {
        if self.layout == Layout::Strapi5 {
            return Ok(());
        }
        let mut client = self.client().await?;
        let tx = self.begin(&mut client).await?;
        native::consume_bootstrap(&tx, fingerprint, token_id).await?;
        tx.commit().await?;
        Ok(())
    }

    // ----- users ---------------------------------------------------------

    pub async fn create_user(
        &self,
        email: &str,
        name: &str,
        roles: &[String],
        audit: &AuditCtx,
    ) -> Result<UserRow, StoreError> {
        match self.layout {
            Layout::Authgate => native::create_user(self, email, name, roles, audit).await,
            Layout::Strapi5 => Err(strapi5::read_only("create users")),
        }
    }

    /// Set `is_active` or `blocked`. Returns false when no such user.
    pub async fn set_user_flag(
        &self,
        email: &str,
        flag: UserFlag,
        value: bool,
        audit: &AuditCtx,
    ) -> Result<bool, StoreError> {
        match self.layout {
            Layout::Authgate => native::set_user_flag(self, email, flag, value, audit).await,
            Layout::Strapi5 => Err(strapi5::read_only("change users")),
        }
    }

    /// Delete a user; the database deletes their admin tokens with them.
    /// Returns the number of tokens deleted, or `None` when no such user.
    pub async fn delete_user(
        &self,
        email: &str,
        audit: &AuditCtx,
    ) -> Result<Option<i64>, StoreError> {
        match self.layout {
            Layout::Authgate => native::delete_user(self, email, audit).await,
            Layout::Strapi5 => Err(strapi5::read_only("delete users")),
        }
    }

    /// Add a user to a role, or remove them from it.
    pub async fn set_user_role(
        &self,
        email: &str,
        role: &str,
        member: bool,
        audit: &AuditCtx,
    ) -> Result<bool, StoreError> {
        match self.layout {
            Layout::Authgate => native::set_user_role(self, email, role, member, audit).await,
            Layout::Strapi5 => Err(strapi5::read_only("change users' roles")),
        }
    }

    // ----- roles ---------------------------------------------------------

    pub async fn create_role(&self, name: &str, audit: &AuditCtx) -> Result<RoleRow, StoreError> {
        match self.layout {
            Layout::Authgate => native::create_role(self, name, audit).await,
            Layout::Strapi5 => Err(strapi5::read_only("create roles")),
        }
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
        match self.layout {
            Layout::Authgate => native::delete_role(self, name, audit).await,
            Layout::Strapi5 => Err(strapi5::read_only("delete roles")),
        }
    }

    /// Grant a permission to a role. Returns false when it already held it.
    pub async fn grant(
        &self,
        role: &str,
        p: &Permission,
        audit: &AuditCtx,
    ) -> Result<bool, StoreError> {
        match self.layout {
            Layout::Authgate => native::grant(self, role, p, audit).await,
            Layout::Strapi5 => Err(strapi5::read_only("grant permissions")),
        }
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
        match self.layout {
            Layout::Authgate => native::revoke(self, role, p, audit).await,
            Layout::Strapi5 => Err(strapi5::read_only("revoke permissions")),
        }
    }

    // ----- tokens --------------------------------------------------------

    pub async fn create_token(
        &self,
        t: &NewToken,
        audit: &AuditCtx,
    ) -> Result<TokenRow, StoreError> {
        match self.layout {
            Layout::Authgate => native::create_token(self, t, audit).await,
            Layout::Strapi5 if t.imported => Err(strapi5::read_only("import tokens")),
            Layout::Strapi5 => Err(strapi5::read_only("create tokens")),
        }
    }

    /// Replace a token's hash (and encrypted copy) in one update: the old key
    /// stops working at commit, or when `key.keep_old_ms` have passed.
    /// `expires_at` is unchanged, as in Strapi.
    pub async fn regenerate_token(
        &self,
        id: i64,
        key: &ReplacementKey<'_>,
        audit: &AuditCtx,
    ) -> Result<Option<TokenRow>, StoreError> {
        match self.layout {
            Layout::Authgate => native::regenerate_token(self, id, key, audit).await,
            Layout::Strapi5 => Err(strapi5::read_only("regenerate tokens")),
        }
    }

    /// Edit a token's name, description, type, permissions or networks.
    pub async fn update_token(
        &self,
        id: i64,
        u: &TokenUpdate,
        audit: &AuditCtx,
    ) -> Result<Option<TokenRow>, StoreError> {
        match self.layout {
            Layout::Authgate => native::update_token(self, id, u, audit).await,
            Layout::Strapi5 => Err(strapi5::read_only("edit tokens")),
        }
    }

    /// Delete a token. Returns false when there was none.
    pub async fn delete_token(&self, id: i64, audit: &AuditCtx) -> Result<bool, StoreError> {
        match self.layout {
            Layout::Authgate => native::delete_token(self, id, audit).await,
            Layout::Strapi5 => Err(strapi5::read_only("delete tokens")),
        }
    }
}
