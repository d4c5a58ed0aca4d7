//! Worker liveness: when each worker was last heard from, and the sweep that
//! declares a worker lost once it has been silent for longer than the
//! heartbeat timeout.
//!
//! Heartbeats and task events only note the time in memory ([`Heard`]); the
//! sweep writes every noted time to the store in one transaction, at most a
//! second later, then looks for silent workers. A thousand workers beating
//! every second thus cost the store one write transaction a second, not a
//! thousand, and the store stays free for the calls that wait on it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::shutdown::Shutdown;
use crate::store::{Store, now_ms};

/// The longest a noted time waits before it reaches the store.
const FLUSH: Duration = Duration::from_secs(1);

/// Times workers were heard from that the store does not know yet.
#[derive(Debug, Clone, Default)]
pub struct Heard(Arc<Mutex<HashMap<String, i64>>>);

impl Heard {
    /// `worker_id` was heard from now.
    pub fn note(&self, worker_id: &str) {
        self.lock().insert(worker_id.to_owned(), now_ms());
    }

    /// Drops what was noted for `worker_id` (its stream ended; the store says so).
    pub fn forget(&self, worker_id: &str) {
        self.lock().remove(worker_id);
    }

    fn take(&self) -> Vec<(String, i64)> {
        self.lock().drain().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        // Single inserts and removes leave the map consistent, so a poisoned lock is still usable.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Until shutdown: every second (or a quarter of the timeout, if shorter)
/// writes the noted times, then declares the silent workers lost.
pub async fn sweep_lost_workers(store: Store, heard: Heard, timeout_ms: u32, mut shutdown: Shutdown) {
    let every = FLUSH.min(Duration::from_millis(u64::from(timeout_ms / 4))).max(Duration::from_millis(10));
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.wait() => return,
        }
        let seen = heard.take();
        if !seen.is_empty()
            && let Err(error) = store.touch_workers(seen).await
        {
            tracing::error!(%error, "recording worker heartbeats failed");
        }
        match store.mark_lost_workers(now_ms() - i64::from(timeout_ms)).await {
            Ok(lost) => {
                for worker_id in lost {
                    tracing::warn!(%worker_id, timeout_ms, "worker lost: no heartbeat within the timeout");
                }
            }
            Err(error) => tracing::error!(%error, "lost-worker sweep failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_time_per_worker_is_kept_until_taken() {
        let heard = Heard::default();
        heard.note("a");
        heard.note("b");
        heard.note("a");
        heard.forget("b");
        let taken = heard.take();
        assert_eq!(taken.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["a"]);
        assert!(heard.take().is_empty());
    }
}
