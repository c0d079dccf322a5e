//! TLS with rustls (ring provider): inbound certificates that can be
//! reloaded without dropping connections, and the upstream client's roots.

use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsFiles;

/// TLS set-up failures, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificates from {path}: {reason}")]
    Certs { path: String, reason: String },
    #[error("cannot read a private key from {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("the upstream's host is not a name TLS can check: {0}")]
    ServerName(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |reason: String| TlsError::Certs {
        path: path.display().to_string(),
        reason,
    };
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate found".into()));
    }
    Ok(certs)
}

/// The protocols a listener offers in ALPN: HTTP/1.1 (the proxy and
/// management listeners).
pub const HTTP1: &[&[u8]] = &[b"http/1.1"];
/// HTTP/2 first, then HTTP/1.1 (the decision listener, whose gRPC needs h2).
pub const H2_AND_HTTP1: &[&[u8]] = &[b"h2", b"http/1.1"];

/// Build a server config from PEM files, offering HTTP/1.1.
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    server_config_alpn(files, HTTP1)
}

/// Build a server config from PEM files, offering `alpn`.
pub fn server_config_alpn(
    files: &TlsFiles,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = load_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::Key {
        path: files.key.display().to_string(),
        reason: e.to_string(),
    })?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// The inbound acceptor, swappable on reload. Connections keep the config
/// they were accepted with; new connections get the new one.
#[derive(Clone)]
pub struct ReloadableAcceptor {
    files: TlsFiles,
    alpn: &'static [&'static [u8]],
    current: Arc<RwLock<TlsAcceptor>>,
}

impl ReloadableAcceptor {
    /// An acceptor offering HTTP/1.1.
    pub fn new(files: TlsFiles) -> Result<Self, TlsError> {
        Self::with_alpn(files, HTTP1)
    }

    /// An acceptor offering `alpn`.
    pub fn with_alpn(files: TlsFiles, alpn: &'static [&'static [u8]]) -> Result<Self, TlsError> {
        let acceptor = TlsAcceptor::from(server_config_alpn(&files, alpn)?);
        Ok(Self {
            files,
            alpn,
            current: Arc::new(RwLock::new(acceptor)),
        })
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-read the files; on error the old certificate stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let acceptor = TlsAcceptor::from(server_config_alpn(&self.files, self.alpn)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = acceptor;
        Ok(())
    }

    /// Content fingerprint of the files, to notice changes by polling.
    pub fn fingerprint(&self) -> Option<u64> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::fs::read(&self.files.cert).ok()?.hash(&mut h);
        std::fs::read(&self.files.key).ok()?.hash(&mut h);
        Some(h.finish())
    }
}

/// The upstream client's TLS config: a CA file, or the system roots.
pub fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in load_certs(path)? {
                roots.add(cert)?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // Skip unparseable system certificates rather than fail.
                let _ = roots.add(cert);
            }
        }
    }
    // ALPN is set by its user (the upstream client asks for http/1.1).
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
