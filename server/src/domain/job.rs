//! The job state machine: `QUEUED → RUNNING(stage) → SUCCEEDED | FAILED | CANCELLED`
//! over the stages `pretrain? → knockoff → decide → finetune → export`.
//!
//! Pure data and rules; the store applies a transition together with its event
//! row, and the gRPC layer converts these types to `scop.v1`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use scop_core::stage::{Stage, StagePlan};

/// Where a job is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "stage")]
pub enum JobState {
    Queued,
    Running(Stage),
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    /// A terminal state never changes again, and its event is the job's last.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed | JobState::Cancelled)
    }

    /// The state's name without its stage, as stored in the `state` column.
    pub fn name(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running(_) => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Rebuilds a state from its stored name and stage column.
    pub fn from_stored(name: &str, stage: Option<Stage>) -> Option<JobState> {
        Some(match (name, stage) {
            ("queued", _) => JobState::Queued,
            ("running", Some(stage)) => JobState::Running(stage),
            ("succeeded", _) => JobState::Succeeded,
            ("failed", _) => JobState::Failed,
            ("cancelled", _) => JobState::Cancelled,
            _ => return None,
        })
    }

    /// Checks that a job with `plan` may move from `self` to `to`:
    /// - queued starts with the plan's first stage;
    /// - a running stage moves only to the next stage of the plan;
    /// - only the last stage succeeds;
    /// - anything not terminal may fail or be cancelled.
    pub fn check_transition(self, to: JobState, plan: &StagePlan) -> Result<(), TransitionError> {
        let allowed = match (self, to) {
            (JobState::Succeeded | JobState::Failed | JobState::Cancelled, _) => false,
            (_, JobState::Failed | JobState::Cancelled) => true,
            (JobState::Queued, JobState::Running(stage)) => stage == plan.first(),
            (JobState::Running(current), JobState::Running(stage)) => plan.next(current) == Some(stage),
            (JobState::Running(current), JobState::Succeeded) => current == plan.last(),
            (JobState::Queued, JobState::Queued | JobState::Succeeded)
            | (JobState::Running(_), JobState::Queued) => false,
        };
        if allowed { Ok(()) } else { Err(TransitionError { from: self, to }) }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobState::Running(stage) => write!(f, "running({stage})"),
            other => f.write_str(other.name()),
        }
    }
}

/// A job state without its stage, for filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateKind {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl StateKind {
    /// The stored name, as [`JobState::name`].
    pub fn name(self) -> &'static str {
        match self {
            StateKind::Queued => "queued",
            StateKind::Running => "running",
            StateKind::Succeeded => "succeeded",
            StateKind::Failed => "failed",
            StateKind::Cancelled => "cancelled",
        }
    }
}

/// A transition the state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a job cannot move from {from} to {to}")]
pub struct TransitionError {
    pub from: JobState,
    pub to: JobState,
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: String,
    pub state: JobState,
    /// The stage running now or the last one that ran; `None` before the first.
    pub stage: Option<Stage>,
    pub stages: StagePlan,
    pub spec_yaml: String,
    pub labels: BTreeMap<String, String>,
    pub priority: i32,
    pub request_id: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// Why it failed or was cancelled.
    pub error: Option<String>,
    /// Attempt number of the current stage; 0 while queued.
    pub attempt: u32,
    /// Sequence number of the latest event.
    pub last_sequence: u64,
    /// The user who submitted it; empty for jobs from before users existed.
    pub owner: String,
    /// The spec's `name`; empty if it has none (or for jobs from before it was kept).
    pub name: String,
    /// For a branch of a sweep: the sweep job.
    pub parent_id: Option<String>,
    /// For a branch of a sweep: its candidate's name; empty otherwise.
    pub candidate: String,
}

/// What a submission asks the store to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub spec_yaml: String,
    pub stages: StagePlan,
    pub labels: BTreeMap<String, String>,
    pub priority: i32,
    pub request_id: Option<String>,
    /// The submitting user.
    pub owner: String,
    /// `resources.world_size`, counted against the owner's rank slots.
    pub world_size: u32,
    /// The spec's `name`, for listings without the spec.
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(pretrain: bool) -> StagePlan {
        let stored = if pretrain {
            "pretrain,knockoff,decide,finetune,export"
        } else {
            "knockoff,decide,finetune,export"
        };
        StagePlan::from_stored(stored).unwrap()
    }

    fn check(from: JobState, to: JobState, pretrain: bool, allowed: bool) {
        let got = from.check_transition(to, &plan(pretrain));
        assert_eq!(got.is_ok(), allowed, "{from} -> {to} (pretrain: {pretrain}): {got:?}");
    }

    #[test]
    fn transitions_follow_the_stage_plan() {
        use JobState::*;
        use Stage::*;
        check(Queued, Running(Knockoff), false, true);
        check(Queued, Running(Pretrain), false, false);
        check(Queued, Running(Pretrain), true, true);
        check(Queued, Running(Knockoff), true, false);
        check(Running(Pretrain), Running(Knockoff), true, true);
        check(Running(Knockoff), Running(Decide), false, true);
        check(Running(Knockoff), Running(Finetune), false, false);
        check(Running(Decide), Running(Finetune), false, true);
        check(Running(Finetune), Running(Export), false, true);
        check(Running(Export), Succeeded, false, true);
        check(Running(Finetune), Succeeded, false, false);
        check(Queued, Succeeded, false, false);
        check(Running(Knockoff), Queued, false, false);
        check(Queued, Queued, false, false);
    }

    #[test]
    fn only_live_jobs_fail_or_cancel() {
        use JobState::*;
        for from in [Queued, Running(Stage::Decide)] {
            check(from, Failed, false, true);
            check(from, Cancelled, false, true);
        }
        for from in [Succeeded, Failed, Cancelled] {
            for to in [Queued, Running(Stage::Knockoff), Succeeded, Failed, Cancelled] {
                check(from, to, false, false);
            }
        }
    }

    #[test]
    fn stored_forms_round_trip() {
        let p = plan(true);
        assert_eq!(p.to_stored(), "pretrain,knockoff,decide,finetune,export");
        assert_eq!(StagePlan::from_stored(&p.to_stored()), Some(p));
        assert_eq!(StagePlan::from_stored("knockoff,bogus"), None);
        for state in [JobState::Queued, JobState::Running(Stage::Export), JobState::Cancelled] {
            let stage = match state {
                JobState::Running(s) => Some(s),
                _ => None,
            };
            assert_eq!(JobState::from_stored(state.name(), stage), Some(state));
        }
        assert_eq!(JobState::from_stored("running", None), None);
    }

    #[test]
    fn transition_error_names_both_states() {
        let err = JobState::Succeeded.check_transition(JobState::Cancelled, &plan(false)).unwrap_err();
        assert_eq!(err.to_string(), "a job cannot move from succeeded to cancelled");
    }
}
