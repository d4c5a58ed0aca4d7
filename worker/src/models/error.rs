//! The error type of models, pruning and export.

use std::fmt;

/// A variable whose shape in a checkpoint differs from the network's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    pub name: String,
    pub expected: Vec<i64>,
    pub found: Vec<i64>,
}

impl fmt::Display for ShapeMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: expected shape {:?}, found {:?}", self.name, self.expected, self.found)
    }
}

/// Every error of building, running, pruning, loading and exporting models.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An architecture description, score map or plan that does not fit.
    #[error(transparent)]
    Core(#[from] scop_core::Error),
    /// libtorch refused an operation; `context` says which.
    #[error("{context}: {source}")]
    Torch {
        context: String,
        #[source]
        source: tch::TchError,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A file that parsed but does not hold what it should.
    #[error("{path}: {message}")]
    File { path: String, message: String },
    /// A strict checkpoint load found names or shapes that do not match the network.
    #[error("{}", render_checkpoint(path, missing, unexpected, mismatched))]
    Checkpoint { path: String, missing: Vec<String>, unexpected: Vec<String>, mismatched: Vec<ShapeMismatch> },
    /// An input tensor the network cannot take, e.g. the wrong channel count.
    #[error("input: {0}")]
    Input(String),
    /// An operation the model's current mode does not allow.
    #[error("{0}")]
    Mode(String),
}

fn render_checkpoint(
    path: &str,
    missing: &[String],
    unexpected: &[String],
    mismatched: &[ShapeMismatch],
) -> String {
    let mut text = format!("{path}: does not match the network");
    let mut section = |title: &str, items: Vec<String>| {
        if !items.is_empty() {
            text.push_str(&format!("\n  {title} ({}): {}", items.len(), items.join(", ")));
        }
    };
    section("missing", missing.to_vec());
    section("unexpected", unexpected.to_vec());
    section("shape mismatch", mismatched.iter().map(ToString::to_string).collect());
    text
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches a context to libtorch errors: `.ctx("layer1.0.conv1 forward")?`.
pub trait TorchContext<T> {
    fn ctx(self, context: impl fmt::Display) -> Result<T>;
}

impl<T> TorchContext<T> for std::result::Result<T, tch::TchError> {
    fn ctx(self, context: impl fmt::Display) -> Result<T> {
        self.map_err(|source| Error::Torch { context: context.to_string(), source })
    }
}
