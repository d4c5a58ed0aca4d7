//! The lost-worker sweep: a worker silent for longer than the heartbeat
//! timeout is declared lost.

use std::time::Duration;

use crate::shutdown::Shutdown;
use crate::store::{Store, now_ms};

/// Sweeps every `timeout / 4` until shutdown.
pub async fn sweep_lost_workers(store: Store, timeout_ms: u32, mut shutdown: Shutdown) {
    let mut ticker = tokio::time::interval(Duration::from_millis(u64::from(timeout_ms / 4).max(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.wait() => return,
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
