//! Where jobs' checkpoints and artifacts live: a directory every worker and the
//! coordinator can read (under the data dir in standalone mode, a shared volume
//! on a cluster). Kept to one small trait so object storage can be added.

use std::path::PathBuf;

/// The artifact store as the scheduler and the API need it.
pub trait ArtifactStore {
    /// The directory a job's stages write into (`plan.json`, stage checkpoints,
    /// the export); the same path on every worker.
    fn job_dir(&self, job_id: &str) -> PathBuf;
}

/// A shared directory: `<root>/jobs/<job_id>`.
#[derive(Debug, Clone)]
pub struct LocalArtifacts {
    root: PathBuf,
}

impl LocalArtifacts {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
}

impl ArtifactStore for LocalArtifacts {
    fn job_dir(&self, job_id: &str) -> PathBuf {
        self.root.join("jobs").join(job_id)
    }
}
