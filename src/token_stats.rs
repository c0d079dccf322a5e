//! The `authgate_tokens` and `authgate_tokens_expiring` gauges: one
//! aggregate query (`Store::token_stats`) every `tokens.stats_interval` and
//! at start, never per request, so an operator can alert on tokens about to
//! expire before the clients using them start getting 401.
//!
//! Every replica runs the same count; dashboards and the alert take the
//! largest. A failed count keeps the last published numbers and is logged.

use std::time::{Duration, SystemTime};

use crate::metrics::Metrics;
use crate::store::Store;

/// Count now, then every `interval`, until `stop` resolves.
pub async fn refresh(
    store: Store,
    metrics: Metrics,
    interval: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stop => return,
        }
        match store.token_stats(SystemTime::now()).await {
            Ok(stats) => metrics.set_token_stats(&stats),
            Err(e) => tracing::warn!(error = %e, "cannot count tokens for the expiry gauges"),
        }
    }
}
