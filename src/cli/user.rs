//! `user ...`: admin users and their roles (the authgate layout; Strapi's
//! admin panel owns them in the strapi5 layout).

use clap::Subcommand;

use super::print::{print_user_list, user_json};
use super::CliError;
use crate::audit::AuditCtx;
use crate::store::admin::UserFlag;
use crate::store::Store;

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Create an admin user.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "")]
        name: String,
        #[arg(long = "role")]
        roles: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Deactivate a user: their admin tokens get 401 until re-activated.
    Deactivate {
        email: String,
    },
    Activate {
        email: String,
    },
    /// Block a user: their admin tokens get 401 until unblocked.
    Block {
        email: String,
    },
    Unblock {
        email: String,
    },
    /// Delete a user and, with them, their admin tokens.
    Delete {
        email: String,
    },
    /// Add a user to a role.
    AddRole {
        email: String,
        role: String,
    },
    /// Remove a user from a role.
    RemoveRole {
        email: String,
        role: String,
    },
    List {
        #[arg(long)]
        json: bool,
    },
}

pub(super) async fn user_command(
    store: &Store,
    ctx: &AuditCtx,
    cmd: UserCmd,
) -> Result<(), CliError> {
    match cmd {
        UserCmd::Create {
            email,
            name,
            roles,
            json,
        } => {
            if !email.contains('@') {
                return Err(CliError::Other(format!(
                    "`{email}` is not an email address"
                )));
            }
            let u = store.create_user(&email, &name, &roles, ctx).await?;
            if json {
                println!("{}", super::display::json_line(&user_json(&u)));
            } else {
                say!(
                    "created user {} ({}), roles: {}",
                    u.email,
                    u.id,
                    if u.roles.is_empty() {
                        "none".into()
                    } else {
                        u.roles.join(", ")
                    }
                );
            }
        }
        UserCmd::Deactivate { email } => {
            set_flag(store, ctx, &email, UserFlag::Active, false).await?;
            say!("deactivated {email}: their admin tokens now get 401 Token owner is deactivated");
        }
        UserCmd::Activate { email } => {
            set_flag(store, ctx, &email, UserFlag::Active, true).await?;
            say!("activated {email}");
        }
        UserCmd::Block { email } => {
            set_flag(store, ctx, &email, UserFlag::Blocked, true).await?;
            say!("blocked {email}: their admin tokens now get 401 Token owner is deactivated");
        }
        UserCmd::Unblock { email } => {
            set_flag(store, ctx, &email, UserFlag::Blocked, false).await?;
            say!("unblocked {email}");
        }
        UserCmd::Delete { email } => {
            let tokens = store
                .delete_user(&email, ctx)
                .await?
                .ok_or_else(|| missing(&email))?;
            say!("deleted {email} and their {tokens} admin token(s)");
        }
        UserCmd::AddRole { email, role } => {
            let changed = store.set_user_role(&email, &role, true, ctx).await?;
            say!(
                "{email} {} role {role}",
                if changed { "now has" } else { "already had" }
            );
        }
        UserCmd::RemoveRole { email, role } => {
            let changed = store.set_user_role(&email, &role, false, ctx).await?;
            say!(
                "{email} {} role {role}",
                if changed {
                    "no longer has"
                } else {
                    "did not have"
                }
            );
        }
        UserCmd::List { json } => print_user_list(&store.list_users().await?, json),
    }
    Ok(())
}

/// Set `is_active` or `blocked` of the user `email`.
async fn set_flag(
    store: &Store,
    ctx: &AuditCtx,
    email: &str,
    flag: UserFlag,
    value: bool,
) -> Result<(), CliError> {
    if store.set_user_flag(email, flag, value, ctx).await? {
        Ok(())
    } else {
        Err(missing(email))
    }
}

fn missing(email: &str) -> CliError {
    CliError::Other(format!("no user with email {email}"))
}
