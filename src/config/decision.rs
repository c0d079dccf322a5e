//! `[decision]`: the decision listener, where a front proxy that already
//! runs in the cluster (nginx `auth_request`, Caddy `forward_auth`,
//! Traefik, Envoy's ext_authz, Istio, Gateway API) asks authgate whether a
//! request may pass (`crate::decision`).
//!
//! Off unless `listen` is set. Only `trusted_callers` (default: loopback)
//! are answered: the caller speaks for the client (its `X-Forwarded-*`,
//! `X-Original-*` and `X-Forwarded-For` are believed), so nobody else may
//! call. TLS from its own `tls_cert`/`tls_key`.

use std::net::SocketAddr;

use super::server::TlsFiles;
use super::values::{cidrs, readable_file, socket_addr};
use super::{key_err, ConfigError, RawConfig};
use crate::cidr::Cidr;

#[derive(Debug, Clone)]
pub struct DecisionConfig {
    /// `None`: no decision listener.
    pub listen: Option<SocketAddr>,
    /// The front proxies that may ask (and whose forwarding headers are
    /// believed).
    pub trusted_callers: Vec<Cidr>,
    pub tls: Option<TlsFiles>,
}

/// The callers answered when `trusted_callers` is not set.
pub const DEFAULT_TRUSTED_CALLERS: [&str; 2] = ["127.0.0.0/8", "::1"];

impl RawConfig {
    pub(super) fn compile_decision(&self) -> Result<DecisionConfig, ConfigError> {
        let d = &self.decision;
        let listen = match &d.listen {
            l if l.is_empty() => None,
            l => Some(socket_addr("decision.listen", l)?),
        };
        let tls = match (&d.tls_cert, &d.tls_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                readable_file("decision.tls_cert", cert)?;
                readable_file("decision.tls_key", key)?;
                Some(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                })
            }
            (Some(_), None) => {
                return Err(key_err(
                    "decision.tls_key",
                    "required when decision.tls_cert is set",
                ))
            }
            (None, Some(_)) => {
                return Err(key_err(
                    "decision.tls_cert",
                    "required when decision.tls_key is set",
                ))
            }
        };
        let trusted_callers = cidrs("decision.trusted_callers", &d.trusted_callers)?;
        if listen.is_some() && trusted_callers.is_empty() {
            return Err(key_err(
                "decision.trusted_callers",
                "must name at least one caller: nobody could ask otherwise",
            ));
        }
        Ok(DecisionConfig {
            listen,
            trusted_callers,
            tls,
        })
    }
}
