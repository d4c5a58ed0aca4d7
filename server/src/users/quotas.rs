//! Per-user limits: jobs queued and running, rank slots in use, the highest
//! priority, and concurrent `WatchJob` and `DownloadArtifact` streams.

use serde::{Deserialize, Serialize};

use super::Role;

/// A user's limits; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    /// Jobs of the user waiting in the queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queued_jobs: Option<u32>,
    /// Jobs of the user running at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_running_jobs: Option<u32>,
    /// Rank slots (the `resources.world_size` of the user's running jobs plus
    /// the new one's) in use at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rank_slots: Option<u32>,
    /// The highest `priority` a submission may ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_priority: Option<i32>,
    /// Concurrent `WatchJob` streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_watch_streams: Option<u32>,
    /// Concurrent `DownloadArtifact` streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_downloads: Option<u32>,
}

/// Streams a non-admin user may hold open unless the users file says otherwise.
pub const DEFAULT_WATCH_STREAMS: u32 = 32;
pub const DEFAULT_DOWNLOADS: u32 = 4;

impl Quotas {
    /// The built-in limits of a role: only admins raise priorities above 0,
    /// and only admins hold unlimited streams.
    pub fn for_role(role: Role) -> Quotas {
        match role {
            Role::Admin => Quotas::default(),
            Role::Viewer | Role::Submitter => Quotas {
                max_priority: Some(0),
                max_watch_streams: Some(DEFAULT_WATCH_STREAMS),
                max_downloads: Some(DEFAULT_DOWNLOADS),
                ..Quotas::default()
            },
        }
    }

    /// These limits where set, `base`'s elsewhere.
    pub fn over(&self, base: &Quotas) -> Quotas {
        Quotas {
            max_queued_jobs: self.max_queued_jobs.or(base.max_queued_jobs),
            max_running_jobs: self.max_running_jobs.or(base.max_running_jobs),
            max_rank_slots: self.max_rank_slots.or(base.max_rank_slots),
            max_priority: self.max_priority.or(base.max_priority),
            max_watch_streams: self.max_watch_streams.or(base.max_watch_streams),
            max_downloads: self.max_downloads.or(base.max_downloads),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Quotas::default()
    }
}

/// What a user has in the system now, as the store counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub queued_jobs: u32,
    pub running_jobs: u32,
    pub rank_slots: u32,
}

impl Quotas {
    /// The first quota a new job of `world_size` ranks at `priority` would
    /// exceed, as "quota: why"; `None` when it fits.
    pub fn admit(&self, usage: Usage, world_size: u32, priority: i32) -> Option<String> {
        if let Some(max) = self.max_priority.filter(|max| priority > *max) {
            return Some(format!("max_priority: priority {priority} is above this user's ceiling of {max}"));
        }
        if let Some(max) = self.max_queued_jobs.filter(|max| usage.queued_jobs >= *max) {
            return Some(format!("max_queued_jobs: {} of {max} queued jobs already", usage.queued_jobs));
        }
        // A new job waits in the queue, so running jobs and slots limit what may
        // be admitted alongside the ones already running.
        if let Some(max) = self.max_running_jobs.filter(|max| usage.running_jobs + usage.queued_jobs >= *max)
        {
            return Some(format!(
                "max_running_jobs: {} running and {} queued of {max} jobs at once",
                usage.running_jobs, usage.queued_jobs
            ));
        }
        if let Some(max) =
            self.max_rank_slots.filter(|max| usage.rank_slots.saturating_add(world_size) > *max)
        {
            return Some(format!(
                "max_rank_slots: {} rank slots in use (queued and running) + {world_size} asked > {max}",
                usage.rank_slots
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_names_the_first_quota_exceeded() {
        let quotas = Quotas {
            max_queued_jobs: Some(2),
            max_running_jobs: Some(3),
            max_rank_slots: Some(4),
            max_priority: Some(0),
            ..Quotas::default()
        };
        let check = |usage: Usage, world: u32, priority: i32, expected: Option<&str>| {
            let got = quotas.admit(usage, world, priority);
            match expected {
                None => assert_eq!(got, None),
                Some(prefix) => assert!(got.as_deref().is_some_and(|g| g.starts_with(prefix)), "{got:?}"),
            }
        };
        check(Usage::default(), 1, 0, None);
        check(Usage::default(), 1, 1, Some("max_priority"));
        check(Usage { queued_jobs: 2, ..Usage::default() }, 1, 0, Some("max_queued_jobs"));
        check(Usage { queued_jobs: 1, running_jobs: 2, rank_slots: 2 }, 1, 0, Some("max_running_jobs"));
        check(Usage { running_jobs: 1, rank_slots: 3, ..Usage::default() }, 2, 0, Some("max_rank_slots"));
        check(Usage { running_jobs: 1, rank_slots: 3, ..Usage::default() }, 1, 0, None);
        assert_eq!(Quotas::default().admit(Usage { queued_jobs: 99, ..Usage::default() }, 99, 99), None);
    }
}
