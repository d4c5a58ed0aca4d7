//! The open Connect streams of worker agents, by worker id: how the scheduler
//! sends assignments, rendezvous records and cancellations. It sends domain
//! [`WorkerCommand`]s; the worker port's sink turns them into `scop.v1`
//! messages, so no protocol type reaches the scheduler.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::domain::WorkerCommand;

/// Where a worker's commands go: its stream's sending half, behind the
/// conversion the worker port does.
pub trait CommandSink: std::fmt::Debug + Send + Sync {
    /// Queues `command` without waiting; false when the stream is closed or full.
    fn offer(&self, command: WorkerCommand) -> bool;
}

/// A worker stream's sending half.
pub type Outbox = Arc<dyn CommandSink>;

/// Registry of connected workers' outboxes. A reconnecting worker replaces its
/// old stream; the old session's detach then leaves the new one in place.
#[derive(Debug, Clone, Default)]
pub struct WorkerLinks {
    inner: Arc<Mutex<HashMap<String, (u64, Outbox)>>>,
    next: Arc<std::sync::atomic::AtomicU64>,
}

impl WorkerLinks {
    /// Registers `worker_id`'s stream; the returned generation detaches it.
    pub fn attach(&self, worker_id: &str, outbox: Outbox) -> u64 {
        let generation = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.lock().insert(worker_id.to_owned(), (generation, outbox));
        generation
    }

    /// Forgets the stream of `generation`, unless a newer one replaced it;
    /// true when it was still the worker's current stream.
    pub fn detach(&self, worker_id: &str, generation: u64) -> bool {
        let mut map = self.lock();
        let current = map.get(worker_id).is_some_and(|(g, _)| *g == generation);
        if current {
            map.remove(worker_id);
        }
        current
    }

    /// Whether `worker_id` has an open stream to send to. A worker is registered
    /// in the store a moment before its stream is attached; only attached
    /// workers are given ranks.
    pub fn is_attached(&self, worker_id: &str) -> bool {
        self.lock().contains_key(worker_id)
    }

    /// Queues `message` for `worker_id`; false when it has no open stream or
    /// its outbox is full (the caller treats the rank as unreachable).
    pub fn send(&self, worker_id: &str, command: WorkerCommand) -> bool {
        let Some(outbox) = self.lock().get(worker_id).map(|(_, o)| o.clone()) else { return false };
        outbox.offer(command)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, Outbox)>> {
        // A panic while holding this lock leaves the map consistent (single inserts
        // and removes), so a poisoned lock is still safe to use.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;

    impl CommandSink for mpsc::Sender<WorkerCommand> {
        fn offer(&self, command: WorkerCommand) -> bool {
            self.try_send(command).is_ok()
        }
    }

    fn cancel() -> WorkerCommand {
        WorkerCommand::Cancel { task_id: "t".into(), reason: "r".into() }
    }

    #[test]
    fn a_reconnect_survives_the_old_stream_detaching() {
        let links = WorkerLinks::default();
        assert!(!links.send("w", cancel()));
        assert!(!links.is_attached("w"));
        let (old, _old_rx) = mpsc::channel::<WorkerCommand>(1);
        let (new, mut new_rx) = mpsc::channel::<WorkerCommand>(1);
        let first = links.attach("w", Arc::new(old));
        links.attach("w", Arc::new(new));
        assert!(!links.detach("w", first), "the old stream is no longer current");
        assert!(links.is_attached("w"));
        assert!(links.send("w", cancel()));
        assert!(matches!(new_rx.try_recv(), Ok(WorkerCommand::Cancel { task_id, .. }) if task_id == "t"));
    }
}
