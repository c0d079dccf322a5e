//! Accepting connections, the same way on every listener, and what an
//! accepted connection holds while it lives.
//!
//! A failed `accept` (the process out of file descriptors, say) is logged
//! and retried after a pause: retried at once, it fails again at once and
//! the loop spins a core for as long as the condition lasts.
//!
//! An accepted proxy connection holds an [`Admission`]: its place under
//! `server.max_connections`, its count in `authgate_connections_active`
//! and its part in the drain's wait. A connection that becomes a WebSocket
//! tunnel hands a share of it to the tunnel, so the place is given back
//! only when the last of the two ends.

use std::net::SocketAddr;
use std::time::Duration;

use prometheus::IntGauge;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;

/// How long a listener waits after a failed accept.
pub const RETRY_AFTER: Duration = Duration::from_millis(50);

/// The next connection on `listener` (named `name` in the log), waiting
/// [`RETRY_AFTER`] after each failed accept. Cancel-safe.
pub async fn next(listener: &TcpListener, name: &'static str) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(e) => {
                tracing::warn!(error = %e, listener = name, "accept failed");
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
    }
}

/// A client connection's place: its permit of the connection cap (none
/// for a connection accepted during the drain's delay), its count in the
/// active-connections gauge, and the sender the drain waits on. Shared by
/// the connection and the tunnel it may become; dropped by the last.
pub struct Admission {
    _permit: Option<OwnedSemaphorePermit>,
    _alive: tokio::sync::mpsc::Sender<()>,
    gauge: IntGauge,
}

impl Admission {
    /// Count the connection in `gauge` until the admission is dropped.
    pub fn new(
        permit: Option<OwnedSemaphorePermit>,
        alive: tokio::sync::mpsc::Sender<()>,
        gauge: IntGauge,
    ) -> Self {
        gauge.inc();
        Self {
            _permit: permit,
            _alive: alive,
            gauge,
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hands_over_the_next_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::spawn(TcpStream::connect(addr));
        let (_stream, peer) = next(&listener, "test").await;
        let client = client.await.expect("join").expect("connect");
        assert_eq!(peer, client.local_addr().expect("addr"));
    }
}
