//! Web sessions: the signed-in admin token stays on the server.
//!
//! Signing in with an admin token creates a session: a random 256-bit id
//! in an `HttpOnly`, `SameSite=Strict` cookie (`Secure` and `__Host-`
//! prefixed when the page is served over HTTPS, see [`cookie_name`]),
//! mapped in memory to the token's key, a CSRF token and
//! one-time messages (flash). The page never sees the key again, and
//! nothing lands in the browser's storage. The map is keyed by the SHA-256
//! of the id, so even a memory dump does not hand out usable cookies.
//!
//! A session ends after `[management] session_ttl` without a request, on
//! sign-out, on restart (sessions are per process: sign in again), and as
//! soon as its token stops authenticating (every request re-checks it).
//!
//! CSRF: every form carries the session's synchronizer token, compared in
//! constant time. The sign-in form, which has no session yet, uses a
//! double-submit cookie instead. `SameSite=Strict` and an `Origin` check
//! (see `ui`) stand behind both.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::model::TokenKind;

/// The session cookie.
pub const SESSION_COOKIE: &str = "authgate_session";
/// The sign-in form's double-submit cookie.
pub const LOGIN_COOKIE: &str = "authgate_login";
/// Sessions kept at most; beyond it the oldest is dropped.
const MAX_SESSIONS: usize = 10_000;

/// A message shown once, on the next page.
#[derive(Debug, Clone)]
pub enum Flash {
    /// A key to copy now: just created or regenerated (`fresh`), or viewed.
    Key {
        token_id: i64,
        kind: TokenKind,
        key: Zeroizing<String>,
        fresh: bool,
    },
    Notice(String),
    Error(String),
}

struct Session {
    key: Zeroizing<String>,
    csrf: String,
    expires: Instant,
    flash: Vec<Flash>,
}

/// What a request learns from its session.
#[derive(Debug, Clone)]
pub struct Current {
    /// The id as the cookie carries it.
    pub id: String,
    /// The admin token's key.
    pub key: Zeroizing<String>,
    pub csrf: String,
}

/// The in-memory session store.
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
    ttl: Duration,
}

/// 32 random bytes as hex.
pub fn random_token() -> Result<String, crate::token::TokenError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| crate::token::TokenError::Random(e.to_string()))?;
    Ok(hex::encode(b))
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// Constant-time string equality (CSRF tokens).
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl Sessions {
    pub fn new(ttl: Duration) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start a session for `key`; returns the cookie value.
    pub fn create(&self, key: Zeroizing<String>) -> Result<String, crate::token::TokenError> {
        let id = random_token()?;
        let csrf = random_token()?;
        let now = Instant::now();
        let mut map = self.lock();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(
            digest(&id),
            Session {
                key,
                csrf,
                expires: now + self.ttl,
                flash: Vec::new(),
            },
        );
        Ok(id)
    }

    /// The live session `id`, its expiry pushed back; `None` when unknown
    /// or expired (an expired one is dropped).
    pub fn current(&self, id: &str) -> Option<Current> {
        let now = Instant::now();
        let d = digest(id);
        let mut map = self.lock();
        match map.get_mut(&d) {
            Some(s) if s.expires > now => {
                s.expires = now + self.ttl;
                Some(Current {
                    id: id.to_owned(),
                    key: s.key.clone(),
                    csrf: s.csrf.clone(),
                })
            }
            Some(_) => {
                map.remove(&d);
                None
            }
            None => None,
        }
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(&digest(id));
    }

    pub fn push_flash(&self, id: &str, f: Flash) {
        if let Some(s) = self.lock().get_mut(&digest(id)) {
            s.flash.push(f);
        }
    }

    /// The messages waiting for the next page (removed).
    pub fn take_flash(&self, id: &str) -> Vec<Flash> {
        self.lock()
            .get_mut(&digest(id))
            .map(|s| std::mem::take(&mut s.flash))
            .unwrap_or_default()
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A cookie's name as set and read: with the `__Host-` prefix when the page
/// is served over HTTPS (the listener's TLS, or a TLS-terminating ingress
/// in `management.trusted_proxies` saying `X-Forwarded-Proto: https`).
/// The browser then insists on `Secure`, `Path=/` and no `Domain`, so no
/// other host, subdomain or plain-HTTP page can set or shadow it.
pub fn cookie_name(base: &str, secure: bool) -> String {
    if secure {
        format!("__Host-{base}")
    } else {
        base.to_owned()
    }
}

/// A `Set-Cookie` value: host-only, whole site, never readable by scripts.
pub fn set_cookie(name: &str, value: &str, secure: bool, max_age: Option<u64>) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if let Some(s) = max_age {
        c.push_str(&format!("; Max-Age={s}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_cookies_are_host_prefixed_and_secure() {
        assert_eq!(cookie_name(SESSION_COOKIE, false), "authgate_session");
        let name = cookie_name(SESSION_COOKIE, true);
        assert_eq!(name, "__Host-authgate_session");
        let c = set_cookie(&name, "v", true, None);
        assert!(c.starts_with("__Host-authgate_session=v; Path=/;"), "{c}");
        assert!(c.ends_with("; Secure") && !c.contains("Domain"), "{c}");
    }

    #[test]
    fn sessions_live_and_expire() {
        let s = Sessions::new(Duration::from_millis(50));
        let id = s.create(Zeroizing::new("k".repeat(256))).unwrap();
        assert_eq!(id.len(), 64);
        let c = s.current(&id).expect("live");
        assert_eq!(c.key.as_str(), "k".repeat(256));
        assert_eq!(c.csrf.len(), 64);
        assert!(s.current("nope").is_none());
        s.push_flash(&id, Flash::Notice("hi".into()));
        assert_eq!(s.take_flash(&id).len(), 1);
        assert!(s.take_flash(&id).is_empty(), "flash is shown once");
        std::thread::sleep(Duration::from_millis(80));
        assert!(s.current(&id).is_none(), "expired");
        let id = s.create(Zeroizing::new("k".into())).unwrap();
        s.remove(&id);
        assert!(s.current(&id).is_none(), "signed out");
    }

    #[test]
    fn cookies() {
        let mut h = http::HeaderMap::new();
        h.append(
            http::header::COOKIE,
            "a=1; authgate_session=abc".parse().unwrap(),
        );
        h.append(http::header::COOKIE, "b=2".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
        assert_eq!(
            set_cookie("n", "v", true, Some(0)),
            "n=v; Path=/; HttpOnly; SameSite=Strict; Max-Age=0; Secure"
        );
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
