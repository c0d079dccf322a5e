//! Issue 24, item 1, as properties: the GraphQL judge against readers
//! written apart from it (tests/reference/graphql.rs: Strapi's
//! koa-bodyparser + graphql-upload + Apollo, express-graphql, first- and
//! last-wins readers).
//!
//! Requests are generated from the pieces differentials are made of:
//! media types in odd case and with parameters (some not UTF-8, some
//! repeated, some unknown), bodies that do not match their type (a JSON
//! body sent as a form, the issue's request), JSON objects and batches with
//! repeated keys, forms with repeated, encoded, bracketed and dotted keys
//! and `]=` and `;` splits, multipart bodies with smuggled parts, UTF-16
//! bodies, GET and POST query strings. Properties:
//!
//! 1. whenever any reference reader executes a mutation or subscription,
//!    `judge` does not answer `Query`;
//! 2. an honest request (one reading, one canonical encoding) is judged
//!    exactly: `Query` for queries, `Other` as soon as one is a write, and
//!    the reference reads its documents too;
//! 3. the generator reaches the bug class: some generated requests run a
//!    write for a reference reader while main's reading (the body as JSON
//!    whatever its type) says `Query`.

// Test code: a failure here is the test failing, so it may unwrap.
#![allow(clippy::unwrap_used)]

#[path = "reference/graphql.rs"]
mod reference;

use authgate::authz::GraphQlOperation::{self, Other, Query};
use authgate::graphql::{judge, Unjudgeable};
use http::header::CONTENT_TYPE;
use http::{HeaderMap, Method};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use reference::Req;

const QUERIES: &[&str] = &[
    "{ articles { title } }",
    "query Q { a }",
    "query { a(where: \"mutation { x }\") }",
    "# mutation\n{ a }",
    "query Q($id: ID) { article(documentId: $id) { title } }",
];

const WRITES: &[&str] = &[
    "mutation { createArticle(data: {}) { documentId } }",
    "mutation M($d: ArticleInput!) { createArticle(data: $d) { documentId } }",
    "subscription { a }",
    "query Q { a } mutation M { b }",
];

const BOUNDARY: &str = "BoUnD";

fn is_write(doc: &str) -> bool {
    WRITES.contains(&doc)
}

fn judged(r: &Req) -> Result<GraphQlOperation, Unjudgeable> {
    let mut headers = HeaderMap::new();
    for t in &r.content_types {
        headers.append(CONTENT_TYPE, t.parse().unwrap());
    }
    let method: Method = r.method.parse().unwrap();
    judge(&method, &headers, r.query.as_deref(), &r.body)
}

/// What main did before issue 24: GET and HEAD read the query string
/// (repeated `query` is `Other`), anything else reads the body as JSON.
fn main_before(r: &Req) -> GraphQlOperation {
    use authgate::graphql::document;
    if r.method == "GET" || r.method == "HEAD" {
        let q = r.query.as_deref().unwrap_or("");
        let found: Vec<String> = url_pairs(q)
            .filter(|(k, _)| k == "query")
            .map(|(_, v)| v)
            .collect();
        return match found.as_slice() {
            [one] => document(one),
            _ => Other,
        };
    }
    let one = |v: &serde_json::Value| match v.get("query").and_then(|q| q.as_str()) {
        Some(q) => document(q),
        None => Other,
    };
    match serde_json::from_slice::<serde_json::Value>(&r.body) {
        Ok(serde_json::Value::Array(items)) if !items.is_empty() => {
            if items.iter().all(|i| one(i) == Query) {
                Query
            } else {
                Other
            }
        }
        Ok(v @ serde_json::Value::Object(_)) => one(&v),
        _ => Other,
    }
}

fn url_pairs(q: &str) -> impl Iterator<Item = (String, String)> + '_ {
    q.split('&').map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (pct_decode(k), pct_decode(v))
    })
}

fn pct_decode(s: &str) -> String {
    let s = s.replace('+', " ");
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1..i + 3)) {
            (b'%', Some(h)) if h.iter().all(u8::is_ascii_hexdigit) => {
                out.push(u8::from_str_radix(std::str::from_utf8(h).unwrap(), 16).unwrap());
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encode all but unreserved characters; a space as `+` or `%20`.
fn pct(s: &str, plus: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b' ' if plus => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn doc() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        proptest::sample::select(QUERIES),
        proptest::sample::select(WRITES)
    ]
}

fn form_key() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(
        &[
            "query",
            "query",
            "%71uery",
            "[query]",
            "%5Bquery%5D",
            ".query",
            "QUERY",
            "query[]",
            "[query]x",
            "query+",
            "a[query]",
            "que.ry",
            "variables",
            "operationName",
            "x",
        ][..],
    )
}

fn form_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (doc(), any::<bool>()).prop_map(|(d, plus)| pct(d, plus)),
        1 => (doc(), doc()).prop_map(|(a, b)| format!("{}]={}", pct(a, true), pct(b, true))),
        1 => Just("%7B%7D".to_owned()),
        1 => Just("%zz".to_owned()),
    ]
}

fn form() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec((form_key(), form_value()), 0..4),
        prop_oneof![4 => Just("&"), 1 => Just(";")],
    )
        .prop_map(|(pairs, sep)| {
            pairs
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(sep)
        })
}

/// A JSON request object with repeated keys and, in `x`, a string that a
/// form reader splits into `&query=...` (the issue's trick).
fn json_object() -> impl Strategy<Value = String> {
    let member = prop_oneof![
        4 => (proptest::sample::select(&["query", "Query"][..]), doc())
            .prop_map(|(k, d)| format!("{}:{}", json_str(k), json_str(d))),
        1 => Just(r#""query":null"#.to_owned()),
        1 => Just(r#""variables":{}"#.to_owned()),
        1 => Just(r#""extensions":{"persistedQuery":{"version":1}}"#.to_owned()),
        2 => (doc(), any::<bool>()).prop_map(|(d, plus)| {
            format!(r#""x":"&query={}&y=""#, pct(d, plus))
        }),
    ];
    proptest::collection::vec(member, 0..4).prop_map(|m| format!("{{{}}}", m.join(",")))
}

fn json_body() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => json_object(),
        1 => proptest::collection::vec(json_object(), 0..3).prop_map(|o| format!("[{}]", o.join(","))),
    ]
}

/// A multipart body: `operations`, `map`, `query` and file parts, some
/// files smuggling a part behind a bare LF, CRLF or LF line ends, maybe a
/// preamble.
fn multipart() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        3 => json_object().prop_map(|o| ("name=\"operations\"".to_owned(), o)),
        1 => Just(("name=\"map\"".to_owned(), "{}".to_owned())),
        1 => doc().prop_map(|d| ("name=query".to_owned(), d.to_owned())),
        1 => json_object().prop_map(|o| {
            (
                "name=\"0\"; filename=\"a.txt\"".to_owned(),
                format!("x\n--{BOUNDARY}\nContent-Disposition: form-data; name=\"operations\"\n\n{o}"),
            )
        }),
    ];
    (
        proptest::collection::vec(part, 0..4),
        prop_oneof![4 => Just("\r\n"), 1 => Just("\n")],
        prop_oneof![4 => Just(""), 1 => Just("preamble\r\n")],
    )
        .prop_map(|(parts, nl, preamble)| {
            let mut b = preamble.to_owned();
            for (disposition, content) in parts {
                b.push_str(&format!(
                    "--{BOUNDARY}{nl}Content-Disposition: form-data; {disposition}{nl}{nl}{content}{nl}"
                ));
            }
            b.push_str(&format!("--{BOUNDARY}--{nl}"));
            b
        })
}

fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => Just(Vec::new()),
        4 => json_body().prop_map(String::into_bytes),
        3 => form().prop_map(String::into_bytes),
        1 => doc().prop_map(|d| d.as_bytes().to_vec()),
        3 => multipart().prop_map(String::into_bytes),
        1 => doc().prop_map(utf16le),
        1 => json_body().prop_map(|j| utf16le(&j)),
    ]
}

fn content_type() -> impl Strategy<Value = String> {
    let multipart_quoted = format!("Multipart/Form-Data; boundary=\"{BOUNDARY}\"");
    let multipart = format!("multipart/form-data; boundary={BOUNDARY}");
    proptest::sample::select(vec![
        "application/json".to_owned(),
        "Application/JSON".to_owned(),
        "application/json; charset=utf-8".to_owned(),
        "application/json;charset=UTF-8".to_owned(),
        "application/json; charset=utf-16le".to_owned(),
        "application/vnd.api+json".to_owned(),
        "application/json-patch+json".to_owned(),
        "application/csp-report".to_owned(),
        "application/graphql+json".to_owned(),
        "application/x-www-form-urlencoded".to_owned(),
        "APPLICATION/X-WWW-FORM-URLENCODED; charset=utf-8".to_owned(),
        "application/x-www-form-urlencoded;charset=\"UTF-8\"".to_owned(),
        "application/x-www-form-urlencoded; charset=iso-8859-1".to_owned(),
        "application/graphql".to_owned(),
        "application/graphql; charset=utf-16le".to_owned(),
        multipart,
        multipart_quoted,
        "multipart/form-data; boundary=other".to_owned(),
        "text/plain".to_owned(),
        "application/xml".to_owned(),
        "application/x-www-form-urlencoded, application/json".to_owned(),
    ])
}

fn request() -> impl Strategy<Value = Req> {
    (
        proptest::sample::select(&["GET", "HEAD", "POST", "POST", "POST", "PUT"][..]),
        prop_oneof![
            1 => Just(Vec::new()),
            6 => content_type().prop_map(|t| vec![t]),
            1 => (content_type(), content_type()).prop_map(|(a, b)| vec![a, b]),
        ],
        proptest::option::of(form()),
        body(),
    )
        .prop_map(|(method, content_types, query, body)| Req {
            method,
            content_types,
            query,
            body,
        })
}

/// An honest request: one reading, canonical encoding, its documents.
fn honest() -> impl Strategy<Value = (Req, Vec<&'static str>)> {
    let get = (doc(), any::<bool>()).prop_map(|(d, plus)| {
        let query = format!("query={}&variables=%7B%7D", pct(d, plus));
        (req("GET", None, Some(query), ""), vec![d])
    });
    let json = (
        doc(),
        proptest::sample::select(
            &[
                "application/json",
                "application/json; charset=utf-8",
                "Application/JSON",
            ][..],
        ),
    )
        .prop_map(|(d, t)| {
            let body = format!(r#"{{"query":{},"variables":{{}}}}"#, json_str(d));
            (req("POST", Some(t), None, &body), vec![d])
        });
    let batch = proptest::collection::vec(doc(), 1..4).prop_map(|docs| {
        let items: Vec<String> = docs
            .iter()
            .map(|d| format!(r#"{{"query":{}}}"#, json_str(d)))
            .collect();
        let body = format!("[{}]", items.join(","));
        (req("POST", Some("application/json"), None, &body), docs)
    });
    let form = (doc(), any::<bool>()).prop_map(|(d, plus)| {
        let body = format!("query={}&variables=%7B%7D", pct(d, plus));
        (
            req(
                "POST",
                Some("application/x-www-form-urlencoded"),
                None,
                &body,
            ),
            vec![d],
        )
    });
    let graphql = doc().prop_map(|d| (req("POST", Some("application/graphql"), None, d), vec![d]));
    let upload = doc().prop_map(|d| {
        let ops = format!(r#"{{"query":{},"variables":{{"f":null}}}}"#, json_str(d));
        let body = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"operations\"\r\n\r\n{ops}\r\n\
             --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"map\"\r\n\r\n{{\"0\":[\"variables.f\"]}}\r\n\
             --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"0\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
             --{BOUNDARY}--\r\n"
        );
        let t = format!("multipart/form-data; boundary={BOUNDARY}");
        (req("POST", Some(&t), None, &body), vec![d])
    });
    prop_oneof![get, json, batch, form, graphql, upload]
}

fn req(method: &'static str, content_type: Option<&str>, query: Option<String>, body: &str) -> Req {
    Req {
        method,
        content_types: content_type.map(str::to_owned).into_iter().collect(),
        query,
        body: body.as_bytes().to_vec(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Property 1: a write any reference reader runs is never judged `Query`.
    #[test]
    fn no_reader_runs_a_write_the_judge_lets_through(r in request()) {
        let runs = reference::all(&r);
        if runs.iter().any(|d| is_write(d)) {
            let got = judged(&r);
            prop_assert_ne!(got, Ok(Query), "{:?}\nruns {:?}", r, runs);
        }
    }

    /// Property 2: honest requests are judged exactly, and the reference
    /// reads them (so property 1 is not vacuous for lack of readings).
    #[test]
    fn honest_requests_are_judged_exactly(h in honest()) {
        let (r, docs) = h;
        let want = if docs.iter().any(|d| is_write(d)) { Other } else { Query };
        prop_assert_eq!(judged(&r), Ok(want), "{:?}", r);
        let runs = reference::all(&r);
        for d in docs {
            prop_assert!(runs.iter().any(|s| s == d), "{:?} {:?}", r, runs);
        }
    }
}

/// Property 3: the generator reaches the differential main missed (a write
/// run by some reader, `Query` to main's reading), and both verdicts
/// occur, so property 1 has cases on both sides.
#[test]
fn the_generator_reaches_the_bug_class() {
    let mut runner = TestRunner::deterministic();
    let strategy = request();
    let (mut missed_on_main, mut writes, mut queries) = (0, 0, 0);
    for _ in 0..4000 {
        let r = strategy.new_tree(&mut runner).unwrap().current();
        let write = reference::all(&r).iter().any(|d| is_write(d));
        writes += usize::from(write);
        missed_on_main += usize::from(write && main_before(&r) == Query);
        queries += usize::from(judged(&r) == Ok(Query));
    }
    // Deterministic: the same 4,000 requests every run.
    assert!(
        missed_on_main >= 5,
        "{missed_on_main} requests main let through"
    );
    assert!(writes >= 200, "{writes} requests run a write");
    assert!(queries >= 100, "{queries} requests judged Query");
}

/// The issue's request: a JSON body sent as a form. Strapi's reading (qs)
/// runs the mutation; main read the body as JSON and let it through.
#[test]
fn the_issues_request() {
    let body =
        r#"{"query":"{ articles { title } }","x":"&query=mutation(...){createArticle(...)}&..."}"#;
    let form = "application/x-www-form-urlencoded";
    let r = req("POST", Some(form), None, body);
    assert_eq!(
        reference::strapi(&r),
        vec!["mutation(...){createArticle(...)}"]
    );
    assert_eq!(main_before(&r), Query);
    assert_eq!(judged(&r), Ok(Other));

    let write = pct(WRITES[1], true);
    let smuggled = format!(r#"{{"query":"{{ articles {{ title }} }}","x":"&query={write}&y="}}"#);
    let rows: &[(&str, Option<&str>, Result<GraphQlOperation, Unjudgeable>)] = &[
        ("POST", Some(form), Ok(Other)),
        (
            "POST",
            Some("Application/X-WWW-Form-Urlencoded; charset=UTF-8"),
            Ok(Other),
        ),
        ("PUT", Some(form), Ok(Other)),
        // As JSON, every reader runs the query only.
        ("POST", Some("application/json"), Ok(Query)),
        ("POST", None, Err(Unjudgeable::NoMediaType)),
        (
            "POST",
            Some("text/plain"),
            Err(Unjudgeable::UnknownMediaType),
        ),
        (
            "POST",
            Some("application/x-www-form-urlencoded; charset=utf-16le"),
            Err(Unjudgeable::Charset),
        ),
        (
            "GET",
            Some(form),
            Err(Unjudgeable::NoDocument(
                authgate::graphql::Reading::QueryString,
            )),
        ),
    ];
    for (method, t, want) in rows {
        let r = req(method, *t, None, &smuggled);
        assert_eq!(&judged(&r), want, "{method} {t:?}");
    }
    // The reference agrees that the form reading runs the write.
    let r = req("POST", Some(form), None, &smuggled);
    assert_eq!(reference::strapi(&r), vec![WRITES[1]]);
    assert_eq!(main_before(&r), Query);
    // The same write in the URL of a POST (express-graphql reads it first).
    let mut r = req(
        "POST",
        Some("application/json"),
        None,
        r#"{"query":"{ a }"}"#,
    );
    r.query = Some(format!("query={write}"));
    assert_eq!(reference::express(&r), vec![WRITES[1]]);
    assert_eq!(judged(&r), Ok(Other));
}
