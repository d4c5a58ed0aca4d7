//! Stage attempts and their ranks: what the scheduler places, retries and re-attaches.
//!
//! An attempt is one try of one stage with `world_size` ranks. Each rank is a
//! task on one worker slot. After a coordinator restart, running attempts are
//! re-attached when their workers say Hello with the task ids still running,
//! and otherwise failed and retried from `last_checkpoint`.

use super::job::Stage;

/// Where an attempt is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptState {
    /// Created; its ranks are being placed and started.
    Pending,
    /// Every rank was assigned.
    Running,
    Succeeded,
    /// A rank failed, or its worker was lost; see `error`.
    Failed,
    Cancelled,
}

impl AttemptState {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptState::Pending => "pending",
            AttemptState::Running => "running",
            AttemptState::Succeeded => "succeeded",
            AttemptState::Failed => "failed",
            AttemptState::Cancelled => "cancelled",
        }
    }

    pub fn parse(name: &str) -> Option<AttemptState> {
        [
            AttemptState::Pending,
            AttemptState::Running,
            AttemptState::Succeeded,
            AttemptState::Failed,
            AttemptState::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }

    /// Pending and running attempts hold slots.
    pub fn is_live(self) -> bool {
        matches!(self, AttemptState::Pending | AttemptState::Running)
    }
}

/// One try of one stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub id: String,
    pub job_id: String,
    pub stage: Stage,
    /// From 1 within the stage.
    pub number: u32,
    pub state: AttemptState,
    pub world_size: u32,
    /// The checkpoint it started from, if any.
    pub resume_from: Option<String>,
    /// The latest checkpoint any of its ranks wrote.
    pub last_checkpoint: Option<String>,
    /// Rank 0's rendezvous record, as JSON, once it reported it.
    pub rendezvous_json: Option<String>,
    pub created_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub error: Option<String>,
    pub ranks: Vec<RankPlacement>,
}

/// Where one rank of an attempt runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankPlacement {
    pub rank: u32,
    pub worker_id: String,
    /// Index of the worker's device (slot) the rank uses.
    pub device_index: u32,
    /// Unique per attempt and rank; the worker's events carry it.
    pub task_id: String,
}

/// What the scheduler asks the store to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAttempt {
    pub job_id: String,
    pub stage: Stage,
    pub world_size: u32,
    pub resume_from: Option<String>,
    /// `(worker_id, device_index)` per rank, rank 0 first; empty for `decide`.
    pub placement: Vec<(String, u32)>,
}
