//! The invalidation subscription: one session after another until
//! shutdown.
//!
//! A session connects (to the configured server, the master the sentinels
//! name now, or the cluster from its seed nodes), subscribes, and hands
//! each message on. It ends when the connection closes, when Redis ends the
//! subscription (a cluster sends `SUNSUBSCRIBE` when the channel's slot
//! moves), or when a probe sent every [`PROBE_EVERY`] goes unanswered (a
//! server that vanished without closing the connection). The next session
//! starts after a pause of 100 ms doubling to [`MAX_PAUSE`], and the first
//! message of every session but the first is `all`: messages may have been
//! missed in between.
//!
//! Bound on following a failover: a lost session is noticed at once (closed
//! connection) or within one probe (`PROBE_EVERY` plus the connect bound);
//! a new one is tried at most `MAX_PAUSE` later and reaches the node that
//! Redis names by then.

use std::time::Duration;

use futures_util::StreamExt;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{PushKind, Value};

use super::target::{Seeds, Target};
use super::RedisLink;

/// How often a live session checks that its server still answers.
pub(super) const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Longest pause between two sessions.
pub(super) const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Why a session ended, and whether it had subscribed.
struct Ended {
    subscribed: bool,
    why: String,
}

fn ended(subscribed: bool) -> impl Fn(String) -> Ended {
    move |why| Ended { subscribed, why }
}

impl RedisLink {
    /// Subscribe to the invalidation channel until `shutdown`, handing every
    /// message to `on_message`.
    pub async fn subscribe<F, Fut>(
        self: std::sync::Arc<Self>,
        on_message: F,
        shutdown: impl std::future::Future<Output = ()>,
    ) where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        tokio::pin!(shutdown);
        let mut pause = Duration::from_millis(100);
        let mut sessions = 0u64;
        loop {
            let session = self.session(sessions > 0, &on_message);
            sessions += 1;
            tokio::select! {
                Ended { subscribed, why } = session => {
                    self.count_error("subscribe");
                    if subscribed {
                        pause = Duration::from_millis(100);
                    }
                    tracing::warn!(error = %why, retry_in = ?pause, mode = self.target().mode(), "redis subscription lost");
                }
                _ = &mut shutdown => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = &mut shutdown => return,
            }
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    async fn session<F, Fut>(&self, reconnect: bool, on_message: &F) -> Ended
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        match self.target() {
            Target::Cluster(seeds) => self.sharded_session(seeds, reconnect, on_message).await,
            _ => self.classic_session(reconnect, on_message).await,
        }
    }

    /// `SUBSCRIBE` on one server: the configured one, or the master the
    /// sentinels name.
    async fn classic_session<F, Fut>(&self, reconnect: bool, on_message: &F) -> Ended
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let bound = self.connect_bound();
        let connect = async {
            let client = self.target().node_client().await?;
            let (mut sink, stream) = client.get_async_pubsub().await?.split();
            sink.subscribe(self.channel()).await?;
            Ok::<_, redis::RedisError>((sink, stream))
        };
        let (mut sink, mut stream) = match tokio::time::timeout(bound, connect).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return ended(false)(e.to_string()),
            Err(_) => return ended(false)("connect timed out".into()),
        };
        self.subscribed(reconnect, on_message).await;
        let mut probe = tokio::time::interval(PROBE_EVERY);
        probe.tick().await;
        loop {
            tokio::select! {
                m = stream.next() => match m {
                    Some(msg) => match msg.get_payload::<String>() {
                        Ok(p) => on_message(p).await,
                        Err(e) => tracing::debug!(error = %e, "unreadable redis message"),
                    },
                    None => return ended(true)("subscription closed".into()),
                },
                _ = probe.tick() => {
                    match tokio::time::timeout(bound, sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return ended(true)(format!("probe failed: {e}")),
                        Err(_) => return ended(true)("probe timed out".into()),
                    }
                }
            }
        }
    }

    /// `SSUBSCRIBE` in a cluster, over RESP3: the library sends it to a node
    /// of the shard owning the channel's slot, and hands the messages over
    /// as pushes.
    async fn sharded_session<F, Fut>(&self, seeds: &Seeds, reconnect: bool, on_message: &F) -> Ended
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let bound = self.connect_bound();
        let timeout = self.op_timeout();
        let (tx, mut pushes) = tokio::sync::mpsc::unbounded_channel();
        let connect = async {
            let client = seeds
                .builder()
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(tx)
                .connection_timeout(bound)
                .response_timeout(bound)
                .retries(3)
                .build()?;
            let mut conn = client.get_async_connection().await?;
            conn.ssubscribe(self.channel()).await?;
            Ok::<_, redis::RedisError>(conn)
        };
        let mut conn = match tokio::time::timeout(bound, connect).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return ended(false)(e.to_string()),
            Err(_) => return ended(false)("connect timed out".into()),
        };
        self.subscribed(reconnect, on_message).await;
        let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::with_key(
            self.channel(),
            SlotAddr::Master,
        )));
        let mut probe = tokio::time::interval(PROBE_EVERY);
        probe.tick().await;
        loop {
            tokio::select! {
                p = pushes.recv() => {
                    let Some(push) = p else {
                        return ended(true)("cluster connection closed".into());
                    };
                    match push.kind {
                        PushKind::SMessage => match push.data.get(1) {
                            Some(Value::BulkString(b)) => match std::str::from_utf8(b) {
                                Ok(p) => on_message(p.to_owned()).await,
                                Err(e) => tracing::debug!(error = %e, "unreadable redis message"),
                            },
                            _ => tracing::debug!("redis push without a payload"),
                        },
                        // A node's connection closed (possibly not the one
                        // holding the subscription: a fresh session costs one
                        // cache clear), or the channel's slot moved.
                        PushKind::Disconnection => return ended(true)("a cluster node disconnected".into()),
                        PushKind::SUnsubscribe => return ended(true)("the cluster ended the subscription".into()),
                        _ => {}
                    }
                }
                _ = probe.tick() => {
                    let ping = conn.route_command(redis::cmd("PING"), route.clone());
                    match tokio::time::timeout(bound.max(timeout), ping).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return ended(true)(format!("probe failed: {e}")),
                        Err(_) => return ended(true)("probe timed out".into()),
                    }
                }
            }
        }
    }

    /// A session has subscribed: say so, and after a gap forget everything.
    async fn subscribed<F, Fut>(&self, reconnect: bool, on_message: &F)
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        tracing::info!(channel = %self.channel(), mode = self.target().mode(), "subscribed to redis invalidations");
        if reconnect {
            // Messages may have been missed while disconnected.
            on_message("all".to_owned()).await;
        }
    }
}
