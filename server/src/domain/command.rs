//! What the scheduler tells a worker agent, as plain data: assign a rank,
//! deliver its rendezvous record, cancel it. The worker port converts these to
//! `scop.v1` messages at its edge (`api/convert.rs`); the scheduler never
//! sees the protocol.

use std::path::PathBuf;

use scop_core::plan::Plan;
use scop_core::rendezvous::Rendezvous;
use scop_core::spec::DeviceKind;

use super::Stage;

/// One message for one worker.
#[derive(Debug, Clone)]
pub enum WorkerCommand {
    /// Run one rank of a stage (boxed: it carries the spec and the plan).
    Assign(Box<Assignment>),
    /// The rendezvous record an assigned rank was waiting for.
    Rendezvous { task_id: String, record: Rendezvous },
    /// Stop a rank.
    Cancel { task_id: String, reason: String },
}

/// One rank of one attempt, as its worker runs it.
#[derive(Debug, Clone)]
pub struct Assignment {
    pub task_id: String,
    pub job_id: String,
    pub stage: Stage,
    /// The job spec as submitted.
    pub spec_yaml: String,
    pub rank: u32,
    pub world_size: u32,
    /// Known at assignment for a one-rank group; a group's follows as
    /// [`WorkerCommand::Rendezvous`] once every part is in.
    pub rendezvous: Option<Rendezvous>,
    /// The checkpoint an earlier attempt left, if any.
    pub resume_from: Option<String>,
    pub attempt: u32,
    /// The job's directory in the artifact store.
    pub checkpoint_dir: PathBuf,
    pub device: DeviceKind,
    pub device_index: u32,
    /// The plan `decide` persisted, for the stages after it; none before.
    pub plan: Option<Plan>,
}
