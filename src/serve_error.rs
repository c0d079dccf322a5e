//! Start-up failures of the listeners: the gateway's ([`crate::server`]) and
//! the management listener's ([`crate::management`]), which both report in
//! this one type without either importing the other.

use std::net::SocketAddr;

/// Start-up failures.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Forward(#[from] crate::forward::ForwardError),
    #[error(transparent)]
    Redis(#[from] crate::redis_link::LinkError),
    #[error(transparent)]
    Trace(#[from] crate::trace::TraceError),
    #[error("management: {0}")]
    Management(String),
}
