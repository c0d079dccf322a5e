//! Token keys: generation, the stored hash, and the viewable encrypted copy.
//!
//! A key is 128 random bytes from the OS, written as 256 lower-case hex
//! characters, the shape Strapi issues. The database never holds the key
//! itself, only `access_key` = HMAC-SHA512(key = salt, msg = key) in hex.
//!
//! Why an HMAC and not a plain SHA-512: the salt is a server secret, so a
//! leaked table cannot be checked against guessed keys without it, and the
//! construction is exactly Strapi's, so a Strapi database's tokens verify
//! unchanged (the salt's UTF-8 bytes are the HMAC key, never base64-decoded).
//! Keys carry 1024 bits of entropy, so no slow password hash is needed.
//!
//! The HMAC key schedule is computed once in [`Hasher::new`] and cloned per
//! request: hashing a key costs two SHA-512 compressions over the message,
//! not a re-derivation of the key.
//!
//! When an encryption key is configured, the plaintext is also stored as
//! `v1:<iv hex>:<ciphertext hex>:<tag hex>` (AES-256-GCM with a 16-byte IV,
//! AES key = SHA-256 of the configured key), Strapi's format, so it can be
//! shown again to whoever may view it.

use aes_gcm::aead::consts::U16;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::aes::Aes256;
use aes_gcm::AesGcm;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

/// HMAC key schedules for keys of any length, built the way RFC 2104 §2
/// says (a key longer than the hash's block is hashed first, a shorter one
/// padded with zeros) and handed to the infallible fixed-size constructor:
/// `new_from_slice` accepts any length too, but says so only in a
/// `Result` every caller would have to carry.
macro_rules! hmac_of_any_key {
    ($name:ident, $hash:ty) => {
        pub fn $name(key: &[u8]) -> Hmac<$hash> {
            let mut block = hmac::digest::Key::<Hmac<$hash>>::default();
            if key.len() <= block.len() {
                block[..key.len()].copy_from_slice(key);
            } else {
                let digest = <$hash>::digest(key);
                block[..digest.len()].copy_from_slice(&digest);
            }
            <Hmac<$hash> as hmac::KeyInit>::new(&block)
        }
    };
}
hmac_of_any_key!(hmac_sha256, Sha256);
hmac_of_any_key!(hmac_sha512, Sha512);

/// Number of random bytes in a key.
pub const KEY_BYTES: usize = 128;
/// Length of a key in hex characters.
pub const KEY_HEX_LEN: usize = KEY_BYTES * 2;
/// Length of a stored hash in raw bytes (SHA-512 output).
pub const HASH_BYTES: usize = 64;

/// Errors of the token crypto boundary.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
    #[error("encrypted key is not in the `v1:<iv>:<ciphertext>:<tag>` format")]
    EncryptedFormat,
    #[error("encrypted key could not be decrypted (wrong encryption key or corrupted value)")]
    Decrypt,
    #[error("the key could not be encrypted (longer than AES-GCM takes)")]
    Encrypt,
}

/// A raw token hash, the cache key. Hex-encoding happens only at the store.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; HASH_BYTES]);

/// A `Hasher` for keys that already are digests: 8 bytes of an HMAC under
/// the secret salt, written with `write_u64`, are their own hash. They are
/// uniformly distributed and a client cannot choose them (it would need the
/// salt), so hash tables keyed by them need no SipHash to resist flooding.
#[derive(Default)]
pub struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    /// Only reached if a key is hashed as bytes: mix them in all the same.
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// Builds [`DigestHasher`]s.
pub type BuildDigestHasher = std::hash::BuildHasherDefault<DigestHasher>;

impl TokenHash {
    /// Lower-case hex, the form stored in `access_key`.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parse the stored hex form (used by invalidation events).
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; HASH_BYTES];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }
}

impl std::fmt::Debug for TokenHash {
    // Never print a hash: it is as good as a key against a leaked salt.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// Computes `access_key` values with a precomputed HMAC key schedule.
#[derive(Clone)]
pub struct Hasher {
    mac: Hmac<Sha512>,
}

impl Hasher {
    pub fn new(salt: &str) -> Self {
        Self {
            mac: hmac_sha512(salt.as_bytes()),
        }
    }

    /// The raw hash of a key as sent by the client.
    pub fn hash(&self, key: &[u8]) -> TokenHash {
        let mut mac = self.mac.clone();
        mac.update(key);
        let out = mac.finalize().into_bytes();
        let mut h = [0u8; HASH_BYTES];
        h.copy_from_slice(&out);
        TokenHash(h)
    }

    /// The hex hash, as stored in the database.
    pub fn hash_hex(&self, key: &str) -> String {
        self.hash(key.as_bytes()).to_hex()
    }
}

/// The lengths of key authgate accepts: its own keys are 256 characters,
/// and keys brought along from a legacy CMS (`token import`) may be as
/// short as 20.
pub const KEY_LEN: std::ops::RangeInclusive<usize> = 20..=512;

/// Why a value cannot be a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyShapeError {
    #[error("a key must be 20 to 512 characters long, not {0}")]
    Length(usize),
    #[error(
        "a key may hold only letters, digits and - . _ ~ + / = (what a Bearer credential can carry)"
    )]
    Character,
    #[error("a key must not look like a JWT (three dot-separated base64url parts): it would be read as a CMS session")]
    JwtShaped,
}

/// Check that `value` can be a key: [`KEY_LEN`] characters of RFC 7235
/// `token68` (anything else is refused as a malformed `Authorization`
/// before any lookup), and not JWT-shaped (that is a CMS session).
pub fn check_key_shape(value: &[u8]) -> Result<(), KeyShapeError> {
    if !KEY_LEN.contains(&value.len()) {
        return Err(KeyShapeError::Length(value.len()));
    }
    if !value.iter().all(|b| is_token68(*b)) {
        return Err(KeyShapeError::Character);
    }
    if looks_like_jwt(value) {
        return Err(KeyShapeError::JwtShaped);
    }
    Ok(())
}

/// True when `value` has the shape of a key ([`check_key_shape`]). A value
/// of any other shape cannot match a stored hash, so it is refused without
/// a lookup.
pub fn looks_like_key(value: &[u8]) -> bool {
    check_key_shape(value).is_ok()
}

/// RFC 7235 `token68`: ALPHA / DIGIT / `-._~+/` and `=`.
pub fn is_token68(b: u8) -> bool {
    b.is_ascii_alphanumeric() | matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
}

/// Three non-empty base64url segments joined by dots: a JWT, which the CMS
/// reads as a session.
pub fn looks_like_jwt(v: &[u8]) -> bool {
    // Cheap reject first: a key (hex, no dots) is not a JWT. Counted in
    // byte-wide lanes, a block at a time, which the compiler vectorises.
    let dots: usize = v
        .chunks(255)
        .map(|c| usize::from(c.iter().fold(0u8, |n, b| n + u8::from(*b == b'.'))))
        .sum();
    if dots != 2 {
        return false;
    }
    let mut n = 0;
    for seg in v.split(|b| *b == b'.') {
        n += 1;
        if n > 3
            || seg.is_empty()
            || !seg
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            return false;
        }
    }
    n == 3
}

/// A fresh plaintext key from the OS CSPRNG.
pub fn generate_key() -> Result<String, TokenError> {
    let mut raw = [0u8; KEY_BYTES];
    getrandom::fill(&mut raw).map_err(|e| TokenError::Random(e.to_string()))?;
    Ok(hex::encode(raw))
}

type Aes256Gcm16 = AesGcm<Aes256, U16>;

/// Encrypts and decrypts keys in Strapi's viewable-key format.
#[derive(Clone)]
pub struct KeyCipher {
    cipher: Aes256Gcm16,
}

impl KeyCipher {
    pub fn new(encryption_key: &str) -> Self {
        // AES-256 takes exactly the 32 bytes SHA-256 gives.
        let key: [u8; 32] = Sha256::digest(encryption_key.as_bytes()).into();
        Self {
            cipher: Aes256Gcm16::new(&key.into()),
        }
    }

    /// Encrypt with a fresh random IV.
    pub fn encrypt(&self, plaintext: &str) -> Result<String, TokenError> {
        let mut iv = [0u8; 16];
        getrandom::fill(&mut iv).map_err(|e| TokenError::Random(e.to_string()))?;
        self.encrypt_with_iv(plaintext, &iv)
    }

    /// Encrypt with a given IV (deterministic; for test vectors). GCM
    /// refuses only plaintexts past 64 GiB.
    pub fn encrypt_with_iv(&self, plaintext: &str, iv: &[u8; 16]) -> Result<String, TokenError> {
        let mut buf = plaintext.as_bytes().to_vec();
        let tag = self
            .cipher
            .encrypt_in_place_detached(iv.into(), b"", &mut buf)
            .map_err(|_| TokenError::Encrypt)?;
        Ok(format!(
            "v1:{}:{}:{}",
            hex::encode(iv),
            hex::encode(&buf),
            hex::encode(tag)
        ))
    }

    pub fn decrypt(&self, encrypted: &str) -> Result<String, TokenError> {
        let mut parts = encrypted.split(':');
        let (Some("v1"), Some(iv), Some(ct), Some(tag), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(TokenError::EncryptedFormat);
        };
        let mut ivb = [0u8; 16];
        let mut tagb = [0u8; 16];
        hex::decode_to_slice(iv, &mut ivb).map_err(|_| TokenError::EncryptedFormat)?;
        hex::decode_to_slice(tag, &mut tagb).map_err(|_| TokenError::EncryptedFormat)?;
        let mut buf = hex::decode(ct).map_err(|_| TokenError::EncryptedFormat)?;
        self.cipher
            .decrypt_in_place_detached((&ivb).into(), b"", &mut buf, (&tagb).into())
            .map_err(|_| TokenError::Decrypt)?;
        String::from_utf8(buf).map_err(|_| TokenError::Decrypt)
    }
}

#[cfg(test)]
mod tests;
