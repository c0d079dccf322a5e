//! Environment overrides, laid over the file before it is deserialised.
//!
//! `AUTHGATE_<SECTION>_<KEY>` sets `<section>.<key>`. Some standard names
//! set keys too ([`STANDARD`]): Strapi's own `API_TOKEN_SALT` and
//! `ENCRYPTION_KEY` (the token keys) and OpenTelemetry's
//! `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME` and
//! `OTEL_TRACES_SAMPLER_ARG` (`[tracing]`). Whichever order the
//! environment lists them in, an `AUTHGATE_` name wins over a standard
//! name for the same key, and either wins over the file. The variables
//! Kubernetes injects for a Service named like authgate are not config and
//! are skipped. A value is typed as TOML would read it (bool, integer,
//! float, `[...]` array), except for the keys in [`STRING_KEYS`], which
//! always stay strings.
//!
//! A new config section must be added to [`SECTIONS`], or its variables
//! are refused.

use super::{key_err, ConfigError};

/// Sections, longest first so `RATE_LIMIT` wins over a `RATE` prefix.
const SECTIONS: &[&str] = &[
    "management",
    "rate_limit",
    "upstream",
    "postgres",
    "identity",
    "decision",
    "metrics",
    "tracing",
    "server",
    "audit",
    "tokens",
    "routes",
    "cache",
    "redis",
    "log",
];

/// Keys whose environment values are always strings, even when they look
/// like numbers.
const STRING_KEYS: &[&str] = &[
    "salt",
    "encryption_key",
    "signing_key",
    "url",
    "listen_url",
    "pooler",
    "listen",
    "schema",
    "layout",
    "header_prefix",
    "level",
    "format",
    "bootstrap_token_file",
    "sentinel_master",
    "sentinel_password",
    "ca_file",
    "otlp_endpoint",
    "service_name",
];

/// Standard variables that set a key, with the key they set. The
/// `AUTHGATE_` name of the same key wins over them.
const STANDARD: &[(&str, &str)] = &[
    ("API_TOKEN_SALT", "tokens.salt"),
    ("ENCRYPTION_KEY", "tokens.encryption_key"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "tracing.otlp_endpoint"),
    ("OTEL_SERVICE_NAME", "tracing.service_name"),
    ("OTEL_TRACES_SAMPLER_ARG", "tracing.sample_ratio"),
];

pub(super) fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    // (key, set by an AUTHGATE_ name, value)
    let mut pairs: Vec<(String, bool, String)> = Vec::new();
    for (var, value) in env {
        if let Some((_, key)) = STANDARD.iter().find(|(name, _)| *name == var) {
            pairs.push(((*key).to_owned(), false, value));
            continue;
        }
        match var.as_str() {
            "AUTHGATE_CONFIG" => {}
            v if is_service_link(v) => {}
            v if v.starts_with("AUTHGATE_") => {
                let rest = v["AUTHGATE_".len()..].to_ascii_lowercase();
                let section = SECTIONS
                    .iter()
                    .find(|s| rest.starts_with(&format!("{s}_")))
                    .ok_or_else(|| ConfigError::Env {
                        var: var.clone(),
                        problem: format!(
                            "no config section matches (sections: {})",
                            SECTIONS.join(", ")
                        ),
                    })?;
                let key = &rest[section.len() + 1..];
                pairs.push((format!("{section}.{key}"), true, value));
            }
            _ => {}
        }
    }
    // Applied in order, so for each key the standard name goes first and
    // the AUTHGATE_ name, when both are set, last (it wins).
    pairs.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    for (dotted, _, value) in pairs {
        let (section, key) = dotted.split_once('.').unwrap_or(("", ""));
        let entry = table
            .entry(section.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(sec) = entry else {
            return Err(key_err(section, "must be a table"));
        };
        sec.insert(key.to_owned(), env_value(key, &value));
    }
    Ok(())
}

/// Kubernetes injects `<SERVICE>_SERVICE_HOST`, `<SERVICE>_SERVICE_PORT[_*]`
/// and `<SERVICE>_PORT[_*]` for every Service in the namespace; a Service
/// named `authgate` or `authgate-metrics` would otherwise look like config.
fn is_service_link(var: &str) -> bool {
    let v = var.to_ascii_uppercase();
    v.ends_with("_SERVICE_HOST")
        || v.ends_with("_SERVICE_PORT")
        || v.contains("_SERVICE_PORT_")
        || v.ends_with("_PORT")
        || v.split("_PORT_")
            .nth(1)
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
}

fn env_value(key: &str, raw: &str) -> toml::Value {
    if STRING_KEYS.contains(&key) {
        return toml::Value::String(raw.to_owned());
    }
    if let Ok(b) = raw.parse::<bool>() {
        return toml::Value::Boolean(b);
    }
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    // A decimal number (`0.25`, `1e-3`), not words `f64` also reads
    // ("inf", "NaN").
    if raw
        .bytes()
        .all(|b| b.is_ascii_digit() || b".eE+-".contains(&b))
    {
        if let Ok(f) = raw.parse::<f64>() {
            return toml::Value::Float(f);
        }
    }
    if raw.trim_start().starts_with('[') {
        if let Ok(t) = format!("v = {raw}").parse::<toml::Table>() {
            if let Some(v) = t.get("v") {
                return v.clone();
            }
        }
    }
    toml::Value::String(raw.to_owned())
}
