//! The Authorization parser: total, and a token only for `bearer <one value>`.
#![no_main]

use authgate::authz::{parse_authorization, Credential};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Up to two header values, split at the first 0xff byte.
    let mut parts = data.splitn(2, |b| *b == 0xff);
    let values: Vec<&[u8]> = parts.by_ref().collect();
    match parse_authorization(values.iter().copied()) {
        Credential::Token(t) => {
            assert_eq!(values.len(), 1);
            let words: Vec<&[u8]> =
                values[0].split(|b| b.is_ascii_whitespace() || *b == 0x0b).filter(|w| !w.is_empty()).collect();
            assert_eq!(words.len(), 2);
            assert!(words[0].eq_ignore_ascii_case(b"bearer"));
            assert_eq!(words[1], t);
        }
        Credential::Conflicting => assert_eq!(values.len(), 2),
        Credential::Session | Credential::Anonymous => {}
    }
});
