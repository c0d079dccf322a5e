//! `[tracing]`: where OTLP traces go (`otlp_endpoint`, "" = off), how many
//! requests are recorded (`sample_ratio`) and the `service.name` they are
//! recorded under. The standard OpenTelemetry variables set the same keys
//! (see `env.rs`: `AUTHGATE_TRACING_*` > `OTEL_*` > the file).
//!
//! `otlp_endpoint` is the base URL of an OTLP/HTTP receiver, as
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is: `/v1/traces` is appended to its path
//! (`http://collector:4318` → `http://collector:4318/v1/traces`).

use super::{key_err, ConfigError, RawConfig};

#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// The full traces URL; `None`: tracing is off.
    pub endpoint: Option<http::Uri>,
    /// Share of requests recorded, `0.0..=1.0` (see `trace::sampler`).
    pub sample_ratio: f64,
    pub service_name: String,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            sample_ratio: 1.0,
            service_name: "authgate".into(),
        }
    }
}

impl RawConfig {
    pub(super) fn compile_tracing(&self) -> Result<TracingConfig, ConfigError> {
        let t = &self.tracing;
        let endpoint = match t.otlp_endpoint.trim() {
            "" => None,
            url => Some(traces_url(url)?),
        };
        if !(0.0..=1.0).contains(&t.sample_ratio) {
            return Err(key_err(
                "tracing.sample_ratio",
                format!("{} is not between 0.0 and 1.0", t.sample_ratio),
            ));
        }
        if t.service_name.trim().is_empty() {
            return Err(key_err("tracing.service_name", "must not be empty"));
        }
        Ok(TracingConfig {
            endpoint,
            sample_ratio: t.sample_ratio,
            service_name: t.service_name.clone(),
        })
    }
}

/// `base` + `/v1/traces`, checked: http(s), a host, no query or fragment.
fn traces_url(base: &str) -> Result<http::Uri, ConfigError> {
    let bad = |problem: String| key_err("tracing.otlp_endpoint", problem);
    let url: http::Uri = base
        .parse()
        .map_err(|e| bad(format!("invalid URL `{base}`: {e}")))?;
    if !matches!(url.scheme_str(), Some("http") | Some("https")) {
        return Err(bad(format!("`{base}` must start with http:// or https://")));
    }
    let Some(authority) = url.authority() else {
        return Err(bad(format!("`{base}` has no host")));
    };
    if url.query().is_some() || base.contains('#') {
        return Err(bad(format!(
            "`{base}` must not have a query or fragment: it is the base URL `/v1/traces` is added to"
        )));
    }
    let path = url.path().trim_end_matches('/');
    format!(
        "{}://{}{path}/v1/traces",
        url.scheme_str().unwrap_or("http"),
        authority.as_str()
    )
    .parse()
    .map_err(|e| bad(format!("`{base}`: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_urls() {
        for (base, want) in [
            ("http://collector:4318", "http://collector:4318/v1/traces"),
            ("http://collector:4318/", "http://collector:4318/v1/traces"),
            (
                "https://otel.example/otlp",
                "https://otel.example/otlp/v1/traces",
            ),
            ("http://[::1]:4318/x/", "http://[::1]:4318/x/v1/traces"),
        ] {
            assert_eq!(traces_url(base).unwrap().to_string(), want, "{base}");
        }
        for bad in [
            "collector:4318",
            "grpc://collector:4317",
            "http://",
            "http://c:4318/?a=1",
            "http://c:4318/#x",
            "not a url",
        ] {
            assert!(traces_url(bad).is_err(), "{bad}");
        }
    }
}
