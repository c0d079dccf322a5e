//! `last_used_at`: recorded in memory on the request path, written in batches
//! off it.
//!
//! A use is noted in a map (token id -> latest use). A background task
//! flushes the map every second with one `UPDATE ... FROM unnest(...)`
//! statement, writing each token at most once per `tokens.last_used_interval`
//! (Strapi itself writes at most once an hour). A failed flush keeps the
//! uses for the next one; shutdown flushes what is left, so no use is lost
//! to a clean restart. Each flush looks only at the tokens used since the
//! last one; the memory of old writes is pruned every eighth of the
//! interval (with a hundred thousand tokens in use, a pass over all of
//! them every second was the recorder's largest cost), so it holds at most
//! an eighth more than the writes of one interval.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::metrics::Metrics;
use crate::store::Store;

#[derive(Default)]
struct State {
    pending: HashMap<i64, SystemTime>,
    written: HashMap<i64, Instant>,
    /// When `written` was last pruned (of writes an interval old).
    pruned: Option<Instant>,
}

/// Collects token uses and writes them in batches.
pub struct UsageRecorder {
    state: Mutex<State>,
    interval: Duration,
}

impl UsageRecorder {
    pub fn new(interval: Duration) -> Self {
        Self {
            state: Mutex::new(State::default()),
            interval,
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Note a use. Cheap: one uncontended lock and a map insert.
    pub fn record(&self, token_id: i64, at: SystemTime) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let e = s.pending.entry(token_id).or_insert(at);
        if *e < at {
            *e = at;
        }
    }

    /// Take the uses that are due (not written within the interval).
    fn take_due(&self, now: Instant) -> Vec<(i64, SystemTime)> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let interval = self.interval;
        let recent = |at: &Instant| now.duration_since(*at) < interval;
        if s.pruned
            .map_or(true, |p| now.duration_since(p) >= interval / 8)
        {
            s.written.retain(|_, at| recent(at));
            s.pruned = Some(now);
        }
        let State {
            pending, written, ..
        } = &mut *s;
        let due: Vec<(i64, SystemTime)> = pending
            .iter()
            .filter(|(id, _)| !written.get(id).is_some_and(recent))
            .map(|(id, t)| (*id, *t))
            .collect();
        for (id, _) in &due {
            pending.remove(id);
            written.insert(*id, now);
        }
        due
    }

    /// Put uses back after a failed write.
    fn restore(&self, uses: &[(i64, SystemTime)]) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for (id, at) in uses {
            s.written.remove(id);
            let e = s.pending.entry(*id).or_insert(*at);
            if *e < *at {
                *e = *at;
            }
        }
    }

    /// Write what is due. Returns the number of tokens written.
    pub async fn flush(&self, store: &Store, metrics: &Metrics, force: bool) -> usize {
        let due = if force {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.pending.drain().collect()
        } else {
            self.take_due(Instant::now())
        };
        if due.is_empty() {
            return 0;
        }
        let started = Instant::now();
        match store.touch_tokens(&due).await {
            Ok(_) => {
                metrics.last_used_flush_size.observe(due.len() as f64);
                metrics
                    .last_used_flush_duration
                    .observe(started.elapsed().as_secs_f64());
                due.len()
            }
            Err(e) => {
                metrics.last_used_flush_errors.inc();
                tracing::warn!(error = %e, tokens = due.len(), "last_used_at flush failed; will retry");
                self.restore(&due);
                0
            }
        }
    }

    /// Flush every second until `shutdown` resolves, then flush everything.
    pub async fn run(
        &self,
        store: Store,
        metrics: Metrics,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(
            Duration::from_secs(1).min(self.interval.max(Duration::from_millis(10))),
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => { self.flush(&store, &metrics, false).await; }
                _ = &mut shutdown => break,
            }
        }
        self.flush(&store, &metrics, true).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_write_per_token_per_interval() {
        let r = UsageRecorder::new(Duration::from_secs(60));
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let now = Instant::now();
        r.record(1, t0);
        r.record(1, t0 + Duration::from_secs(5));
        r.record(2, t0);
        let mut due = r.take_due(now);
        due.sort();
        assert_eq!(due, vec![(1, t0 + Duration::from_secs(5)), (2, t0)]);
        // Used again at once: not due until the interval has passed.
        r.record(1, t0 + Duration::from_secs(6));
        assert!(r.take_due(now + Duration::from_secs(30)).is_empty());
        assert_eq!(
            r.take_due(now + Duration::from_secs(61)),
            vec![(1, t0 + Duration::from_secs(6))]
        );
    }

    /// Between prunings (every eighth of the interval) a write older than
    /// the interval no longer holds a use back.
    #[test]
    fn a_write_an_interval_old_is_not_held_against_a_use_between_prunings() {
        let r = UsageRecorder::new(Duration::from_secs(60));
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let now = Instant::now();
        r.record(1, t0);
        assert_eq!(r.take_due(now), vec![(1, t0)]);
        r.record(1, t0 + Duration::from_secs(50));
        // Pruned at 55 s (the write, 55 s old, is kept); at 61 s, 6 s later,
        // no pruning, and the write is past the interval.
        assert!(r.take_due(now + Duration::from_secs(55)).is_empty());
        assert_eq!(r.state.lock().unwrap().written.len(), 1);
        assert_eq!(
            r.take_due(now + Duration::from_secs(61)),
            vec![(1, t0 + Duration::from_secs(50))]
        );
    }

    #[test]
    fn failed_writes_are_kept() {
        let r = UsageRecorder::new(Duration::from_secs(60));
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        r.record(7, t0);
        let now = Instant::now();
        let due = r.take_due(now);
        r.restore(&due);
        assert_eq!(r.take_due(now), vec![(7, t0)]);
    }
}
