//! Unit tests of `token`.

use super::*;

#[test]
fn any_key_hmac_is_the_librarys() {
    use proptest::prelude::*;
    proptest!(|(key in proptest::collection::vec(any::<u8>(), 0..300), msg in proptest::collection::vec(any::<u8>(), 0..64))| {
        let mut ours = hmac_sha512(&key);
        let mut theirs = <Hmac<Sha512> as hmac::KeyInit>::new_from_slice(&key).unwrap();
        ours.update(&msg);
        theirs.update(&msg);
        prop_assert_eq!(ours.finalize().into_bytes(), theirs.finalize().into_bytes());
        let mut ours = hmac_sha256(&key);
        let mut theirs = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&key).unwrap();
        ours.update(&msg);
        theirs.update(&msg);
        prop_assert_eq!(ours.finalize().into_bytes(), theirs.finalize().into_bytes());
    });
}

#[test]
fn spec_hash_vectors() {
    assert_eq!(
        Hasher::new("example-salt").hash_hex("abc"),
        "c082dea190f4892a3beeefb7bd05255599f38226c47c3344fdebd0cdb956ba7df825bfc133276277238fb7a76f9d960788a383c6079fc7441b1caa05f082649e"
    );
    // A base64-looking salt is used as its UTF-8 bytes, not decoded.
    assert_eq!(
        Hasher::new("c2FsdA==").hash_hex("abc"),
        "f95f50ac9a964a61c4fbe0ea9b7900498bc1f58aeec6378677405bc6aabc3d4992ddaeb8d1bb7561f56c1f7f68add80696fc01260326bfb95c8308134991bbe9"
    );
}

#[test]
fn rfc4231_case_2() {
    // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
    assert_eq!(
        Hasher::new("Jefe").hash_hex("what do ya want for nothing?"),
        "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
    );
}

#[test]
fn hash_matches_openssl() {
    // Computed independently by the openssl binary, when it is installed.
    let key = "0123456789abcdef".repeat(16);
    let out = std::process::Command::new("openssl")
        .args(["dgst", "-sha512", "-hmac", "openssl-salt", "-r"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(key.as_bytes())?;
            child.wait_with_output()
        });
    let out = out.expect("openssl must be installed for this test (apt install openssl)");
    let text = String::from_utf8(out.stdout).expect("utf8");
    let expected = text.split_whitespace().next().expect("digest");
    assert_eq!(Hasher::new("openssl-salt").hash_hex(&key), expected);
}

#[test]
fn upper_cased_key_hashes_differently() {
    let h = Hasher::new("s");
    let key = "ab".repeat(128);
    assert_ne!(h.hash_hex(&key), h.hash_hex(&key.to_uppercase()));
}

#[test]
fn key_shape() {
    let key = generate_key().unwrap();
    assert_eq!(key.len(), 256);
    assert!(looks_like_key(key.as_bytes()));
    assert_ne!(generate_key().unwrap(), key);
    // Keys brought along from a legacy CMS: any token68 shape of 20 to
    // 512 characters that is not a JWT.
    let upper = key.to_uppercase();
    let rows: &[(&[u8], Result<(), KeyShapeError>)] = &[
        (upper.as_bytes(), Ok(())),
        (b"sk_live_0123456789abcdef", Ok(())),
        (b"aB3-._~+/=aB3-._~+/=", Ok(())),
        (&[b'k'; 512], Ok(())),
        (b"", Err(KeyShapeError::Length(0))),
        (b"0123456789abcdefghi", Err(KeyShapeError::Length(19))),
        (&[b'k'; 513], Err(KeyShapeError::Length(513))),
        (b"0123456789 abcdefghij", Err(KeyShapeError::Character)),
        (b"0123456789,abcdefghij", Err(KeyShapeError::Character)),
        (b"0123456789\"abcdefghij", Err(KeyShapeError::Character)),
        (
            "0123456789é-abcdefghij".as_bytes(),
            Err(KeyShapeError::Character),
        ),
        (
            b"eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl",
            Err(KeyShapeError::JwtShaped),
        ),
    ];
    for (value, want) in rows {
        assert_eq!(
            check_key_shape(value),
            *want,
            "{}",
            String::from_utf8_lossy(value)
        );
    }
}

#[test]
fn spec_encryption_vector() {
    let c = KeyCipher::new("example-encryption-key");
    let iv: [u8; 16] = core::array::from_fn(|i| i as u8);
    let enc = c.encrypt_with_iv("abc", &iv).unwrap();
    assert_eq!(
        enc,
        "v1:000102030405060708090a0b0c0d0e0f:bb2bc9:5dd25539e27d87d1566b56ad58ef1ff3"
    );
    assert_eq!(c.decrypt(&enc).unwrap(), "abc");
}

#[test]
fn encryption_round_trip_and_failures() {
    let c = KeyCipher::new("k1");
    let key = generate_key().unwrap();
    let enc = c.encrypt(&key).unwrap();
    assert_eq!(c.decrypt(&enc).unwrap(), key);
    assert!(matches!(
        KeyCipher::new("k2").decrypt(&enc),
        Err(TokenError::Decrypt)
    ));
    assert!(matches!(
        c.decrypt("v2:00:00:00"),
        Err(TokenError::EncryptedFormat)
    ));
    assert!(matches!(
        c.decrypt("v1:zz:00:00"),
        Err(TokenError::EncryptedFormat)
    ));
    assert!(matches!(
        c.decrypt(&format!("{enc}:x")),
        Err(TokenError::EncryptedFormat)
    ));
    let mut tampered = enc.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == '0' { '1' } else { '0' });
    assert!(matches!(c.decrypt(&tampered), Err(TokenError::Decrypt)));
}

#[test]
fn hash_hex_round_trip() {
    let h = Hasher::new("s").hash(b"k");
    assert_eq!(TokenHash::from_hex(&h.to_hex()), Some(h));
    assert_eq!(TokenHash::from_hex("zz"), None);
    assert_eq!(format!("{h:?}"), "TokenHash(..)");
}
