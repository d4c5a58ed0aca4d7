//! The one error type of `scop-core`.

use std::fmt;

/// A problem found in a value at a field path, e.g. `finetune.lr: must be > 0, got -0.1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the offending field, e.g. `prune.rate` or `data.mean[1]`.
    pub path: String,
    /// What was expected and what was found.
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into() }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every error `scop-core` can return.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The document is not valid YAML or does not have the spec's shape.
    #[error("{0}")]
    Parse(FieldError),
    /// The document has several fields of the wrong shape (unknown, wrong type,
    /// missing); every one is listed.
    #[error("{}", render_invalid(.0))]
    Shape(Vec<FieldError>),
    /// The document parsed but some values are out of range; every problem is listed.
    #[error("{}", render_invalid(.0))]
    Invalid(Vec<FieldError>),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn render_invalid(errors: &[FieldError]) -> String {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

impl Error {
    /// The individual field errors, for clients that show them one per line.
    pub fn field_errors(&self) -> Vec<FieldError> {
        match self {
            Error::Parse(e) => vec![e.clone()],
            Error::Shape(errors) | Error::Invalid(errors) => errors.clone(),
            Error::Io { path, source } => vec![FieldError::new(path.clone(), source.to_string())],
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
