//! The coordinator's domain: jobs and their state machine, events, attempts,
//! workers and plans. No gRPC and no SQL here.

pub mod attempt;
pub mod command;
pub mod event;
pub mod job;
pub mod plan;
pub mod worker;

pub use attempt::{Attempt, AttemptState, NewAttempt, RankPlacement};
pub use command::{Assignment, WorkerCommand};
pub use event::{Artifact, EventKind, JobEvent, Progress};
pub use job::{Job, JobState, NewJob, Stage, StagePlan, StateKind, TransitionError};
pub use plan::{Plan, PlanGroup, PlanUnit, ScoreSummary, UnitStatistics};
pub use worker::{Device, Worker, WorkerHello, WorkerState};
