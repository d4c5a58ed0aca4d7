//! What a training stage reports while it runs: the JSON lines a rank process
//! writes on stdout, which the local launcher and the worker agent read.
//! The worker writes them ([`Event`] through its sinks); the agent, which never
//! links libtorch, parses them with this same type.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::stats::ScoreStatistics;

/// One report from a stage. Serialised with a `type` tag, one JSON object per line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    StageStarted {
        stage: String,
        epochs: u32,
        steps_per_epoch: u64,
    },
    /// Training progress, averaged since the last progress event (over ranks, too).
    Progress {
        stage: String,
        epoch: u32,
        epochs: u32,
        step: u64,
        steps: u64,
        loss: f64,
        accuracy: f64,
        samples_per_second: f64,
        eta_seconds: f64,
        lr: f64,
        /// Mean wall time of one training step over the window, and the part of
        /// it spent averaging gradients across ranks (0 on a single rank).
        #[serde(default)]
        step_seconds: f64,
        #[serde(default)]
        allreduce_seconds: f64,
    },
    /// Evaluation on the test split; `epoch` 0 means before training.
    Evaluated {
        stage: String,
        epoch: u32,
        loss: f64,
        top1: f64,
        top5: f64,
    },
    Statistics(ScoreStatistics),
    /// The pruning plan was decided from the score statistics.
    PlanDecided {
        policy: String,
        params_before: u64,
        params_after: u64,
        flops_before: u64,
        flops_after: u64,
    },
    CheckpointWritten {
        stage: String,
        path: PathBuf,
    },
    /// Resuming skipped damaged checkpoints (each `path: reason`) and restored an older one.
    CheckpointFallback {
        stage: String,
        restored: PathBuf,
        skipped: Vec<String>,
    },
    StageFinished {
        stage: String,
        seconds: f64,
    },
}

/// The exit status of a rank process whose failure no retry can fix: missing
/// or malformed data, a spec the worker rejects, a plan for another network, an
/// init checkpoint that does not fit. The agent reports such a failure as
/// permanent and the coordinator fails the job at once instead of retrying it.
/// (65 is `EX_DATAERR` of sysexits.h; every other non-zero status is transient.)
pub const PERMANENT_FAILURE_EXIT_CODE: i32 = 65;
