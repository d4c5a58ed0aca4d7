//! Job events: the append-only log every job keeps, numbered from 1 without gaps.
//!
//! Events are stored as JSON of [`EventKind`], so adding a kind needs no migration.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::job::{JobState, Stage};

/// One entry of a job's event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    pub job_id: String,
    pub sequence: u64,
    pub time_ms: i64,
    pub kind: EventKind,
}

impl JobEvent {
    /// True for the state change into a terminal state: always a job's last event.
    pub fn is_terminal(&self) -> bool {
        matches!(&self.kind, EventKind::StateChanged { to, .. } if to.is_terminal())
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum EventKind {
    /// `from` is `None` for the submission event.
    StateChanged {
        from: Option<JobState>,
        to: JobState,
        reason: Option<String>,
    },
    StageStarted {
        stage: Stage,
        attempt: u32,
        world_size: u32,
    },
    StageFinished {
        stage: Stage,
        attempt: u32,
        seconds: f64,
        metrics: BTreeMap<String, f64>,
    },
    Progress(Progress),
    ScoreStatisticsReceived {
        stage: Stage,
        epoch: u32,
        units: u32,
    },
    PlanDecided {
        units: u32,
        channels_before: u64,
        channels_after: u64,
    },
    ArtifactsReady {
        stage: Stage,
        artifacts: Vec<Artifact>,
    },
    Error {
        stage: Option<Stage>,
        attempt: u32,
        message: String,
        retrying: bool,
    },
    /// Worth knowing, not a failure (a damaged checkpoint skipped on resume).
    Notice {
        stage: Stage,
        attempt: u32,
        message: String,
    },
    /// Rank 0 evaluated on the test split; `epoch` 0 is before the stage trained.
    Evaluated {
        stage: Stage,
        epoch: u32,
        loss: f64,
        top1: f64,
        top5: f64,
    },
}

impl EventKind {
    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::StateChanged { .. } => "state_changed",
            EventKind::StageStarted { .. } => "stage_started",
            EventKind::StageFinished { .. } => "stage_finished",
            EventKind::Progress(_) => "progress",
            EventKind::ScoreStatisticsReceived { .. } => "statistics_received",
            EventKind::PlanDecided { .. } => "plan_decided",
            EventKind::ArtifactsReady { .. } => "artifacts_ready",
            EventKind::Error { .. } => "error",
            EventKind::Evaluated { .. } => "evaluated",
            EventKind::Notice { .. } => "notice",
        }
    }
}

/// Training progress of a stage, as rank 0 reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub stage: Stage,
    pub epoch: u32,
    pub epochs: u32,
    pub step: u64,
    pub steps: u64,
    pub loss: f64,
    pub accuracy: f64,
    pub samples_per_second: f64,
    /// Seconds the stage has left, as the trainer estimated it.
    pub eta_seconds: f64,
}

/// A file a job produced, relative to the artifact store's root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub kind: String,
    pub path: String,
    pub size_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_their_stored_json() {
        let kinds = [
            EventKind::StateChanged { from: None, to: JobState::Queued, reason: None },
            EventKind::StateChanged {
                from: Some(JobState::Running(Stage::Knockoff)),
                to: JobState::Failed,
                reason: Some("rank 1 lost".into()),
            },
            EventKind::Progress(Progress {
                stage: Stage::Finetune,
                epoch: 2,
                epochs: 3,
                step: 7,
                steps: 100,
                loss: 0.25,
                accuracy: 0.875,
                samples_per_second: 480.0,
                eta_seconds: 12.5,
            }),
            EventKind::Evaluated { stage: Stage::Knockoff, epoch: 0, loss: 0.3, top1: 0.9, top5: 0.99 },
            EventKind::ArtifactsReady {
                stage: Stage::Export,
                artifacts: vec![Artifact {
                    kind: "safetensors".into(),
                    path: "j/model.safetensors".into(),
                    size_bytes: 9,
                }],
            },
        ];
        for kind in kinds {
            let json = serde_json::to_string(&kind).unwrap();
            let back: EventKind = serde_json::from_str(&json).unwrap();
            assert_eq!(back, kind, "{json}");
        }
    }

    #[test]
    fn only_a_terminal_state_change_ends_the_log() {
        let event = |kind| JobEvent { job_id: "j".into(), sequence: 1, time_ms: 0, kind };
        assert!(
            event(EventKind::StateChanged { from: None, to: JobState::Cancelled, reason: None })
                .is_terminal()
        );
        assert!(
            !event(EventKind::StateChanged { from: None, to: JobState::Queued, reason: None }).is_terminal()
        );
        assert!(
            !event(EventKind::PlanDecided { units: 1, channels_before: 2, channels_after: 1 }).is_terminal()
        );
    }
}
