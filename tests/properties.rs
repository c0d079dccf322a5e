//! Property tests of the parsing that decides: path normalisation and
//! classification, the Authorization header, the GraphQL sniffer.

// Test code: a failure here is the test failing, so it may unwrap.
#![allow(clippy::unwrap_used)]

mod reference;

use authgate::authz::parse_authorization;
use authgate::route::{normalise, RouteClass, RouteSpec, RouteTable};
use http::Method;
use proptest::prelude::*;

fn table() -> RouteTable {
    let spec = RouteSpec {
        admin_prefixes: ["/admin", "/content-manager", "/upload"]
            .map(String::from)
            .to_vec(),
        content_api_prefixes: vec!["/api".into(), "/graphql".into()],
        graphql_path: Some("/graphql".into()),
        ..Default::default()
    };
    RouteTable::build(&spec).unwrap()
}

/// Paths built from the pieces attacks are made of.
fn path_strategy() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("admin".to_owned()),
        Just("ADMIN".to_owned()),
        Just("api".to_owned()),
        Just("..".to_owned()),
        Just(".".to_owned()),
        Just("".to_owned()),
        Just("%2e".to_owned()),
        Just("%2E%2e".to_owned()),
        Just("%61dmin".to_owned()),
        Just("%2f".to_owned()),
        Just("%5c".to_owned()),
        Just("%00".to_owned()),
        Just("%c0%ae".to_owned()),
        Just("a;b".to_owned()),
        Just("admin.".to_owned()),
        Just("%25".to_owned()),
        "[a-zA-Z0-9._~;%-]{0,6}",
    ];
    proptest::collection::vec(piece, 0..8).prop_map(|v| format!("/{}", v.join("/")))
}

/// Paths from the pieces attackers combine: `%`, `25`, `2f`, `5c`, `2e`,
/// `u00`, `.`, `;`, `/`, `\`, every prefix, case changes.
fn attack_path_strategy() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("%".to_owned()),
        Just("25".to_owned()),
        Just("2f".to_owned()),
        Just("2F".to_owned()),
        Just("5c".to_owned()),
        Just("2e".to_owned()),
        Just("3b".to_owned()),
        Just("3f".to_owned()),
        Just("u00".to_owned()),
        Just("61".to_owned()),
        Just("41".to_owned()),
        Just("20".to_owned()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just(";".to_owned()),
        Just("/".to_owned()),
        Just("\\".to_owned()),
        Just("admin".to_owned()),
        Just("ADMIN".to_owned()),
        Just("dmin".to_owned()),
        Just("api".to_owned()),
        Just("pi".to_owned()),
        Just("upload".to_owned()),
        Just("content-manager".to_owned()),
        Just("graphql".to_owned()),
        Just("users".to_owned()),
        Just("articles".to_owned()),
        Just("x".to_owned()),
    ];
    proptest::collection::vec(piece, 1..12).prop_map(|v| format!("/{}", v.concat()))
}

fn reference_table() -> &'static RouteTable {
    static T: std::sync::OnceLock<RouteTable> = std::sync::OnceLock::new();
    T.get_or_init(reference::check::table)
}

fn method_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("GET".to_owned()),
        Just("POST".to_owned()),
        Just("DELETE".to_owned()),
        Just("PROPFIND".to_owned()),
        Just("SEARCH".to_owned()),
    ]
}

/// `Authorization` values from the pieces that split differently: schemes,
/// every blank some reader splits on (and 0x80-0xFF), keys, extra words.
fn authorization_strategy() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"Bearer".to_vec()),
        Just(b"bearer".to_vec()),
        Just(b"Basic".to_vec()),
        Just(b" ".to_vec()),
        Just(b"  ".to_vec()),
        Just(b"\t".to_vec()),
        Just(vec![0x0b]),
        Just(vec![0x0c]),
        Just(vec![0x1c]),
        Just(vec![0x85]),
        Just(vec![0xa0]),
        Just(b",".to_vec()),
        Just(b"\"".to_vec()),
        Just(b":".to_vec()),
        Just(b"=".to_vec()),
        Just(b"a.b.c".to_vec()),
        "[0-9a-f]{20,40}".prop_map(String::into_bytes),
        (0x80u8..=0xff).prop_map(|b| vec![b]),
    ];
    proptest::collection::vec(piece, 1..6).prop_map(|v| v.concat())
}

fn first_key(p: &str) -> String {
    let seg = p.split('/').find(|s| !s.is_empty()).unwrap_or("");
    seg.to_ascii_lowercase()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn normalising_twice_equals_normalising_once(p in path_strategy()) {
        if let Ok(once) = normalise(&p) {
            let twice = normalise(&once).expect("a normal path normalises");
            prop_assert_eq!(twice.as_ref(), once.as_ref());
        }
    }

    #[test]
    fn normal_paths_have_no_dot_segments_or_encoded_separators(p in path_strategy()) {
        if let Ok(n) = normalise(&p) {
            prop_assert!(n.starts_with('/'));
            prop_assert!(!n.contains("//"));
            for seg in n.split('/') {
                prop_assert!(seg != "." && seg != "..", "dot segment in {}", n);
            }
            let lower = n.to_ascii_lowercase();
            prop_assert!(!lower.contains("%2f") && !lower.contains("%5c") && !lower.contains("%00") && !n.contains('\\'));
        }
    }

    #[test]
    fn classification_agrees_with_the_forwarded_path(p in path_strategy()) {
        let t = table();
        if let Ok(n) = normalise(&p) {
            let class = t.classify(&Method::GET, &n).class;
            let key = first_key(&n);
            let key = key.split(';').next().unwrap_or("").trim_end_matches(['.', ' ']);
            // A content-API route never forwards a path under an admin prefix,
            // and an admin-looking first segment is never unprotected.
            if class == RouteClass::ContentApi {
                prop_assert!(!["admin", "content-manager", "upload"].contains(&key), "{} -> {}", p, n);
            }
            if key == "admin" {
                prop_assert_eq!(class, RouteClass::Admin, "{} -> {}", p, n);
            }
        }
    }

    /// One reading of `Authorization`: whenever a real reader (Strapi,
    /// passport, Python, DRF, Laravel, a PHP regex) would take a key from
    /// the value, authgate takes the same key or refuses the request.
    #[test]
    fn authorization_has_one_reading(v in authorization_strategy()) {
        let r = reference::check::authorization(&v);
        prop_assert!(r.is_ok(), "{}", r.unwrap_err());
    }

    /// The parser's fast path agrees with its general rule: the same value
    /// with its blank written as a tab (which skips the fast path) reads
    /// the same.
    #[test]
    fn authorization_fast_path_agrees_with_the_general_rule(
        scheme in "(Bearer|bearer|BEARER)",
        value in "[a-zA-Z0-9._~+/=-]{1,80}",
    ) {
        let fast = format!("{scheme} {value}");
        let slow = format!("{scheme}\t{value}");
        prop_assert_eq!(
            parse_authorization(std::iter::once(fast.as_bytes())),
            parse_authorization(std::iter::once(slow.as_bytes()))
        );
    }

    /// The security rule of issue 12, as a property: either authgate
    /// refuses the path, or every reading the reference reader finds has
    /// the route authgate judged (tests/reference/check.rs).
    #[test]
    fn no_reading_crosses_from_the_judged_route(p in attack_path_strategy(), m in method_strategy()) {
        let method = Method::from_bytes(m.as_bytes()).expect("method");
        let r = reference::check::path(reference_table(), &method, &p);
        prop_assert!(r.is_ok(), "{}", r.unwrap_err());
    }

    /// The GraphQL sniffer against the grammar: for documents built from
    /// definitions (with keywords hidden in strings, block strings,
    /// comments, arguments and field names), it answers `Query` exactly
    /// when every operation is a query, and never for a mutation or a
    /// subscription.
    #[test]
    fn graphql_sniffer_reads_the_operations_of_a_document(doc in graphql_document_strategy()) {
        let (text, ops) = doc;
        let want = if !ops.is_empty() && ops.iter().all(|o| o.op == Op::Query) {
            authgate::authz::GraphQlOperation::Query
        } else {
            authgate::authz::GraphQlOperation::Other
        };
        prop_assert_eq!(authgate::graphql::document(&text), want, "{:?} {:?}", text, ops);
    }

    /// A document cut anywhere is never called a query while a whole
    /// mutation or subscription (keyword through closing brace) is in the
    /// part kept: what the CMS could execute as a write is never let
    /// through as a read.
    #[test]
    fn graphql_sniffer_fails_closed_on_a_cut_document(doc in graphql_document_strategy(), cut in 0.0f64..1.0) {
        let (text, ops) = doc;
        let mut at = (text.len() as f64 * cut) as usize;
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        if authgate::graphql::document(&text[..at]) == authgate::authz::GraphQlOperation::Query {
            let write_kept = ops.iter().any(|o| o.op != Op::Query && o.body_end <= at);
            prop_assert!(!write_kept, "{:?} {:?}", &text[..at], ops);
        }
    }
}

/// One generated operation: its kind and where its selection set ends.
#[derive(Debug, Clone, Copy)]
struct GenOp {
    op: Op,
    body_end: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Query,
    Mutation,
    Subscription,
}

/// Blanks and comments between tokens, some holding keywords.
fn graphql_gap() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(" ".to_owned()),
        Just("\n".to_owned()),
        Just(", ".to_owned()),
        Just("\t".to_owned()),
        Just(" # mutation { x }\n".to_owned()),
        Just("\n# subscription\n".to_owned()),
    ]
}

/// A selection set: fields (some named like keywords) with arguments
/// whose strings hold keywords and braces, nested up to three deep.
fn graphql_selection() -> impl Strategy<Value = String> {
    let field = (
        prop_oneof![
            Just("a"),
            Just("title"),
            Just("mutation"),
            Just("subscription"),
            Just("query"),
            Just("fragment")
        ],
        prop_oneof![
            Just(String::new()),
            Just(r#"(where: "mutation { x }")"#.to_owned()),
            Just("(text: \"\"\"mutation\n{ \\\"\"\" }\"\"\")".to_owned()),
            Just("(n: [1, 2], o: {k: \"}\"})".to_owned()),
        ],
        graphql_gap(),
    )
        .prop_map(|(name, args, gap)| format!("{name}{args}{gap}"));
    let leaf = proptest::collection::vec(field, 1..4).prop_map(|f| format!("{{ {} }}", f.concat()));
    leaf.prop_recursive(3, 12, 3, |inner| {
        (
            proptest::collection::vec(
                prop_oneof![
                    Just("a ".to_owned()),
                    inner.prop_map(|s| format!("sub {s} "))
                ],
                1..4,
            ),
            graphql_gap(),
        )
            .prop_map(|(items, gap)| format!("{{{gap}{}}}", items.concat()))
    })
}

/// A document of 0..4 definitions, with the operations it holds in order.
fn graphql_document_strategy() -> impl Strategy<Value = (String, Vec<GenOp>)> {
    let definition = (
        0u8..6,
        "[A-Z][a-zA-Z0-9_]{0,6}",
        prop_oneof![Just(""), Just(r#"($id: ID = "mutation", $n: Int)"#)],
        graphql_selection(),
        graphql_gap(),
    )
        .prop_map(|(kind, name, vars, body, gap)| {
            let (head, op) = match kind {
                0 => (String::new(), Some(Op::Query)),
                1 => (format!("query{gap}"), Some(Op::Query)),
                2 => (format!("query {name}{vars}{gap}"), Some(Op::Query)),
                3 => (format!("mutation {name}{vars}{gap}"), Some(Op::Mutation)),
                4 => (format!("subscription{gap}"), Some(Op::Subscription)),
                _ => (format!("fragment {name} on Article{gap}"), None),
            };
            (head, body, gap, op)
        });
    (proptest::collection::vec(definition, 0..4), graphql_gap()).prop_map(|(defs, lead)| {
        let mut text = lead;
        let mut ops = Vec::new();
        for (head, body, gap, op) in defs {
            text.push_str(&head);
            text.push_str(&body);
            if let Some(op) = op {
                ops.push(GenOp {
                    op,
                    body_end: text.len(),
                });
            }
            text.push_str(&gap);
        }
        (text, ops)
    })
}
