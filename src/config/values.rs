//! The checks every section uses to turn a string into a value: a
//! duration, a listen address, a readable file, an SQL identifier. Each
//! error names the key, so an invalid config fails with one message
//! pointing at the line to fix.

use std::net::SocketAddr;
use std::time::Duration;

use super::{key_err, ConfigError};

pub(super) fn duration(key: &str, s: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        key_err(
            key,
            format!("invalid duration `{s}` ({e}); write e.g. `500ms`, `30s`, `5m`"),
        )
    })
}

pub(super) fn socket_addr(key: &str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.parse().map_err(|_| {
        key_err(
            key,
            format!("invalid listen address `{s}`; write e.g. `127.0.0.1:8080`"),
        )
    })
}

/// A path named in the config must exist and be readable at start.
pub(super) fn readable_file(key: &str, path: &std::path::Path) -> Result<(), ConfigError> {
    std::fs::metadata(path)
        .map(|_| ())
        .map_err(|e| key_err(key, format!("cannot read `{}`: {e}", path.display())))
}

/// A list of CIDR blocks (or single addresses; host bits ignored), each
/// named by its index when it does not parse.
pub(super) fn cidrs(key: &str, list: &[String]) -> Result<Vec<crate::cidr::Cidr>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, t)| {
            crate::cidr::Cidr::parse_masked(t)
                .map_err(|e| key_err(format!("{key}[{i}]"), e.to_string()))
        })
        .collect()
}

pub(super) fn identifier(key: &str, s: &str) -> Result<String, ConfigError> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(key_err(
            key,
            format!("`{s}` is not a plain lower-case SQL identifier"),
        ))
    }
}
