//! Wakes `WatchJob` followers when a job gets new events.
//!
//! One `watch` channel per followed job carries the latest sequence number.
//! Followers always read the events themselves from the store, so a missed or
//! coalesced wake-up can never cause a gap or a duplicate.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

/// Per-job notifiers; entries exist only while someone follows the job.
#[derive(Debug, Default)]
pub struct EventHub {
    jobs: Mutex<HashMap<String, watch::Sender<u64>>>,
    /// Woken on every job's events, for the one follower of all of them (tracking).
    any: tokio::sync::Notify,
}

impl EventHub {
    /// A receiver that changes whenever `job_id` gets an event.
    pub fn subscribe(&self, job_id: &str) -> watch::Receiver<u64> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        jobs.retain(|_, sender| sender.receiver_count() > 0);
        jobs.entry(job_id.to_owned()).or_insert_with(|| watch::channel(0).0).subscribe()
    }

    /// Called after an event of `job_id` with `sequence` was committed.
    pub fn notify(&self, job_id: &str, sequence: u64) {
        self.any.notify_one();
        let mut jobs = self.jobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(sender) = jobs.get(job_id) {
            sender.send_replace(sequence);
            if sender.receiver_count() == 0 {
                jobs.remove(job_id);
            }
        }
    }

    /// Resolves after the next event of any job (at once if one came since the
    /// last call): a wake-up, not a count, for a single follower of every job.
    pub async fn any_event(&self) {
        self.any.notified().await;
    }

    /// Jobs someone follows now.
    pub fn followed_jobs(&self) -> usize {
        let jobs = self.jobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        jobs.values().filter(|s| s.receiver_count() > 0).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribers_see_the_latest_sequence_and_entries_go_away() {
        let hub = EventHub::default();
        hub.notify("a", 1); // nobody follows: nothing kept
        assert_eq!(hub.followed_jobs(), 0);
        let mut rx = hub.subscribe("a");
        hub.notify("a", 2);
        hub.notify("a", 3);
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 3);
        assert_eq!(hub.followed_jobs(), 1);
        drop(rx);
        hub.notify("a", 4);
        assert_eq!(hub.followed_jobs(), 0);
    }
}
