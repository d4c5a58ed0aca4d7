//! The one error type of the training stages.

use std::path::PathBuf;

/// Why a stage failed; every variant names what it was working on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Model(#[from] crate::models::Error),
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::Error),
    #[error(transparent)]
    Knockoff(#[from] super::knockoff_source::Error),
    #[error(transparent)]
    Core(#[from] scop_core::Error),
    #[error(
        "{stage}: the loss is {value} at epoch {epoch}, step {step}; stopping (lower the learning rate?)"
    )]
    NonFiniteLoss { stage: String, epoch: u32, step: u64, value: f64 },
    #[error("{stage}: {source}")]
    Torch {
        stage: String,
        #[source]
        source: tch::TchError,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Ctrl-C or SIGTERM: the stage wrote a checkpoint after this step and stopped.
    #[error(
        "{stage}: interrupted after epoch {epoch}, step {step}; a checkpoint was written, resume continues from it"
    )]
    Interrupted { stage: String, epoch: u32, step: u64 },
    #[error("{stage}: data-parallel: {message}")]
    Parallel { stage: String, message: String },
    /// A stage's input is missing or inconsistent (e.g. no plan before finetune).
    #[error("{0}")]
    Input(String),
}

impl Error {
    /// Whether the stage failed on its inputs, so that running it again cannot
    /// succeed: missing or malformed data, a plan, architecture or init
    /// checkpoint that does not fit the network, a knockoff generator that does
    /// not load, a missing stage input. A file that is missing counts; other I/O
    /// errors, libtorch errors, a non-finite loss, an interruption and
    /// data-parallel failures may not recur and are retried.
    pub fn is_permanent(&self) -> bool {
        use crate::data::DataError;
        use crate::models::Error as ModelError;
        let missing = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
        match self {
            Error::Data(DataError::Io { source, .. }) => missing(source),
            Error::Data(
                DataError::MissingFile { .. }
                | DataError::WrongMagic { .. }
                | DataError::Truncated { .. }
                | DataError::Malformed { .. }
                | DataError::LabelOutOfRange { .. }
                | DataError::ClassCount { .. }
                | DataError::EmptyClass { .. }
                | DataError::Undecodable { .. }
                | DataError::Spec { .. },
            ) => true,
            Error::Data(_) => false,
            Error::Model(ModelError::Io { source, .. }) => missing(source),
            Error::Model(
                ModelError::Core(_)
                | ModelError::File { .. }
                | ModelError::Checkpoint { .. }
                | ModelError::Input(_),
            ) => true,
            Error::Model(ModelError::Torch { .. } | ModelError::Mode(_)) => false,
            Error::Knockoff(super::knockoff_source::Error::LoadGenerator { .. }) => true,
            Error::Knockoff(_) => false,
            Error::Core(_) | Error::Input(_) => true,
            Error::Checkpoint(_)
            | Error::NonFiniteLoss { .. }
            | Error::Torch { .. }
            | Error::Io { .. }
            | Error::Interrupted { .. }
            | Error::Parallel { .. } => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches the stage name to libtorch errors.
pub trait InStage<T> {
    fn in_stage(self, stage: &str) -> Result<T>;
}

impl<T> InStage<T> for Result<T, tch::TchError> {
    fn in_stage(self, stage: &str) -> Result<T> {
        self.map_err(|source| Error::Torch { stage: stage.to_owned(), source })
    }
}

impl<T> InStage<T> for Result<T, String> {
    fn in_stage(self, stage: &str) -> Result<T> {
        self.map_err(|message| Error::Parallel { stage: stage.to_owned(), message })
    }
}

/// Writes a file atomically and durably (`scop_core::durable`): readers see
/// the old file or the new one, never half of it.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    scop_core::durable::write_atomic(path, bytes).map_err(|e| Error::Io { path: e.path, source: e.source })
}

/// `std::io::Error` with the path it concerns.
pub fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_owned(), source }
}
