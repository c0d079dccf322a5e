//! A WebSocket tunnel's life, once the CMS has switched protocols.
//!
//! The tunnel carries bytes both ways that the gateway no longer reads, so
//! it is held to what a connection is held to, and to the token that opened
//! it:
//!
//! * it keeps its connection's [`Admission`]: its place under
//!   `server.max_connections`, its count in `authgate_connections_active`,
//!   and the drain's wait;
//! * it ends after `server.tunnel_idle_timeout` with no byte either way;
//! * it ends when the server drains;
//! * it ends when the token that opened it is revoked, changed (any
//!   invalidation of the token, its owner or the owner's roles), or
//!   expires: checked once a second, and at once on each invalidation of
//!   anything (the cache's epoch). A client then opens a new one and is
//!   judged anew.
//!
//! Each end is counted in `authgate_tunnels_ended_total{reason}`.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::watch;

use crate::accept::Admission;
use crate::metrics::Metrics;

/// What a tunnel is held to, shared by the tunnels of one gateway.
#[derive(Clone)]
pub struct Limits {
    /// `server.tunnel_idle_timeout`.
    pub idle: Duration,
    /// Turns `true` when the server drains.
    pub stop: watch::Receiver<bool>,
    pub metrics: Metrics,
}

/// Is the token that opened the tunnel still good? `None`: no token (an
/// anonymous or session request), nothing to watch.
pub type Validity = Option<Box<dyn Fn() -> bool + Send + Sync>>;

/// Why a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Either side closed it (or failed).
    Closed,
    Idle,
    Drain,
    /// Its token was revoked, changed or expired.
    Revoked,
}

impl Ended {
    pub fn as_str(self) -> &'static str {
        match self {
            Ended::Closed => "closed",
            Ended::Idle => "idle",
            Ended::Drain => "drain",
            Ended::Revoked => "revoked",
        }
    }

    pub const ALL: [Ended; 4] = [Ended::Closed, Ended::Idle, Ended::Drain, Ended::Revoked];
}

/// Join an upgraded client connection to the upstream's, once the
/// client's side is handed over: first what the upstream wrote right after
/// its 101, then both ways until either side closes or a limit ends it.
pub async fn run<U>(
    client: hyper::upgrade::OnUpgrade,
    upstream: U,
    early: Bytes,
    admission: Arc<Admission>,
    limits: Limits,
    valid: Validity,
) where
    U: AsyncRead + AsyncWrite + Unpin,
{
    let client = match client.await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let mut client = hyper_util::rt::TokioIo::new(client);
    if !early.is_empty() && client.write_all(&early).await.is_err() {
        return;
    }
    let clock = Clock::start();
    let mut client = Watched {
        io: client,
        clock: clock.clone(),
    };
    let mut upstream = Watched {
        io: upstream,
        clock: clock.clone(),
    };
    let ended = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => Ended::Closed,
        why = watch(&clock, &limits, valid.as_deref()) => why,
    };
    limits
        .metrics
        .tunnels_ended
        .with_label_values(&[ended.as_str()])
        .inc();
    tracing::debug!(reason = ended.as_str(), "tunnel ended");
    drop(admission);
}

/// Wait for a limit to end the tunnel.
async fn watch(
    clock: &Clock,
    limits: &Limits,
    valid: Option<&(dyn Fn() -> bool + Send + Sync)>,
) -> Ended {
    let mut stop = limits.stop.clone();
    let mut tick = tokio::time::interval(
        Duration::from_secs(1)
            .min(limits.idle / 2)
            .max(Duration::from_millis(10)),
    );
    loop {
        tokio::select! {
            _ = stop.wait_for(|v| *v) => return Ended::Drain,
            _ = tick.tick() => {
                if clock.idle_for() >= limits.idle {
                    return Ended::Idle;
                }
                if valid.is_some_and(|still| !still()) {
                    return Ended::Revoked;
                }
            }
        }
    }
}

/// When bytes last moved, in milliseconds since the tunnel opened.
#[derive(Clone)]
struct Clock {
    opened: tokio::time::Instant,
    last: Arc<AtomicU64>,
}

impl Clock {
    fn start() -> Self {
        Self {
            opened: tokio::time::Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
        }
    }

    fn moved(&self) {
        let now = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.opened.elapsed().saturating_sub(last)
    }
}

/// A stream that notes on the clock whenever bytes move through it.
struct Watched<S> {
    io: S,
    clock: Clock,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.clock.moved();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, b);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.moved();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A token's validity for a tunnel: not expired, and not covered by an
/// invalidation since its record was read (`still_current`).
pub fn token_validity(
    expires: Option<SystemTime>,
    still_current: impl Fn() -> bool + Send + Sync + 'static,
) -> Validity {
    Some(Box::new(move || {
        expires.map_or(true, |at| SystemTime::now() < at) && still_current()
    }))
}
