//! Path normalisation and classification: never panics, is idempotent, and
//! the class of a normal path agrees with its first segment.
#![no_main]

use std::sync::OnceLock;

use authgate::route::{normalise, RouteClass, RouteSpec, RouteTable};
use libfuzzer_sys::fuzz_target;

fn table() -> &'static RouteTable {
    static T: OnceLock<RouteTable> = OnceLock::new();
    T.get_or_init(|| {
        RouteTable::build(&RouteSpec {
            admin_prefixes: ["/admin", "/content-manager", "/upload"].map(String::from).to_vec(),
            content_api_prefixes: vec!["/api".into(), "/graphql".into()],
            graphql_path: Some("/graphql".into()),
            ..Default::default()
        })
        .expect("table")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let Ok(n) = normalise(s) else { return };
    let again = normalise(&n).expect("a normal path normalises again");
    assert_eq!(again, n);
    assert!(!n.contains("//") && !n.contains('\\'));
    for method in [http::Method::GET, http::Method::POST, http::Method::DELETE] {
        let r = table().classify(&method, &n);
        let first = n.split('/').find(|x| !x.is_empty()).unwrap_or("").to_ascii_lowercase();
        if first == "admin" {
            assert_eq!(r.class, RouteClass::Admin);
        }
        if r.class == RouteClass::ContentApi {
            assert!(first != "admin" && first != "upload" && first != "content-manager");
        }
    }
});
