//! The permissions a token can be given, grouped for display (the web
//! page's checkboxes, the API's permission lists).

use super::Manager;
use crate::model::Permission;
use crate::route::ActionSubject;

/// A group of permissions shown together (one content type, one admin area).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionGroup {
    /// e.g. `api::article.article`, `plugin::content-manager`, `admin::api-tokens`.
    pub category: String,
    pub permissions: Vec<Permission>,
}

impl Manager<'_> {
    /// The content-API actions a custom token can hold, grouped by content
    /// type (or plugin controller).
    pub fn content_api_catalog(&self) -> Vec<PermissionGroup> {
        let mut groups: Vec<PermissionGroup> = Vec::new();
        for action in self.routes.content_actions() {
            let category = action.rsplit_once('.').map_or(action, |(c, _)| c);
            push_grouped(&mut groups, category, Permission::new(action, None));
        }
        groups
    }

    /// The permissions an admin token can hold: every action of the admin
    /// action table (one per configured content type where the route takes
    /// its subject from the path), plus `also` (e.g. what the owner holds),
    /// grouped by admin area or plugin.
    pub fn admin_catalog(&self, also: &[Permission]) -> Vec<PermissionGroup> {
        let uids: Vec<&str> = self.routes.content_type_uids().collect();
        let mut all: Vec<Permission> = Vec::new();
        for (action, subject) in self.routes.admin_action_subjects() {
            match subject {
                ActionSubject::None => all.push(Permission::new(action, None)),
                ActionSubject::Fixed(s) => all.push(Permission::new(action, Some(s.to_owned()))),
                ActionSubject::FromPath if uids.is_empty() => {
                    all.push(Permission::new(action, None))
                }
                ActionSubject::FromPath => all.extend(
                    uids.iter()
                        .map(|uid| Permission::new(action, Some((*uid).to_owned()))),
                ),
            }
        }
        all.extend(also.iter().cloned());
        all.sort();
        all.dedup();
        let mut groups: Vec<PermissionGroup> = Vec::new();
        for p in all {
            let category = p
                .action
                .split_once('.')
                .map_or(p.action.as_str(), |(c, _)| c)
                .to_owned();
            push_grouped(&mut groups, &category, p);
        }
        groups
    }
}

fn push_grouped(groups: &mut Vec<PermissionGroup>, category: &str, p: Permission) {
    match groups.iter_mut().find(|g| g.category == category) {
        Some(g) => g.permissions.push(p),
        None => groups.push(PermissionGroup {
            category: category.to_owned(),
            permissions: vec![p],
        }),
    }
}
