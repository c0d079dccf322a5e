//! `[routes]`, `[[content_types]]` and the action tables: the spec the
//! route table (`crate::route::RouteTable`) is built from, and the policy
//! for Strapi admin sessions. A file that lists no action tables gets the
//! built-in ones for Strapi 5 ([`DEFAULT_ACTIONS`]).

use serde::Deserialize;

use super::raw::RawAction;
use super::{key_err, ConfigError, RawConfig};
use crate::authz::SessionPolicy;
use crate::route::{ContentTypeSpec, PatternSpec, RouteSpec, RuleSpec};

/// The built-in action tables for Strapi 5, used when the config file does
/// not list its own.
pub const DEFAULT_ACTIONS: &str = include_str!("../defaults/actions.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct DefaultActions {
    content_api_actions: Vec<RawAction>,
    admin_actions: Vec<RawAction>,
}

fn actions(list: &[RawAction]) -> Vec<PatternSpec> {
    list.iter()
        .map(|a| PatternSpec {
            route: a.route.clone(),
            action: a.action.clone(),
            subject: a.subject.clone(),
        })
        .collect()
}

impl RawConfig {
    /// `[routes]`, `[[content_types]]` and the action tables (the file's, or
    /// the built-in ones): the spec the route table is built from.
    pub(super) fn compile_routes(&self) -> Result<(SessionPolicy, RouteSpec), ConfigError> {
        let sessions = match self.routes.sessions.as_str() {
            "pass" => SessionPolicy::Pass,
            "reject" => SessionPolicy::Reject,
            other => {
                return Err(key_err(
                    "routes.sessions",
                    format!("`{other}`: expected \"pass\" or \"reject\""),
                ))
            }
        };
        let mut rules = Vec::new();
        for (i, r) in self.routes.rule.iter().enumerate() {
            let auth_required = match r.auth.as_str() {
                "required" => true,
                "optional" => false,
                other => {
                    return Err(key_err(
                        format!("routes.rule[{i}].auth"),
                        format!("`{other}`: expected \"required\" or \"optional\""),
                    ))
                }
            };
            rules.push(RuleSpec {
                prefix: r.prefix.clone(),
                methods: r.methods.clone(),
                auth_required,
            });
        }
        let mut content_types = Vec::new();
        for (i, ct) in self.content_types.iter().enumerate() {
            let single = match ct.kind.as_str() {
                "collection" => false,
                "single" => true,
                other => {
                    return Err(key_err(
                        format!("content_types[{i}].kind"),
                        format!("`{other}`: expected \"collection\" or \"single\""),
                    ))
                }
            };
            content_types.push(ContentTypeSpec {
                uid: ct.uid.clone(),
                plural: ct.plural.clone(),
                singular: ct.singular.clone(),
                single,
            });
        }
        let defaults: DefaultActions = toml::from_str(DEFAULT_ACTIONS)
            .map_err(|e| key_err("(built-in action tables)", e.message().to_owned()))?;
        let content_api_actions = actions(
            self.content_api_actions
                .as_ref()
                .unwrap_or(&defaults.content_api_actions),
        );
        let admin_actions = actions(
            self.admin_actions
                .as_ref()
                .unwrap_or(&defaults.admin_actions),
        );
        let spec = RouteSpec {
            admin_prefixes: self.routes.admin_prefixes.clone(),
            content_api_prefixes: self.routes.content_api_prefixes.clone(),
            graphql_path: self.routes.graphql_path.clone(),
            rules,
            content_types,
            content_api_actions,
            admin_actions,
        };
        Ok((sessions, spec))
    }
}
