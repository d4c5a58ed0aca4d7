//! Worker liveness: when each worker was last heard from, and the sweep that
//! declares a worker lost once it has been silent for longer than the
//! heartbeat timeout.
//!
//! Every message a worker's stream delivers notes the time in memory
//! ([`Heard`]), before anything is written, and a session that is busy with
//! one of the worker's messages (waiting on the store or the scheduler) counts
//! its worker as heard from *now*: slowness on the coordinator's side is never
//! the worker's silence. The sweep writes the noted times to the store in one
//! transaction, at most a second later, then declares lost the workers that
//! neither the store nor the memory has heard from within the timeout. The
//! memory is consulted at the moment of the decision, so a store that stalled
//! for longer than the timeout (its queue behind a slow write) cannot make
//! live workers look silent. A thousand workers beating every second thus cost
//! the store one write transaction a second, not a thousand.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::shutdown::Shutdown;
use crate::store::{Store, now_ms};

/// The longest a noted time waits before it reaches the store.
const FLUSH: Duration = Duration::from_secs(1);

/// What the memory knows of one worker with an open stream.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    /// When its stream last delivered a message.
    at_ms: i64,
    /// Whether that time still has to reach the store.
    unwritten: bool,
    /// Messages of it the coordinator is still handling.
    busy: u32,
}

/// When workers with an open stream were last heard from.
#[derive(Debug, Clone, Default)]
pub struct Heard(Arc<Mutex<HashMap<String, Seen>>>);

impl Heard {
    /// `worker_id`'s stream delivered a message now.
    pub fn note(&self, worker_id: &str) {
        let mut map = self.lock();
        let seen = map.entry(worker_id.to_owned()).or_default();
        seen.at_ms = seen.at_ms.max(now_ms());
        seen.unwritten = true;
    }

    /// Notes `worker_id` heard from now and counts it as heard from until the
    /// returned guard drops (the coordinator is handling its message).
    pub fn busy(&self, worker_id: &str) -> Busy {
        self.note(worker_id);
        self.lock().entry(worker_id.to_owned()).or_default().busy += 1;
        Busy { heard: self.clone(), worker_id: worker_id.to_owned() }
    }

    /// Drops what was noted for `worker_id` (its stream ended; the store says so).
    pub fn forget(&self, worker_id: &str) {
        self.lock().remove(worker_id);
    }

    /// The times the store does not know yet.
    fn take(&self) -> Vec<(String, i64)> {
        let mut map = self.lock();
        let mut taken = Vec::new();
        for (id, seen) in map.iter_mut() {
            if std::mem::take(&mut seen.unwritten) {
                taken.push((id.clone(), seen.at_ms));
            }
        }
        taken
    }

    /// Workers heard from since `since_ms`, or whose message is being handled.
    fn alive_since(&self, since_ms: i64) -> Vec<String> {
        let map = self.lock();
        map.iter()
            .filter(|(_, seen)| seen.busy > 0 || seen.at_ms >= since_ms)
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Seen>> {
        // Single inserts and removes leave the map consistent, so a poisoned lock is still usable.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Keeps its worker heard from while the coordinator handles its message.
#[derive(Debug)]
pub struct Busy {
    heard: Heard,
    worker_id: String,
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut map = self.heard.lock();
        if let Some(seen) = map.get_mut(&self.worker_id) {
            seen.busy = seen.busy.saturating_sub(1);
            seen.at_ms = seen.at_ms.max(now_ms());
            seen.unwritten = true;
        }
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
        sweep_once(&store, &heard, timeout_ms).await;
    }
}

/// One flush and lost-worker decision.
async fn sweep_once(store: &Store, heard: &Heard, timeout_ms: u32) {
    let seen = heard.take();
    if !seen.is_empty()
        && let Err(error) = store.touch_workers(seen.clone()).await
    {
        tracing::error!(%error, "recording worker heartbeats failed");
        // Keep them for the next flush.
        let mut map = heard.lock();
        for (id, _) in seen {
            if let Some(entry) = map.get_mut(&id) {
                entry.unwritten = true;
            }
        }
    }
    // The cutoff and the memory's answer are taken now, after the flush: a
    // flush that waited on a busy store must not age the workers it carried.
    let cutoff = now_ms() - i64::from(timeout_ms);
    let alive = heard.alive_since(cutoff);
    match store.mark_lost_workers(cutoff, alive).await {
        Ok(lost) => {
            for worker_id in lost {
                tracing::warn!(%worker_id, timeout_ms, "worker lost: no heartbeat within the timeout");
            }
        }
        Err(error) => tracing::error!(%error, "lost-worker sweep failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Device, WorkerHello, WorkerState};

    #[test]
    fn the_latest_time_per_worker_is_written_once_and_busy_workers_stay_alive() {
        let heard = Heard::default();
        heard.note("a");
        heard.note("b");
        heard.note("a");
        heard.forget("b");
        let taken = heard.take();
        assert_eq!(taken.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["a"]);
        assert!(heard.take().is_empty());
        // Nothing heard since the future, yet a worker whose message is being handled is alive.
        let future = now_ms() + 60_000;
        assert!(heard.alive_since(future).is_empty());
        let busy = heard.busy("a");
        assert_eq!(heard.alive_since(future), ["a"]);
        drop(busy);
        assert!(heard.alive_since(future).is_empty());
        assert_eq!(heard.take().len(), 1, "the end of the handling is a time worth writing");
    }

    /// The bug behind "healthy workers declared lost": the sweep took the
    /// noted times, its flush then waited behind a store write that took
    /// longer than the timeout, and the decision compared those old times with
    /// the time after the wait. Every worker was declared lost in the same
    /// second although their streams were alive (the sessions were themselves
    /// waiting on the store with a message in hand).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_store_never_makes_live_workers_lost() {
        let (store, _dir) = crate::store::test_support::temp_store().await;
        let hello = |host: &str| WorkerHello {
            worker_id: None,
            hostname: host.into(),
            agent_version: "test".into(),
            devices: vec![Device { kind: "cpu".into(), index: 0, name: "cpu".into(), memory_bytes: 0 }],
            cpu_cores: 1,
        };
        let busy_worker = store.register_worker(hello("busy")).await.unwrap();
        let beating = store.register_worker(hello("beating")).await.unwrap();
        let silent = store.register_worker(hello("silent")).await.unwrap();
        let heard = Heard::default();
        heard.note(&busy_worker.id);
        heard.note(&beating.id);
        // A session waits on the store with this worker's message in hand.
        let _handling = heard.busy(&busy_worker.id);
        // Another worker's heartbeats keep arriving while the store is stuck.
        let beats = {
            let (heard, id) = (heard.clone(), beating.id.clone());
            tokio::spawn(async move {
                loop {
                    heard.note(&id);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        let stall = {
            let store = store.clone();
            tokio::spawn(async move { store.stall_writer_for_test(Duration::from_millis(1500)).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        sweep_once(&store, &heard, 500).await;
        stall.await.unwrap();
        beats.abort();
        let state = |id: String| {
            let store = store.clone();
            async move { store.get_worker(&id).await.unwrap().state }
        };
        assert_eq!(state(busy_worker.id).await, WorkerState::Connected);
        assert_eq!(state(beating.id).await, WorkerState::Connected);
        // A worker nothing was heard from for the whole time is still lost.
        assert_eq!(state(silent.id).await, WorkerState::Lost);
    }
}
