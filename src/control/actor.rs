//! Who is acting on a token: the host operator, an admin user, or an admin
//! user through one of their admin tokens; what each holds.

use std::fmt;

use crate::model::{Permission, PermissionSet};
use crate::store::admin::UserRow;

/// Who is acting.
#[derive(Debug, Clone)]
pub enum Actor {
    /// The host operator: every right.
    Operator,
    /// An admin user, with the permissions of their roles.
    User(UserRow),
    /// An admin user acting through one of their admin tokens.
    Token(TokenActor),
}

/// An admin user acting through an admin token (management API, web page).
#[derive(Debug, Clone)]
pub struct TokenActor {
    /// The token's owner, as of this request.
    pub user: UserRow,
    pub token_id: i64,
    /// The token's own permissions.
    pub permissions: PermissionSet,
}

impl Actor {
    /// The admin user behind the actor, if any.
    pub fn user(&self) -> Option<&UserRow> {
        match self {
            Actor::Operator => None,
            Actor::User(u) => Some(u),
            Actor::Token(t) => Some(&t.user),
        }
    }

    /// Does the actor hold `p`? A token actor holds what both the token and
    /// its owner hold.
    pub fn holds(&self, p: &Permission) -> bool {
        match self {
            Actor::Operator => true,
            Actor::User(u) => u.holds(p),
            Actor::Token(t) => {
                t.user.holds(p) && t.permissions.grants(&p.action, p.subject.as_deref())
            }
        }
    }
}

impl Actor {
    /// How the audit trail names the actor: the admin user's email, or
    /// `operator` for the host CLI.
    pub fn audit_name(&self) -> String {
        self.user()
            .map_or_else(|| "operator".to_owned(), |u| u.email.clone())
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Operator => f.write_str("the host operator"),
            Actor::User(u) => f.write_str(&u.email),
            Actor::Token(t) => write!(f, "{} (admin token {})", t.user.email, t.token_id),
        }
    }
}
