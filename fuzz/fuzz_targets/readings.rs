//! Issue 12's properties under a coverage-guided fuzzer: requests built
//! from the pieces attackers combine. Either authgate refuses, or every
//! reading of the reference reader (tests/reference) agrees with what it
//! judged; every key a real `Authorization` reader takes, authgate takes
//! too or refuses the request.
#![no_main]

use std::sync::OnceLock;

use authgate::route::RouteTable;
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/reference/mod.rs"]
mod reference;

const PATH_PIECES: [&str; 30] = [
    "%", "25", "2f", "2F", "5c", "2e", "3b", "3f", "23", "u00", "u002", "61", "41", "20", "00",
    ".", "..", ";", "/", "\\", "admin", "ADMIN", "dmin", "api", "pi", "upload", "content-manager",
    "users", "articles", "x",
];

const AUTH_PIECES: [&[u8]; 16] = [
    b"Bearer", b"bearer", b"Basic", b" ", b"  ", b"\t", b"\x0b", b"\x1c", b"\x85", b"\xa0",
    b",", b"\"", b"=", b"a.b.c", b"0123456789abcdef0123", b"\xff",
];

const METHODS: [&str; 6] = ["GET", "POST", "DELETE", "PROPFIND", "SEARCH", "TRACE"];

fn table() -> &'static RouteTable {
    static T: OnceLock<RouteTable> = OnceLock::new();
    T.get_or_init(reference::check::table)
}

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else { return };
    let method = http::Method::from_bytes(METHODS[usize::from(m) % METHODS.len()].as_bytes())
        .expect("method");
    let mut path = String::from("/");
    let mut auth = Vec::new();
    for &b in rest.iter().take(24) {
        path.push_str(PATH_PIECES[usize::from(b) % PATH_PIECES.len()]);
        auth.extend_from_slice(AUTH_PIECES[usize::from(b) % AUTH_PIECES.len()]);
    }
    if let Err(e) = reference::check::path(table(), &method, &path) {
        panic!("{e}");
    }
    if let Err(e) = reference::check::authorization(&auth) {
        panic!("{e}");
    }
    if let Err(e) = reference::check::authorization(rest) {
        panic!("{e}");
    }
});
