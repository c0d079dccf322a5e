//! Table tests of `judge`: the issue's request and its neighbours, one row
//! per reading and per refusal.

use http::header::{CONTENT_ENCODING, CONTENT_TYPE};

use super::*;
use GraphQlOperation::{Other, Query};

const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";

fn judged(
    method: &str,
    content_types: &[&str],
    query: Option<&str>,
    body: &str,
) -> Result<GraphQlOperation, Unjudgeable> {
    let mut headers = HeaderMap::new();
    for t in content_types {
        headers.append(CONTENT_TYPE, t.parse().unwrap());
    }
    judge(&method.parse().unwrap(), &headers, query, body.as_bytes())
}

fn post(content_type: &str, body: &str) -> Result<GraphQlOperation, Unjudgeable> {
    judged("POST", &[content_type], None, body)
}

/// Issue 24, item 1: a JSON body sent as a form is a query to a JSON
/// reader and a mutation to koa-bodyparser's `qs`.
#[test]
fn the_issues_request_and_its_neighbours() {
    let issue =
        r#"{"query":"{ articles { title } }","x":"&query=mutation(...){createArticle(...)}&..."}"#;
    assert_eq!(post(FORM, issue), Ok(Other));
    let real = concat!(
        r#"{"query":"{ articles { title } }","x":"&query=mutation+M(%24d%3AArticleInput!)"#,
        r#"%7BcreateArticle(data%3A%24d)%7BdocumentId%7D%7D&variables=%7B%7D&y=""#,
        "}"
    );
    assert_eq!(post(FORM, real), Ok(Other));
    for t in [
        "Application/X-WWW-Form-Urlencoded",
        "application/x-www-form-urlencoded; charset=UTF-8",
        "application/x-www-form-urlencoded;charset=\"utf-8\"",
    ] {
        assert_eq!(post(t, real), Ok(Other), "{t}");
    }
    // Read as JSON, the same bytes hold one query: what every JSON reader runs.
    assert_eq!(post(JSON, real), Ok(Query));
    assert_eq!(post("application/vnd.api+json", real), Ok(Query));
    // Types no reader here takes, or none at all: refused.
    assert_eq!(
        judged("POST", &[], None, real),
        Err(Unjudgeable::NoMediaType)
    );
    assert_eq!(post("text/plain", real), Err(Unjudgeable::UnknownMediaType));
    assert_eq!(
        post("application/x-www-form-urlencoded, application/json", real),
        Err(Unjudgeable::MalformedMediaType)
    );
    assert_eq!(
        judged("POST", &[JSON, FORM], None, real),
        Err(Unjudgeable::SeveralContentTypes)
    );
    assert_eq!(
        post("application/x-www-form-urlencoded; charset=utf-16le", real),
        Err(Unjudgeable::Charset)
    );
    // The mutation hidden under the other key readings of qs.
    for key in [
        "query",
        "[query]",
        "%5Bquery%5D",
        ".query",
        "[query]x",
        "%71uery",
        "QUERY",
        "query+",
        "query[]",
    ] {
        let body = format!("query=%7Ba%7D&{key}=mutation%7Bb%7D");
        assert_eq!(post(FORM, &body), Ok(Other), "{body}");
    }
    assert_eq!(post(FORM, "query=%7Ba%7D;query=mutation%7Bb%7D"), Ok(Other));
    assert_eq!(
        post(FORM, "[query]x=y]=mutation%7Bb%7D&query=%7Ba%7D"),
        Ok(Other)
    );
    // An honest form.
    assert_eq!(
        post(
            FORM,
            "query=%7B+articles+%7B+title+%7D+%7D&variables=%7B%7D"
        ),
        Ok(Query)
    );
    assert_eq!(
        post(FORM, "variables=%7B%7D"),
        Err(Unjudgeable::NoDocument(Reading::Form))
    );
    assert_eq!(
        post(FORM, "query=%7Ba%7D%zz"),
        Err(Unjudgeable::Unreadable(Reading::Form))
    );
}

#[test]
fn json_bodies() {
    let rows: &[(&str, Result<GraphQlOperation, Unjudgeable>)] = &[
        (r#"{"query":"{ a }"}"#, Ok(Query)),
        (
            r#"{"query":"query Q { a }","operationName":"Q"}"#,
            Ok(Query),
        ),
        (r#"{"query":"mutation { a }"}"#, Ok(Other)),
        (
            r#"{"query":"query Q { a } mutation M { b }","operationName":"Q"}"#,
            Ok(Other),
        ),
        (r#"{"query":"{ a }","query":"mutation { b }"}"#, Ok(Other)),
        (r#"{"query":"mutation { b }","query":"{ a }"}"#, Ok(Other)),
        (
            r#"{"query":"{ a }","Query":"subscription { b }"}"#,
            Ok(Other),
        ),
        (r#"[{"query":"{ a }"},{"query":"query { b }"}]"#, Ok(Query)),
        (
            r#"[{"query":"{ a }"},{"query":"mutation { b }"}]"#,
            Ok(Other),
        ),
        (
            r#"[{"query":"{ a }"},{"extensions":{}}]"#,
            Err(Unjudgeable::NoDocument(Reading::Json)),
        ),
        (
            r#"{"extensions":{"persistedQuery":{"sha256Hash":"x"}}}"#,
            Err(Unjudgeable::NoDocument(Reading::Json)),
        ),
        (
            r#"{"query":null}"#,
            Err(Unjudgeable::NoDocument(Reading::Json)),
        ),
        (
            r#"{"query":"{ a }","query":null}"#,
            Err(Unjudgeable::NoDocument(Reading::Json)),
        ),
        ("[]", Err(Unjudgeable::NoDocument(Reading::Json))),
        ("not json", Err(Unjudgeable::Unreadable(Reading::Json))),
        ("[1]", Err(Unjudgeable::Unreadable(Reading::Json))),
    ];
    for (body, want) in rows {
        assert_eq!(&post(JSON, body), want, "{body}");
    }
}

#[test]
fn query_strings() {
    let get = |q: Option<&str>| judged("GET", &[], q, "");
    assert_eq!(get(Some("query=%7Ba%7D")), Ok(Query));
    assert_eq!(get(Some("query=mutation%7Ba%7D")), Ok(Other));
    assert_eq!(get(Some("query=%7Ba%7D&query=mutation%7Bb%7D")), Ok(Other));
    assert_eq!(
        get(Some("x=1;query=mutation%7Bb%7D&query=%7Ba%7D")),
        Ok(Other)
    );
    assert_eq!(
        get(Some("extensions=%7B%7D")),
        Err(Unjudgeable::NoDocument(Reading::QueryString))
    );
    assert_eq!(
        get(None),
        Err(Unjudgeable::NoDocument(Reading::QueryString))
    );
    assert_eq!(judged("HEAD", &[], Some("query=%7Ba%7D"), ""), Ok(Query));
    // A type on an empty body is read by no parser.
    assert_eq!(
        judged("GET", &["text/plain"], Some("query=%7Ba%7D"), ""),
        Ok(Query)
    );
    // A GET body is judged like any other.
    assert_eq!(
        judged(
            "GET",
            &[FORM],
            Some("query=%7Ba%7D"),
            "query=mutation%7Bb%7D"
        ),
        Ok(Other)
    );
    assert_eq!(
        judged("GET", &[], Some("query=%7Ba%7D"), "x"),
        Err(Unjudgeable::NoMediaType)
    );
    // POST: express-graphql takes `query` from the URL before the body's.
    let q = r#"{"query":"{ a }"}"#;
    assert_eq!(
        judged("POST", &[JSON], Some("query=mutation%7Bb%7D"), q),
        Ok(Other)
    );
    assert_eq!(judged("POST", &[JSON], Some("locale=en"), q), Ok(Query));
    assert_eq!(judged("POST", &[], Some("query=%7Ba%7D"), ""), Ok(Query));
    assert_eq!(judged("POST", &[], None, ""), Err(Unjudgeable::Empty));
    assert_eq!(
        judged("PUT", &[JSON], None, r#"{"query":"mutation { a }"}"#),
        Ok(Other)
    );
}

#[test]
fn other_media_types() {
    assert_eq!(post("application/graphql", "{ a }"), Ok(Query));
    assert_eq!(post("application/graphql", "mutation { a }"), Ok(Other));
    assert_eq!(
        judge(
            &Method::POST,
            &[(CONTENT_TYPE, "application/graphql".parse().unwrap())]
                .into_iter()
                .collect(),
            None,
            b"{ a(x: \"\xff\") }"
        ),
        Err(Unjudgeable::Unreadable(Reading::Document))
    );
    let multipart = "multipart/form-data; boundary=b0";
    let ops = |ops: &str| {
        format!(
            "--b0\r\nContent-Disposition: form-data; name=\"operations\"\r\n\r\n{ops}\r\n\
             --b0\r\nContent-Disposition: form-data; name=\"map\"\r\n\r\n{{}}\r\n--b0--\r\n"
        )
    };
    assert_eq!(post(multipart, &ops(r#"{"query":"{ a }"}"#)), Ok(Query));
    assert_eq!(
        post(multipart, &ops(r#"{"query":"mutation { a }"}"#)),
        Ok(Other)
    );
    assert_eq!(
        post(
            multipart,
            &ops(r#"[{"query":"{ a }"},{"query":"mutation { a }"}]"#)
        ),
        Ok(Other)
    );
    assert_eq!(
        post(multipart, &ops("{}")),
        Err(Unjudgeable::NoDocument(Reading::Multipart))
    );
    assert_eq!(
        post(multipart, &ops("{")),
        Err(Unjudgeable::Unreadable(Reading::Multipart))
    );
    assert_eq!(
        post(
            multipart,
            &ops(r#"{"query":"{ a }"}"#).replace("\r\n", "\n")
        ),
        Err(Unjudgeable::Unreadable(Reading::Multipart))
    );
    let with_query = ops(r#"{"query":"{ a }"}"#).replace(
        "--b0--",
        "--b0\r\nContent-Disposition: form-data; name=query\r\n\r\nmutation { b }\r\n--b0--",
    );
    assert_eq!(post(multipart, &with_query), Ok(Other));
    assert_eq!(
        post(multipart, "--b0--"),
        Err(Unjudgeable::NoDocument(Reading::Multipart))
    );
    assert_eq!(
        post("multipart/form-data", &ops("{}")),
        Err(Unjudgeable::MalformedMediaType)
    );
}

#[test]
fn codings() {
    for coding in ["gzip", "deflate", "br", "identity, gzip"] {
        let mut h = HeaderMap::new();
        h.append(CONTENT_TYPE, JSON.parse().unwrap());
        h.append(CONTENT_ENCODING, coding.parse().unwrap());
        assert_eq!(
            judge(&Method::POST, &h, None, br#"{"query":"{ a }"}"#),
            Err(Unjudgeable::ContentEncoding),
            "{coding}"
        );
    }
    let mut h = HeaderMap::new();
    h.append(CONTENT_TYPE, JSON.parse().unwrap());
    h.append(CONTENT_ENCODING, "identity".parse().unwrap());
    assert_eq!(
        judge(&Method::POST, &h, None, br#"{"query":"{ a }"}"#),
        Ok(Query)
    );
}

/// The proxy's calls until it calls `judge`.
#[test]
fn bodies_and_query_strings() {
    assert_eq!(json_body(br#"{"query":"{ a }"}"#), Query);
    assert_eq!(json_body(br#"{"query":"mutation { a }"}"#), Other);
    assert_eq!(
        json_body(br#"[{"query":"{ a }"},{"query":"query { b }"}]"#),
        Query
    );
    assert_eq!(
        json_body(br#"[{"query":"{ a }"},{"query":"mutation { b }"}]"#),
        Other
    );
    assert_eq!(json_body(br#"[]"#), Other);
    assert_eq!(json_body(b"not json"), Other);
    assert_eq!(json_body(br#"{"variables":{}}"#), Other);
    assert_eq!(query_string("query=%7B+a+%7D"), Query);
    assert_eq!(query_string("query=mutation+%7B+a+%7D"), Other);
    assert_eq!(query_string("x=1&query=%7Ba%7D"), Query);
    assert_eq!(query_string("query=%7Ba%7D&query=mutation%7Bb%7D"), Other);
    assert_eq!(query_string("query=%zz"), Other);
    assert_eq!(query_string(""), Other);
}
