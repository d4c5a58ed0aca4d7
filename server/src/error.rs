//! The one error type of `scop-server`, and its mapping to gRPC status codes.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::{JobState, Stage, TransitionError};

/// Every error the coordinator's library returns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The submitted spec does not parse or validate; every field problem is listed.
    #[error("invalid job spec:\n{0}")]
    InvalidSpec(scop_core::Error),
    /// A request field is malformed.
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    #[error("job {0:?} not found")]
    JobNotFound(String),
    #[error(
        "job {job_id:?} has no plan yet: the plan is decided after the knockoff stage (the job is {state})"
    )]
    PlanNotFound { job_id: String, state: JobState },
    #[error("job {job_id:?} has no file {path:?}")]
    ArtifactNotFound { job_id: String, path: String },
    #[error("job {job_id:?} has no score statistics{}: they are sent during the knockoff stage", epoch.map(|e| format!(" for epoch {e}")).unwrap_or_default())]
    StatisticsNotFound { job_id: String, epoch: Option<u32> },
    #[error("worker {0:?} not found")]
    WorkerNotFound(String),
    #[error("attempt {0:?} not found")]
    AttemptNotFound(String),
    /// A numbered task event arrived after a gap in its task's numbers.
    #[error(
        "task {task_id}: event {got} arrived before event {expected}; send the events again from {expected}"
    )]
    EventGap { task_id: String, expected: u64, got: u64 },
    /// A worker reported for a rank that is not placed on it.
    #[error("worker {worker_id} may not report for task {task_id}: that rank is placed on {placed_on}")]
    NotPlacedHere { worker_id: String, task_id: String, placed_on: String },
    #[error(
        "request_id {request_id:?} was already used for job {job_id} with a different spec, labels or priority"
    )]
    RequestIdReused { request_id: String, job_id: String },
    #[error("job {job_id}: {source}")]
    Transition {
        job_id: String,
        #[source]
        source: TransitionError,
    },
    /// Events are not appended after the terminal state change.
    #[error("job {job_id} already ended ({state}); no more events are recorded for it")]
    JobEnded { job_id: String, state: JobState },
    #[error("job {job_id} is {state}, not running stage {stage}")]
    StageNotRunning { job_id: String, stage: Stage, state: JobState },
    #[error("attempt {attempt_id} already ended ({state})")]
    AttemptEnded { attempt_id: String, state: &'static str },
    /// A stored row that this version cannot read.
    #[error("store: {table} row {key:?}: {detail}")]
    Corrupt { table: &'static str, key: String, detail: String },
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The store thread is gone (shutting down).
    #[error("the store is closed")]
    StoreClosed,
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The configuration is inconsistent, e.g. auth on without a token file.
    #[error("configuration: {0}")]
    Config(String),
    /// The caller's role does not allow the call, or the job is someone else's.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// A submission over one of the caller's quotas, or too many streams.
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
    /// The coordinator could not decide a job's plan (bad statistics or spec).
    #[error("decide: {0}")]
    Decide(String),
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn corrupt(table: &'static str, key: impl Into<String>, detail: impl ToString) -> Self {
        Error::Corrupt { table, key: key.into(), detail: detail.to_string() }
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        let message = error.to_string();
        match error {
            Error::InvalidSpec(spec_error) => {
                let mut details = ErrorDetails::new();
                for field in spec_error.field_errors() {
                    // The spec's root is the `spec_yaml` field itself.
                    let path = match field.path.as_str() {
                        "spec" => "spec_yaml".to_owned(),
                        path => format!("spec_yaml.{path}"),
                    };
                    details.add_bad_request_violation(path, field.message);
                }
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            Error::InvalidArgument { field, message: reason } => {
                let mut details = ErrorDetails::new();
                details.add_bad_request_violation(field, reason);
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            Error::JobNotFound(_)
            | Error::PlanNotFound { .. }
            | Error::ArtifactNotFound { .. }
            | Error::StatisticsNotFound { .. }
            | Error::WorkerNotFound(_)
            | Error::AttemptNotFound(_) => Status::not_found(message),
            Error::RequestIdReused { .. } => Status::already_exists(message),
            Error::NotPlacedHere { .. } => Status::permission_denied(message),
            Error::Transition { .. }
            | Error::JobEnded { .. }
            | Error::StageNotRunning { .. }
            | Error::AttemptEnded { .. }
            | Error::Decide(_) => Status::failed_precondition(message),
            Error::StoreClosed | Error::EventGap { .. } => Status::unavailable(message),
            Error::PermissionDenied(_) => Status::permission_denied(message),
            Error::QuotaExceeded(_) => Status::resource_exhausted(message),
            Error::Corrupt { .. }
            | Error::Sqlite(_)
            | Error::Io { .. }
            | Error::Config(_)
            | Error::Transport(_)
            | Error::Metrics(_)
            | Error::Reflection(_) => {
                tracing::error!(error = %message, "internal error");
                Status::internal(message)
            }
        }
    }
}
