//! Small constructors for the table tests here and in `authz`.

use super::{ContentTypeSpec, PatternSpec, RouteSpec, RuleSpec};

/// An action-table row.
pub fn pattern(route: &str, action: &str, subject: Option<&str>) -> PatternSpec {
    PatternSpec {
        route: route.into(),
        action: action.into(),
        subject: subject.map(Into::into),
    }
}

/// A content type: a collection when `plural` is given, else a single type.
pub fn content_type(uid: &str, plural: Option<&str>) -> ContentTypeSpec {
    ContentTypeSpec {
        uid: uid.into(),
        plural: plural.map(Into::into),
        singular: None,
        single: plural.is_none(),
    }
}

/// Strapi's prefixes, GraphQL, and `/api/private` requiring a token;
/// no content types or actions.
pub fn spec() -> RouteSpec {
    RouteSpec {
        admin_prefixes: vec!["/admin".into(), "/content-manager".into(), "/upload".into()],
        content_api_prefixes: vec!["/api".into(), "/graphql".into()],
        graphql_path: Some("/graphql".into()),
        rules: vec![RuleSpec {
            prefix: "/api/private".into(),
            methods: None,
            auth_required: true,
        }],
        ..RouteSpec::default()
    }
}
