//! `[identity]`: the identity headers authgate adds to a forwarded request
//! (their name prefix), the key they are signed with, and whether the
//! client's `Authorization` goes on to the CMS.

use super::secret::Secret;
use super::{key_err, ConfigError, RawConfig};

#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// Lower-case.
    pub header_prefix: String,
    pub signing_key: Option<Secret>,
    pub forward_authorization: bool,
}

impl RawConfig {
    pub(super) fn compile_identity(&self) -> Result<IdentityConfig, ConfigError> {
        let i = &self.identity;
        let prefix = i.header_prefix.to_ascii_lowercase();
        if prefix.is_empty()
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(key_err(
                "identity.header_prefix",
                format!("`{}` is not a header name prefix", i.header_prefix),
            ));
        }
        Ok(IdentityConfig {
            header_prefix: prefix,
            signing_key: i.signing_key.clone().filter(|k| !k.expose().is_empty()),
            forward_authorization: i.forward_authorization,
        })
    }
}
