//! Content types Strapi stores, merged with `[[content_types]]`.
//!
//! Strapi 5 keeps the schema of every content type in
//! `strapi_core_store_settings` under [`CORE_STORE_KEY`]: a JSON object by
//! uid, each with `kind` (`collectionType` | `singleType`) and
//! `info.pluralName` / `info.singularName`. It rewrites the row when a
//! developer changes the project's types and restarts. In the strapi5
//! layout authgate reads it at start and whenever it changes
//! (`strapi5_sync`), so `/api/<pluralName>` maps to `api::<x>.<x>.find`
//! without listing the types in the config.
//!
//! Only `api::` uids are the project's content-API types. `plugin::` and
//! `admin::` ones are skipped: the content-API routes plugins do have
//! (`plugin::users-permissions.user` at `/api/users`, upload, i18n) use
//! action names that are not CRUD (`destroy`, `me`, `count`) and are mapped
//! by the built-in `[[content_api_actions]]` table instead.
//!
//! [`parse`], [`merge`] and [`routes`] are pure; `policy::PolicyStore`
//! publishes the result, together with config reloads (`reload`).

use std::collections::BTreeMap;

use crate::route::{ContentTypeSpec, RouteSpec, RouteTable};

/// The `strapi_core_store_settings.key` of the content-type schemas.
pub const CORE_STORE_KEY: &str = "strapi_content_types_schema";

/// Why the stored schema could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("{CORE_STORE_KEY} is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{CORE_STORE_KEY} is not an object (or array) of content types")]
    Shape,
}

/// What the stored schema says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovered {
    /// The project's content types (`api::` uids), sorted by uid.
    pub types: Vec<ContentTypeSpec>,
    /// Entries not used, with the reason (plugin types, odd names).
    pub skipped: Vec<(String, &'static str)>,
}

/// A route segment as Strapi generates them: lower-case kebab.
fn is_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn text<'a>(v: &'a serde_json::Value, path: &[&str]) -> Option<&'a str> {
    let mut v = v;
    for k in path {
        v = v.get(k)?;
    }
    v.as_str()
}

/// Read the value of [`CORE_STORE_KEY`].
pub fn parse(json: &str) -> Result<Discovered, SchemaError> {
    let value: serde_json::Value = serde_json::from_str(json)?;
    let entries: Vec<(Option<&str>, &serde_json::Value)> = match &value {
        serde_json::Value::Object(m) => m.iter().map(|(k, v)| (Some(k.as_str()), v)).collect(),
        serde_json::Value::Array(a) => a.iter().map(|v| (None, v)).collect(),
        _ => return Err(SchemaError::Shape),
    };
    let mut out = Discovered::default();
    let mut seen = BTreeMap::new();
    for (key, entry) in entries {
        let Some(uid) = text(entry, &["uid"]).or(key) else {
            out.skipped.push(("(no uid)".into(), "no uid"));
            continue;
        };
        if !uid.starts_with("api::") {
            out.skipped
                .push((uid.into(), "not a content-API type of the project"));
            continue;
        }
        let single = match text(entry, &["kind"]) {
            Some("collectionType") => false,
            Some("singleType") => true,
            _ => {
                out.skipped
                    .push((uid.into(), "kind is not collectionType or singleType"));
                continue;
            }
        };
        let model_ok = uid
            .strip_prefix("api::")
            .and_then(|r| r.split_once('.'))
            .is_some_and(|(a, m)| !a.is_empty() && !m.is_empty() && !m.contains('.'));
        if !model_ok {
            out.skipped
                .push((uid.into(), "uid is not api::<api>.<model>"));
            continue;
        }
        let plural = text(entry, &["info", "pluralName"]);
        let singular = text(entry, &["info", "singularName"]);
        let route = if single { singular } else { plural };
        if !route.is_some_and(is_segment) || !singular.is_some_and(is_segment) {
            out.skipped.push((
                uid.into(),
                "pluralName or singularName is not a path segment",
            ));
            continue;
        }
        seen.insert(
            uid.to_owned(),
            ContentTypeSpec {
                uid: uid.to_owned(),
                plural: if single {
                    None
                } else {
                    plural.map(str::to_owned)
                },
                singular: singular.map(str::to_owned),
                single,
            },
        );
    }
    out.types = seen.into_values().collect();
    Ok(out)
}

/// The segment a type's routes live under (`/api/<this>`).
fn route_segment(t: &ContentTypeSpec) -> Option<String> {
    if t.single {
        Some(t.singular.clone().unwrap_or_else(|| {
            t.uid
                .rsplit_once('.')
                .map_or(String::new(), |(_, m)| m.to_owned())
        }))
    } else {
        t.plural.clone()
    }
    .map(|s| s.to_ascii_lowercase())
}

/// The config's types first, then the discovered ones the config does not
/// name (by uid) and whose route segment no config type uses: the config
/// wins.
pub fn merge(config: &[ContentTypeSpec], found: &[ContentTypeSpec]) -> Vec<ContentTypeSpec> {
    let mut out = config.to_vec();
    let segments: Vec<Option<String>> = config.iter().map(route_segment).collect();
    for t in found {
        let named = config.iter().any(|c| c.uid == t.uid);
        let taken = segments.contains(&route_segment(t));
        if !named && !taken {
            out.push(t.clone());
        }
    }
    out
}

/// The config's route spec with the discovered types merged in.
pub fn routes(spec: &RouteSpec, found: &[ContentTypeSpec]) -> Result<RouteTable, String> {
    let merged = RouteSpec {
        content_types: merge(&spec.content_types, found),
        ..spec.clone()
    };
    RouteTable::build(&merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORED: &str = r#"{
      "api::article.article": {"uid": "api::article.article", "kind": "collectionType",
         "info": {"singularName": "article", "pluralName": "articles", "displayName": "Article"}},
      "api::homepage.homepage": {"uid": "api::homepage.homepage", "kind": "singleType",
         "info": {"singularName": "homepage", "pluralName": "homepages"}},
      "plugin::users-permissions.user": {"uid": "plugin::users-permissions.user", "kind": "collectionType",
         "info": {"singularName": "user", "pluralName": "users"}},
      "admin::user": {"uid": "admin::user", "kind": "collectionType",
         "info": {"singularName": "user", "pluralName": "users"}},
      "api::odd.odd": {"uid": "api::odd.odd", "kind": "collectionType",
         "info": {"singularName": "odd", "pluralName": "Odd Things"}},
      "api::weird.weird": {"kind": "component", "info": {}}
    }"#;

    fn ct(uid: &str, plural: Option<&str>, single: bool) -> ContentTypeSpec {
        ContentTypeSpec {
            uid: uid.into(),
            plural: plural.map(Into::into),
            singular: uid.rsplit_once('.').map(|(_, m)| m.to_owned()),
            single,
        }
    }

    #[test]
    fn parse_keeps_the_projects_types() {
        let d = parse(STORED).expect("parse");
        assert_eq!(
            d.types,
            vec![
                ct("api::article.article", Some("articles"), false),
                ct("api::homepage.homepage", None, true),
            ]
        );
        let skipped: Vec<&str> = d.skipped.iter().map(|(u, _)| u.as_str()).collect();
        for uid in [
            "plugin::users-permissions.user",
            "admin::user",
            "api::odd.odd",
            "api::weird.weird",
        ] {
            assert!(skipped.contains(&uid), "{uid} skipped: {skipped:?}");
        }
        assert!(parse("[]").expect("array").types.is_empty());
        assert!(matches!(parse("42"), Err(SchemaError::Shape)));
        assert!(matches!(parse("{"), Err(SchemaError::Json(_))));
    }

    #[test]
    fn the_config_wins() {
        let config = vec![ContentTypeSpec {
            uid: "api::article.article".into(),
            plural: Some("posts".into()),
            singular: None,
            single: false,
        }];
        let found = vec![
            ct("api::article.article", Some("articles"), false),
            ct("api::post.post", Some("posts"), false),
            ct("api::page.page", Some("pages"), false),
        ];
        let merged = merge(&config, &found);
        let uids: Vec<&str> = merged.iter().map(|t| t.uid.as_str()).collect();
        assert_eq!(uids, ["api::article.article", "api::page.page"]);
        assert_eq!(merged[0].plural.as_deref(), Some("posts"));
    }

    #[test]
    fn merged_routes_map_the_discovered_types() {
        let spec = RouteSpec {
            content_api_prefixes: vec!["/api".into()],
            ..RouteSpec::default()
        };
        let d = parse(STORED).expect("parse");
        let t = routes(&spec, &d.types).expect("build");
        let get = http::Method::GET;
        assert_eq!(
            t.classify(&get, "/api/articles/1").action.name(),
            Some("api::article.article.findOne")
        );
        assert_eq!(
            t.classify(&get, "/api/homepage").action.name(),
            Some("api::homepage.homepage.find")
        );
        assert_eq!(t.classify(&get, "/api/users").action.name(), None);
    }
}
