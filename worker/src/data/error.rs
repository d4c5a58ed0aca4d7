//! The one error type of the data module: every way a dataset or a loader can fail.
//!
//! Messages name the file (and the record inside it) and say what was expected and
//! what was found, e.g. `train-images-idx3-ubyte.gz: truncated at image 5121 of 60000`.
//! Paths are shown as the reader opened them: `data.root` joined with the file name.

use std::path::{Path, PathBuf};

/// Result alias of the data module.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: missing ({what})", .path.display())]
    MissingFile { path: PathBuf, what: String },

    #[error("{}: cannot read: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}: wrong magic number: expected {expected:#010x}, found {found:#010x}", .path.display())]
    WrongMagic { path: PathBuf, expected: u32, found: u32 },

    /// `record` is the 0-based index of the first incomplete record.
    #[error("{}: truncated at {kind} {record} of {total}", .path.display())]
    Truncated { path: PathBuf, kind: &'static str, record: usize, total: usize },

    #[error("{}: {detail}", .path.display())]
    Malformed { path: PathBuf, detail: String },

    #[error("{}: {kind} {record} has label {label}, but the model has {num_classes} classes (labels 0..{num_classes})", .path.display())]
    LabelOutOfRange { path: PathBuf, kind: &'static str, record: usize, label: u32, num_classes: usize },

    #[error("{}: {found} class folders, but model.num_classes is {expected}", .path.display())]
    ClassCount { path: PathBuf, found: usize, expected: usize },

    #[error("{}: class folder holds no JPEG or PNG image", .path.display())]
    EmptyClass { path: PathBuf },

    #[error("{}: cannot decode image: {reason}", .path.display())]
    Undecodable { path: PathBuf, reason: String },

    /// A spec field (`data.mean`, `model.in_channels`, …) that does not fit the data.
    #[error("{field}: {detail}")]
    Spec { field: &'static str, detail: String },

    #[error("loader: {0}")]
    Loader(String),

    #[error("loader: cannot build a batch tensor: {0}")]
    Tensor(#[from] tch::TchError),
}

impl DataError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            Self::MissingFile { path: path.to_owned(), what: "no such file".into() }
        } else {
            Self::Io { path: path.to_owned(), source }
        }
    }

    pub(crate) fn spec(field: &'static str, detail: impl Into<String>) -> Self {
        Self::Spec { field, detail: detail.into() }
    }
}
