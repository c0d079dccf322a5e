//! Reloading without a restart, and the signals that drive it.
//!
//! The route tables, content types and action tables reload when the config
//! file's content changes (polled every 2 s by content hash: a Kubernetes
//! ConfigMap update swaps a symlink, which file-event watchers miss) and on
//! SIGHUP. A new config that does not load is logged and counted, and the
//! old one stays in force. SIGHUP and a change of the files also reload the
//! inbound TLS certificate; open connections keep the one they started with.
//! Settings that need a restart (listen addresses, pools) are only read at
//! start.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;
use crate::policy::PolicyStore;
use crate::tls::ReloadableAcceptor;

/// Watches the config file (and TLS files) and applies changes.
pub struct Reloader {
    path: PathBuf,
    metrics: Metrics,
    policy: Arc<PolicyStore>,
    /// The inbound certificates (proxy, decision listener), each with
    /// the fingerprint of its files when last read.
    tls: Vec<(ReloadableAcceptor, Option<u64>)>,
    config_hash: Option<u64>,
}

fn file_hash(path: &std::path::Path) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::fs::read(path).ok()?.hash(&mut h);
    Some(h.finish())
}

impl Reloader {
    /// `policy` rebuilds the route table with the content types Strapi
    /// stores (strapi5 layout), so a config reload keeps them.
    pub fn new(
        path: PathBuf,
        metrics: Metrics,
        policy: Arc<PolicyStore>,
        tls: Vec<ReloadableAcceptor>,
    ) -> Self {
        let config_hash = file_hash(&path);
        let tls = tls
            .into_iter()
            .map(|t| {
                let h = t.fingerprint();
                (t, h)
            })
            .collect();
        Self {
            path,
            metrics,
            policy,
            tls,
            config_hash,
        }
    }

    /// Reload now (SIGHUP), whatever the hashes say.
    pub fn reload(&mut self) {
        self.config_hash = file_hash(&self.path);
        self.reload_config();
        for (t, hash) in &mut self.tls {
            *hash = t.fingerprint();
            reload_tls(t);
        }
    }

    /// Reload what changed since the last look.
    pub fn poll(&mut self) {
        let h = file_hash(&self.path);
        if h.is_some() && h != self.config_hash {
            self.config_hash = h;
            self.reload_config();
        }
        for (t, hash) in &mut self.tls {
            let h = t.fingerprint();
            if h.is_some() && h != *hash {
                *hash = h;
                reload_tls(t);
            }
        }
    }

    fn reload_config(&self) {
        let metrics = &self.metrics;
        match crate::config::load(&self.path) {
            Ok(cfg) => {
                self.policy.set_config(&cfg);
                metrics.config_reloads.with_label_values(&["ok"]).inc();
                tracing::info!(config = %self.path.display(), "config reloaded (routes, content types, action tables)");
            }
            Err(e) => {
                metrics.config_reloads.with_label_values(&["error"]).inc();
                tracing::error!(config = %self.path.display(), error = %e, "config reload failed; keeping the previous config");
            }
        }
    }
}

fn reload_tls(t: &ReloadableAcceptor) {
    match t.reload() {
        Ok(()) => tracing::info!("TLS certificate reloaded"),
        Err(e) => {
            tracing::error!(error = %e, "TLS reload failed; keeping the previous certificate")
        }
    }
}

/// Resolves on SIGTERM or SIGINT; meanwhile reloads on SIGHUP and when the
/// watched files change.
pub async fn shutdown_signal(mut reloader: Reloader) {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int, mut hup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(t), Ok(i), Ok(h)) => (t, i, h),
        _ => {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            return std::future::pending().await;
        }
    };
    let mut poll = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM received"); return; }
            _ = int.recv() => { tracing::info!("SIGINT received"); return; }
            _ = hup.recv() => reloader.reload(),
            _ = poll.tick() => reloader.poll(),
        }
    }
}
