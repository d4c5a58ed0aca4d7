//! Per-user counts of open `WatchJob` and `DownloadArtifact` streams, so one
//! user cannot hold every connection of the coordinator.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::Error;

/// Which kind of stream a permit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    Watch,
    Download,
}

impl StreamKind {
    fn quota(self) -> &'static str {
        match self {
            StreamKind::Watch => "max_watch_streams",
            StreamKind::Download => "max_downloads",
        }
    }
}

/// Open streams per (user, kind).
#[derive(Debug, Clone, Default)]
pub struct StreamLimits {
    open: Arc<Mutex<HashMap<(String, StreamKind), u32>>>,
}

/// One open stream; dropping it (when the stream's task ends) frees the place.
#[derive(Debug)]
pub struct StreamPermit {
    limits: StreamLimits,
    key: (String, StreamKind),
}

impl StreamLimits {
    /// A permit for one more stream of `user`, or RESOURCE_EXHAUSTED naming the quota.
    pub fn acquire(&self, user: &str, kind: StreamKind, max: Option<u32>) -> Result<StreamPermit, Error> {
        let key = (user.to_owned(), kind);
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = open.entry(key.clone()).or_insert(0);
        if let Some(max) = max.filter(|max| *count >= *max) {
            return Err(Error::QuotaExceeded(format!(
                "{}: user {user:?} already has {count} of {max} such streams open",
                kind.quota()
            )));
        }
        *count += 1;
        Ok(StreamPermit { limits: self.clone(), key })
    }

    #[cfg(test)]
    fn open(&self, user: &str, kind: StreamKind) -> u32 {
        let open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        open.get(&(user.to_owned(), kind)).copied().unwrap_or(0)
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_counted_per_user_and_kind_and_freed_on_drop() {
        let limits = StreamLimits::default();
        let a = limits.acquire("alice", StreamKind::Watch, Some(2)).unwrap();
        let _b = limits.acquire("alice", StreamKind::Watch, Some(2)).unwrap();
        let err = limits.acquire("alice", StreamKind::Watch, Some(2)).unwrap_err().to_string();
        assert!(err.contains("max_watch_streams") && err.contains("2 of 2"), "{err}");
        // Other users and other kinds are counted apart; no limit means none.
        limits.acquire("bob", StreamKind::Watch, Some(2)).unwrap();
        limits.acquire("alice", StreamKind::Download, Some(1)).unwrap();
        drop(a);
        assert_eq!(limits.open("alice", StreamKind::Watch), 1);
        let _c = limits.acquire("alice", StreamKind::Watch, Some(2)).unwrap();
        let _d = limits.acquire("alice", StreamKind::Watch, None).unwrap();
    }
}
