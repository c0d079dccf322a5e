//! The two properties of issue 12, as functions over authgate's public API
//! and the reference reader ([`super::readings`]), shared by the property
//! tests (tests/properties.rs) and the fuzz target (fuzz/fuzz_targets/readings.rs).

use authgate::authz::{parse_authorization, Credential};
use authgate::route::{normalise, RouteClass, RouteSpec, RouteTable};
use http::Method;

use super::readings::{self as reference, Class};

/// The route table both checks judge with: the reference's prefixes.
pub fn table() -> RouteTable {
    let p = |route: &str, action: &str, subject: Option<&str>| authgate::route::PatternSpec {
        route: route.into(),
        action: action.into(),
        subject: subject.map(Into::into),
    };
    RouteTable::build(&RouteSpec {
        admin_prefixes: reference::ADMIN.iter().map(|p| format!("/{p}")).collect(),
        content_api_prefixes: reference::CONTENT.iter().map(|p| format!("/{p}")).collect(),
        graphql_path: Some("/graphql".into()),
        content_types: vec![authgate::route::ContentTypeSpec {
            uid: "api::article.article".into(),
            plural: Some("articles".into()),
            singular: None,
            single: false,
        }],
        admin_actions: vec![
            p("GET /admin/users", "admin::users.read", None),
            p("DELETE /admin/users/:id", "admin::users.delete", None),
            p("GET /upload/files", "plugin::upload.read", None),
        ],
        ..Default::default()
    })
    .expect("reference route table")
}

/// Either authgate refuses `method raw`, or every reading of it by the
/// reference reader has the class authgate judged (or, stricter, names no
/// route at all), and authgate's own classification of that reading has
/// the same action, subject and token requirement. `Ok` carries whether
/// the request would be forwarded.
pub fn path(t: &RouteTable, method: &Method, raw: &str) -> Result<bool, String> {
    let Ok(normal) = normalise(raw) else {
        return Ok(false);
    };
    let Ok(judged) = t.judge(method, raw, None, &normal) else {
        return Ok(false);
    };
    let Some(readings) = reference::paths(raw, 4000) else {
        return Ok(true);
    };
    if reference::has_control(&readings) {
        return Err(format!(
            "{method} {raw}: forwarded with a control character in a reading"
        ));
    }
    let class = match judged.class {
        RouteClass::Admin => Class::Admin,
        RouteClass::ContentApi => Class::ContentApi,
        RouteClass::Unprotected => Class::Other,
    };
    for r in &readings {
        // A reader that keeps `admin.` or `admin%20` literal routes it
        // nowhere: authgate checked a token the CMS then does not need,
        // stricter, never a crossing. Any other difference is one.
        let read = reference::class_of(r);
        let stricter = read == Class::Other && class != Class::Other;
        if read != class && !stricter {
            return Err(format!(
                "{method} {raw}: judged {:?}, read as {r} ({read:?})",
                judged.class
            ));
        }
        let escaped = r.replace('%', "%25");
        let route = t.classify(method, &escaped);
        if !(stricter && route.class == RouteClass::Unprotected) && route != judged {
            return Err(format!(
                "{method} {raw}: judged {judged:?}, read as {r}: {route:?}"
            ));
        }
    }
    Ok(true)
}

/// Whenever a real reader would take a key from the `Authorization` value,
/// authgate takes the same key or refuses the request; bytes outside
/// visible ASCII, space and tab are always refused.
pub fn authorization(v: &[u8]) -> Result<(), String> {
    let ours = parse_authorization(std::iter::once(v));
    let shown = String::from_utf8_lossy(v);
    if v.iter().any(|b| !matches!(b, 0x21..=0x7e | b' ' | b'\t')) && ours != Credential::Malformed {
        return Err(format!("{shown:?}: {ours:?}, not refused"));
    }
    if matches!(ours, Credential::Malformed | Credential::Conflicting) {
        return Ok(());
    }
    for (reader, theirs) in reference::tokens(v) {
        let Some(theirs) = theirs.filter(|t| reference::key_like(t)) else {
            continue;
        };
        match ours {
            Credential::Token(t) if t == theirs.as_bytes() => {}
            other => {
                return Err(format!(
                    "{reader} reads key {theirs:?} from {shown:?}, authgate reads {other:?}"
                ))
            }
        }
    }
    Ok(())
}
