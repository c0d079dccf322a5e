//! Table tests of the route room: normalisation, segment matching, the
//! action tables, classification, and `judge` on paths people send every
//! day and on paths read differently behind authgate.

use std::borrow::Cow;
use std::sync::Arc;

use http::Method;

use super::*;

#[test]
fn normalise_table() {
    let ok: &[(&str, &str)] = &[
        ("/", "/"),
        ("/api/articles", "/api/articles"),
        ("/api/articles/", "/api/articles/"),
        ("//admin", "/admin"),
        ("/admin//users", "/admin/users"),
        ("/admin/../api", "/api"),
        ("/admin/./users", "/admin/users"),
        ("/admin/.", "/admin/"),
        ("/admin/..", "/"),
        ("/%61dmin", "/admin"),
        ("/%41DMIN", "/ADMIN"),
        ("/api/%2e%2e/admin", "/admin"),
        ("/api/%2E/x", "/api/x"),
        ("/a%7eb", "/a~b"),
        ("/a%20b", "/a%20b"),
        ("/a%3bb", "/a%3Bb"),
        ("/api;x=1/articles", "/api;x=1/articles"),
        ("/caf%C3%A9", "/caf%C3%A9"),
        ("/admin.", "/admin."),
        ("/%252e%252e/admin", "/%252e%252e/admin"),
    ];
    for (input, want) in ok {
        assert_eq!(normalise(input).as_deref(), Ok(*want), "input {input}");
    }
    let bad: &[(&str, PathError)] = &[
        ("api", PathError::NotAbsolute),
        ("*", PathError::NotAbsolute),
        ("/admin%2f..", PathError::EncodedSeparator),
        ("/admin%2F..", PathError::EncodedSeparator),
        ("/admin%5c..", PathError::EncodedSeparator),
        ("/admin\\..", PathError::Backslash),
        ("/a%00b", PathError::ControlChar),
        ("/a%0ab", PathError::ControlChar),
        ("/..", PathError::AboveRoot),
        ("/a/../..", PathError::AboveRoot),
        ("/%2e%2e", PathError::AboveRoot),
        ("/a%zz", PathError::BadEscape),
        ("/a%4", PathError::BadEscape),
        ("/a%", PathError::BadEscape),
        ("/%C0%AE%C0%AE/admin", PathError::InvalidUtf8),
        ("/%ff", PathError::InvalidUtf8),
    ];
    for (input, want) in bad {
        assert_eq!(normalise(input), Err(*want), "input {input}");
    }
}

#[test]
fn normalise_is_idempotent_on_samples() {
    for p in ["/a//b/../c/./%64", "/x/%2e/y/", "/%7E%41", "/a;b/..;/c"] {
        let once = normalise(p).unwrap().into_owned();
        assert_eq!(normalise(&once).unwrap(), once, "{p}");
    }
}

#[test]
fn segment_matching() {
    assert!(segment_is("admin", "admin"));
    assert!(segment_is("ADMIN", "admin"));
    assert!(segment_is("admin;x=1", "admin"));
    assert!(segment_is("admin.", "admin"));
    assert!(segment_is("admin%20", "admin"));
    assert!(segment_is("admin%3Bx", "admin"));
    assert!(!segment_is("administrator", "admin"));
    assert!(!segment_is("adm", "admin"));
    assert!(!segment_is("x-admin", "admin"));
}

fn table() -> RouteTable {
    use super::fixtures::{content_type, pattern as p, spec};
    let read = "plugin::content-manager.explorer.read";
    RouteTable::build(&RouteSpec {
        content_types: vec![
            content_type("api::article.article", Some("articles")),
            content_type("api::homepage.homepage", None),
        ],
        content_api_actions: vec![p(
            "GET /api/upload/files",
            "plugin::upload.content-api.find",
            None,
        )],
        admin_actions: vec![
            p(
                "GET /content-manager/collection-types/:model",
                read,
                Some(":model"),
            ),
            p(
                "GET /content-manager/collection-types/:model/:id",
                read,
                Some(":model"),
            ),
            p(
                "POST /content-manager/collection-types/:model",
                "plugin::content-manager.explorer.create",
                Some(":model"),
            ),
            p(
                "POST /content-manager/collection-types/:model/actions/publish",
                "plugin::content-manager.explorer.publish",
                Some(":model"),
            ),
            p(
                "POST /content-manager/collection-types/:model/:id",
                "x.y",
                Some(":model"),
            ),
            p("GET /admin/users", "admin::users.read", None),
            p("GET /admin/users/:id", "admin::users.read", None),
        ],
        ..spec()
    })
    .unwrap()
}

/// The rows [`classify_table`] checks: method, normalised path, class and
/// action.
const CLASSIFIED: &[(&str, &str, RouteClass, Option<&str>)] = {
    use RouteClass::*;
    &[
        (
            "GET",
            "/api/articles",
            ContentApi,
            Some("api::article.article.find"),
        ),
        (
            "HEAD",
            "/api/articles",
            ContentApi,
            Some("api::article.article.find"),
        ),
        (
            "GET",
            "/api/articles/7",
            ContentApi,
            Some("api::article.article.findOne"),
        ),
        (
            "POST",
            "/api/articles",
            ContentApi,
            Some("api::article.article.create"),
        ),
        (
            "PUT",
            "/api/articles/7",
            ContentApi,
            Some("api::article.article.update"),
        ),
        (
            "PATCH",
            "/api/articles/7",
            ContentApi,
            Some("api::article.article.update"),
        ),
        (
            "DELETE",
            "/api/articles/7",
            ContentApi,
            Some("api::article.article.delete"),
        ),
        ("POST", "/api/articles/7", ContentApi, None),
        ("DELETE", "/api/articles", ContentApi, None),
        ("GET", "/api/articles/7/extra", ContentApi, None),
        (
            "GET",
            "/API/Articles",
            ContentApi,
            Some("api::article.article.find"),
        ),
        (
            "GET",
            "/api;x=1/articles",
            ContentApi,
            Some("api::article.article.find"),
        ),
        (
            "GET",
            "/api/homepage",
            ContentApi,
            Some("api::homepage.homepage.find"),
        ),
        (
            "PUT",
            "/api/homepage",
            ContentApi,
            Some("api::homepage.homepage.update"),
        ),
        ("POST", "/api/homepage", ContentApi, None),
        (
            "GET",
            "/api/upload/files",
            ContentApi,
            Some("plugin::upload.content-api.find"),
        ),
        ("GET", "/api/unknown", ContentApi, None),
        ("GET", "/api", ContentApi, None),
        ("POST", "/graphql", ContentApi, None),
        ("GET", "/admin", Admin, None),
        ("GET", "/ADMIN/users", Admin, Some("admin::users.read")),
        ("GET", "/admin/users/3", Admin, Some("admin::users.read")),
        ("POST", "/admin/users", Admin, None),
        ("GET", "/administrator", Unprotected, None),
        ("GET", "/apis", Unprotected, None),
        ("GET", "/uploads/x.png", Unprotected, None),
        ("GET", "/upload/files", Admin, None),
        ("GET", "/", Unprotected, None),
        ("GET", "/_health", Unprotected, None),
        (
            "GET",
            "/content-manager/collection-types/api::article.article",
            Admin,
            Some("plugin::content-manager.explorer.read"),
        ),
        (
            "POST",
            "/content-manager/collection-types/api::article.article",
            Admin,
            Some("plugin::content-manager.explorer.create"),
        ),
        (
            "POST",
            "/content-manager/collection-types/api::article.article/actions/publish",
            Admin,
            Some("plugin::content-manager.explorer.publish"),
        ),
        (
            "POST",
            "/content-manager/collection-types/api::article.article/9",
            Admin,
            Some("x.y"),
        ),
    ]
};

#[test]
fn classify_table() {
    let t = table();
    for (m, p, class, action) in CLASSIFIED {
        let r = t.classify(&m.parse().unwrap(), p);
        assert_eq!(r.class, *class, "{m} {p}");
        assert_eq!(r.action.name(), *action, "{m} {p}");
    }
    let finds: Vec<Arc<str>> = ["api::article.article.find", "api::homepage.homepage.find"]
        .into_iter()
        .map(Arc::from)
        .collect();
    assert_eq!(
        t.classify(&Method::POST, "/graphql").action,
        RouteAction::GraphQl { finds: &finds }
    );
    assert!(t.classify(&Method::GET, "/api/private/x").auth_required);
    assert!(!t.classify(&Method::GET, "/api/articles").auth_required);
}

#[test]
fn subject_is_decoded_from_path() {
    let t = table();
    let r = t.classify(
        &Method::GET,
        "/content-manager/collection-types/api%3A%3Aarticle.article/4",
    );
    assert_eq!(
        r.action,
        RouteAction::Admin {
            action: "plugin::content-manager.explorer.read",
            subject: Some(Cow::Owned("api::article.article".into()))
        }
    );
}

#[test]
fn ambiguous_patterns_are_rejected() {
    let p = |route: &str| PatternSpec {
        route: route.into(),
        action: "a".into(),
        subject: None,
    };
    let err = PatternTable::build(&[p("GET /a/:x"), p("GET|POST /A/:y")]).unwrap_err();
    assert!(err.contains("ambiguous"), "{err}");
    assert!(PatternTable::build(&[p("GET /a/:x"), p("POST /a/:y")]).is_ok());
    assert!(PatternTable::build(&[p("GET /a/:x"), p("GET /a/b")]).is_ok());
    assert!(PatternTable::build(&[p("FETCH /a")]).is_err());
    assert!(PatternTable::build(&[p("GET a")]).is_err());
    let bad_subject = PatternSpec {
        route: "GET /a/:x".into(),
        action: "a".into(),
        subject: Some(":y".into()),
    };
    assert!(PatternTable::build(&[bad_subject]).is_err());
}

#[test]
fn literal_beats_parameter() {
    let p = |route: &str, action: &str| PatternSpec {
        route: route.into(),
        action: action.into(),
        subject: None,
    };
    let t = PatternTable::build(&[
        p("GET /a/:x/c", "param-first"),
        p("GET /a/b/:y", "lit-first"),
        p("GET /a/b/c", "exact"),
    ])
    .unwrap();
    assert_eq!(
        t.lookup(&Method::GET, "/a/b/c").unwrap().action,
        Some("exact")
    );
    assert_eq!(
        t.lookup(&Method::GET, "/a/b/d").unwrap().action,
        Some("lit-first")
    );
    assert_eq!(
        t.lookup(&Method::GET, "/a/z/c").unwrap().action,
        Some("param-first")
    );
    assert_eq!(
        t.lookup(&Method::HEAD, "/a/z/c").unwrap().action,
        Some("param-first")
    );
    assert!(t.lookup(&Method::POST, "/a/z/c").is_none());
    let t = PatternTable::build(&[p("GET /u/:id", "read"), p("GET /u/me", "")]).unwrap();
    assert_eq!(t.lookup(&Method::GET, "/u/me").unwrap().action, None);
    assert_eq!(t.lookup(&Method::GET, "/u/3").unwrap().action, Some("read"));
}

#[test]
fn bad_prefixes_are_rejected() {
    let mut spec = RouteSpec {
        admin_prefixes: vec!["admin".into()],
        ..Default::default()
    };
    assert!(RouteTable::build(&spec).is_err());
    spec.admin_prefixes = vec!["/".into()];
    assert!(RouteTable::build(&spec).is_err());
    spec.admin_prefixes = vec!["/api".into()];
    spec.content_api_prefixes = vec!["/API".into()];
    assert!(RouteTable::build(&spec).is_err());
}

/// `judge` on the raw target, as the proxy calls it.
fn judged(t: &RouteTable, method: &str, raw: &str) -> Result<RouteClass, PathError> {
    let m = Method::from_bytes(method.as_bytes()).unwrap();
    let (path, query) = match raw.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (raw, None),
    };
    let n = normalise(path)?;
    t.judge(&m, path, query, &n).map(|r| r.class)
}

#[test]
fn requests_people_send_every_day_pass() {
    use RouteClass::*;
    let t = table();
    let rows: &[(&str, &str, RouteClass)] = &[
        ("GET", "/api/articles", ContentApi),
        ("GET", "/api/articles/", ContentApi),
        ("GET", "/api/articles/abc123def", ContentApi),
        ("PUT", "/api/articles/7", ContentApi),
        ("POST", "/graphql", ContentApi),
        ("GET", "/api/articles/hello%20world", ContentApi),
        ("GET", "/api/search/caf%C3%A9", ContentApi),
        ("GET", "/uploads/my%25file.png", Unprotected),
        ("GET", "/uploads/100%25%20off.JPG", Unprotected),
        ("GET", "/uploads/IMG_2041.JPG", Unprotected),
        ("GET", "/uploads/a%3Bb.png", Unprotected),
        ("GET", "/admin", Admin),
        ("GET", "/admin/", Admin),
        ("GET", "/ADMIN/users", Admin),
        ("GET", "/admin/users/me", Admin),
        ("GET", "/admin/auth/login", Admin),
        (
            "GET",
            "/content-manager/collection-types/api::article.article",
            Admin,
        ),
        (
            "GET",
            "/content-manager/collection-types/api%3A%3Aarticle.article/1",
            Admin,
        ),
        ("OPTIONS", "/api/articles", ContentApi),
        ("GET", "/favicon.ico", Unprotected),
        ("GET", "/", Unprotected),
        (
            "GET",
            "/api/articles?filters[title][$eq]=a&sort=title",
            ContentApi,
        ),
        ("POST", "/uploads/x?_method=DELETE", Unprotected),
    ];
    for (m, raw, class) in rows {
        assert_eq!(judged(&t, m, raw), Ok(*class), "{m} {raw}");
    }
}

#[test]
fn requests_read_differently_behind_us_are_refused() {
    let t = table();
    let refused: &[(&str, &str, PathError)] = &[
        ("GET", "/%2561dmin/users", PathError::AmbiguousReading),
        ("GET", "/admin%252fusers", PathError::AmbiguousReading),
        ("GET", "/%2575pload/files", PathError::AmbiguousReading),
        ("GET", "/%2561pi/articles", PathError::AmbiguousReading),
        ("GET", "/%252561dmin/users", PathError::AmbiguousReading),
        ("GET", "/%25u0061dmin/users", PathError::AmbiguousReading),
        ("GET", "/api/..;/admin/users", PathError::AmbiguousReading),
        ("GET", "/api/%252e%252e/admin", PathError::AmbiguousReading),
        (
            "GET",
            "/api/x%255c..%255c..%255cadmin",
            PathError::AmbiguousReading,
        ),
        ("GET", "/admin%253f/x", PathError::AmbiguousReading),
        ("GET", "/admin%3F/x", PathError::AmbiguousReading),
        ("GET", "/api/..%2520/admin", PathError::AmbiguousReading),
        (
            "GET",
            "/content-manager/collection-types/API::ARTICLE.ARTICLE",
            PathError::AmbiguousReading,
        ),
        (
            "GET",
            "/content-manager/collection-types/api::article.article;x",
            PathError::AmbiguousReading,
        ),
        ("GET", "/api/x/%2500", PathError::ControlChar),
        // Found by the fuzz target: drop `;` parameters, then decode
        // again, then `\` as `/`, then trim: /admin/articles...
        (
            "TRACE",
            "/;ADMIN41....3fADMIN23apiADMIN2F%252f5c/admin..%255carticlesarticlesarticles",
            PathError::AmbiguousReading,
        ),
        ("get", "/admin/users", PathError::MethodCase),
        ("Get", "/api/articles", PathError::MethodCase),
        ("CONNECT", "/admin/users", PathError::Connect),
        (
            "POST",
            "/admin/users/1?_method=DELETE",
            PathError::MethodOverride,
        ),
        (
            "POST",
            "/api/articles?a=1&_METHOD=DELETE",
            PathError::MethodOverride,
        ),
        (
            "POST",
            "/api/articles?%5Fmethod=DELETE",
            PathError::MethodOverride,
        ),
    ];
    for (m, raw, want) in refused {
        assert_eq!(judged(&t, m, raw), Err(*want), "{m} {raw}");
    }
}

#[test]
fn unknown_methods_are_judged_as_the_most_demanding() {
    let t = table();
    let m = |s: &str| Method::from_bytes(s.as_bytes()).unwrap();
    for method in ["PROPFIND", "SEARCH", "TRACE", "PURGE"] {
        let method = m(method);
        // Mapped admin and content-API paths: no token holds the method.
        for path in [
            "/content-manager/collection-types/api::article.article",
            "/api/articles",
            "/api/articles/7",
            "/api/upload/files",
        ] {
            assert_eq!(
                t.classify(&method, path).action,
                RouteAction::Refused,
                "{path}"
            );
        }
        // A rule requiring a token applies to it whatever its methods.
        assert!(t.classify(&method, "/api/private/x").auth_required);
    }
    // A row may name a registered extension method.
    let table = PatternTable::build(&[PatternSpec {
        route: "PROPFIND /a/:id".into(),
        action: "read".into(),
        subject: None,
    }])
    .unwrap();
    assert_eq!(
        table.lookup(&m("PROPFIND"), "/a/1").unwrap().action,
        Some("read")
    );
    assert!(table.lookup(&m("SEARCH"), "/a/1").is_none());
    assert!(table.maps_path("/a/1"));
}
