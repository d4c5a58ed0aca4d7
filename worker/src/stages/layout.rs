//! Where a job's files live under its output directory.
//!
//! ```text
//! <output>/metrics.jsonl              every event, one JSON object per line
//! <output>/pretrain/model.safetensors the pretrained dense weights (+ arch.json)
//! <output>/knockoff/model.safetensors the weights after the knockoff stage (without β)
//! <output>/knockoff/statistics.jsonl  β and |γ| per unit, one line per epoch
//! <output>/plan.json                  the pruning plan
//! <output>/finetune/model.safetensors the pruned, finetuned weights (+ arch.json)
//! <output>/export/                    TorchScript, safetensors, arch.json, model-card.json
//! <output>/<stage>/checkpoints/       resumable checkpoints of a training stage
//! ```
//!
//! Stages hand their results to the next one only through these files, so a stage
//! can run in another process or on another machine that shares the directory.

use std::path::{Path, PathBuf};

/// The file layout of one job's output directory.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn stage_dir(&self, stage: &str) -> PathBuf {
        self.root.join(stage)
    }

    /// The weights a training stage leaves for the next.
    pub fn model(&self, stage: &str) -> PathBuf {
        self.stage_dir(stage).join("model.safetensors")
    }

    /// The architecture of those weights.
    pub fn arch(&self, stage: &str) -> PathBuf {
        self.stage_dir(stage).join("arch.json")
    }

    pub fn checkpoints(&self, stage: &str) -> PathBuf {
        self.stage_dir(stage).join("checkpoints")
    }

    /// Score statistics of every knockoff epoch.
    pub fn statistics(&self) -> PathBuf {
        self.stage_dir("knockoff").join("statistics.jsonl")
    }

    pub fn plan(&self) -> PathBuf {
        self.root.join("plan.json")
    }

    /// Metrics of a finished stage (evaluation, params, time), read by later stages and the summary.
    pub fn stage_metrics(&self, stage: &str) -> PathBuf {
        self.stage_dir(stage).join("metrics.json")
    }

    pub fn export_dir(&self) -> PathBuf {
        self.root.join("export")
    }

    pub fn metrics_log(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }
}
