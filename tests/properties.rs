//! Property tests of the parsing that decides: path normalisation and
//! classification, the Authorization header, the GraphQL sniffer.

use authgate::authz::{parse_authorization, Credential};
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

    #[test]
    fn authorization_parsing_is_total_and_strict(v in proptest::collection::vec(any::<u8>(), 0..300)) {
        match parse_authorization(std::iter::once(v.as_slice())) {
            Credential::Token(t) => {
                let parts: Vec<&[u8]> = v.split(|b| b.is_ascii_whitespace() || *b == 0x0b).filter(|p| !p.is_empty()).collect();
                prop_assert_eq!(parts.len(), 2);
                prop_assert!(parts[0].eq_ignore_ascii_case(b"bearer"));
                prop_assert_eq!(parts[1], t);
            }
            Credential::Session => prop_assert!(v.windows(1).any(|w| w == b".")),
            Credential::Anonymous | Credential::Conflicting => {}
        }
    }

    /// The parser's fast path agrees with Strapi's rule (split on blanks,
    /// exactly `bearer` and one value) on values shaped like real headers.
    #[test]
    fn authorization_fast_path_agrees_with_the_split_rule(
        scheme in "(Bearer|bearer|BEARER|Basic|Bearerx|Beare)",
        sep in "( |  |\t| \x0b|\x0b)",
        value in "[a-f0-9.A-Z_ -]{0,80}",
        lead in "( |)",
    ) {
        let header = format!("{lead}{scheme}{sep}{value}");
        let v = header.as_bytes();
        let parts: Vec<&[u8]> = v
            .split(|b| b.is_ascii_whitespace() || *b == 0x0b)
            .filter(|p| !p.is_empty())
            .collect();
        let expected = if parts.len() == 2
            && !v[0].is_ascii_whitespace()
            && parts[0].eq_ignore_ascii_case(b"bearer")
        {
            if authgate::authz::looks_like_jwt(parts[1]) {
                Credential::Session
            } else {
                Credential::Token(parts[1])
            }
        } else {
            Credential::Anonymous
        };
        prop_assert_eq!(parse_authorization(std::iter::once(v)), expected, "{:?}", header);
    }

    #[test]
    fn graphql_sniffer_never_calls_a_mutation_a_query(doc in "[ a-z{}()\"#\\n]{0,60}") {
        let op = authgate::graphql::document(&doc);
        if op == authgate::authz::GraphQlOperation::Query {
            // Outside strings and comments, no top-level mutation keyword.
            prop_assert!(!doc.trim_start().starts_with("mutation"));
            prop_assert!(!doc.trim_start().starts_with("subscription"));
        }
    }
}
