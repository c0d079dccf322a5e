//! The GraphQL operation sniffer: total on any body or query string.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = authgate::graphql::json_body(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let op = authgate::graphql::document(s);
        if op == authgate::authz::GraphQlOperation::Query {
            assert!(!s.trim_start().starts_with("mutation"));
        }
        let _ = authgate::graphql::query_string(s);
    }
});
