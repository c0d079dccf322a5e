//! How authgate is watched: `[log]` (format and level of the `tracing`
//! output) and `[metrics]` (the Prometheus listener).

use std::net::SocketAddr;

use super::values::socket_addr;
use super::{key_err, ConfigError, RawConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

impl RawConfig {
    pub(super) fn compile_log(&self) -> Result<LogConfig, ConfigError> {
        let format = match self.log.format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(key_err(
                    "log.format",
                    format!("`{other}`: expected \"text\" or \"json\""),
                ))
            }
        };
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| key_err("log.level", format!("`{}`: {e}", self.log.level)))?;
        Ok(LogConfig {
            format,
            level: self.log.level.clone(),
        })
    }
}

impl RawConfig {
    /// `None`: no metrics listener (`metrics.listen = ""`).
    pub(super) fn compile_metrics(&self) -> Result<Option<SocketAddr>, ConfigError> {
        Ok(match &self.metrics.listen {
            Some(l) if !l.is_empty() => Some(socket_addr("metrics.listen", l)?),
            _ => None,
        })
    }
}
