//! Accepting connections, the same way on every listener.
//!
//! A failed `accept` (the process out of file descriptors, say) is logged
//! and retried after a pause: retried at once, it fails again at once and
//! the loop spins a core for as long as the condition lasts.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

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
