//! `role ...`: roles and the permissions they grant.

use clap::Subcommand;
use serde_json::json;

use super::CliError;
use crate::audit::AuditCtx;
use crate::model::Permission;
use crate::store::Store;

#[derive(Subcommand, Debug)]
pub enum RoleCmd {
    Create {
        name: String,
    },
    /// Delete a role: its members lose what it granted, and their admin
    /// tokens what no other role of theirs grants.
    Delete {
        name: String,
    },
    /// Grant ACTION[@SUBJECT] to a role.
    Grant {
        role: String,
        #[arg(value_parser = Permission::parse)]
        permission: Permission,
    },
    /// Revoke ACTION[@SUBJECT]; also removes it from the admin tokens of the
    /// role's users (unless they hold it through another role).
    Revoke {
        role: String,
        #[arg(value_parser = Permission::parse)]
        permission: Permission,
    },
    List {
        #[arg(long)]
        json: bool,
    },
}

pub(super) async fn role_command(
    store: &Store,
    ctx: &AuditCtx,
    cmd: RoleCmd,
) -> Result<(), CliError> {
    match cmd {
        RoleCmd::Create { name } => {
            let r = store.create_role(&name, ctx).await?;
            say!("created role {} ({})", r.name, r.id);
        }
        RoleCmd::Delete { name } => match store.delete_role(&name, ctx).await? {
            Some(n) => say!("deleted role {name}; its {n} member(s) lost what it granted"),
            None => return Err(CliError::Other(format!("no role named `{name}`"))),
        },
        RoleCmd::Grant { role, permission } => {
            let added = store.grant(&role, &permission, ctx).await?;
            say!(
                "role {role} {} {permission}",
                if added { "now holds" } else { "already held" }
            );
        }
        RoleCmd::Revoke { role, permission } => {
            match store.revoke(&role, &permission, ctx).await? {
                Some(n) => say!(
                    "revoked {permission} from role {role}; removed it from {n} admin token(s)"
                ),
                None => {
                    return Err(CliError::Other(format!(
                        "role {role} does not hold {permission}"
                    )))
                }
            }
        }
        RoleCmd::List { json } => {
            for r in store.list_roles().await? {
                let perms: Vec<String> = r.permissions.iter().map(|p| p.to_string()).collect();
                if json {
                    println!(
                        "{}",
                        super::display::json_line(
                            &json!({"id": r.id, "name": r.name, "super_admin": r.super_admin, "permissions": perms})
                        )
                    );
                } else {
                    let p = if r.super_admin {
                        "(every permission)".to_owned()
                    } else {
                        perms.join(", ")
                    };
                    say!("{:<6} {:<24} {}", r.id, r.name, p);
                }
            }
        }
    }
    Ok(())
}
