//! Secrets in the config: values that are never printed.
//!
//! Secrets (`tokens.salt`, `tokens.encryption_key`, `identity.signing_key`,
//! passwords inside URLs) are wrapped in [`Secret`], whose `Debug` and
//! `Serialize` print `<redacted>`; a URL that may carry a password is a
//! [`SecretUrl`], printed with the password replaced. So `check-config` and
//! any `{:?}` of a config can show everything else.

use serde::{Deserialize, Serialize};

/// A secret string: never printed.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Drop for Secret {
    // Secrets do not linger in freed memory.
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// A URL whose password is redacted when printed.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(pub String);

impl SecretUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced: `user:password@` in URL form,
    /// `password=...` in libpq key=value form.
    pub fn redacted(&self) -> String {
        let s = &self.0;
        let Some(scheme_end) = s.find("://") else {
            return s
                .split(' ')
                .map(|part| {
                    if part.starts_with("password=") {
                        "password=<redacted>"
                    } else {
                        part
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
        };
        let rest = &s[scheme_end + 3..];
        let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
        match authority
            .rfind('@')
            .and_then(|at| authority[..at].find(':').map(|c| (c, at)))
        {
            Some((colon, at)) => {
                format!(
                    "{}{}:<redacted>{}",
                    &s[..scheme_end + 3],
                    &authority[..colon],
                    &rest[at..]
                )
            }
            None => s.clone(),
        }
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for SecretUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}
