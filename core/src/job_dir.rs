//! Where a job's files live under its output directory, and the readers of the
//! ones other processes consume (plan, score statistics, stage metrics).
//!
//! ```text
//! <output>/metrics.jsonl              every event, one JSON object per line
//! <output>/pretrain/model.safetensors the pretrained dense weights (+ arch.json)
//! <output>/knockoff/model.safetensors the weights after the knockoff stage (without β)
//! <output>/knockoff/statistics.jsonl  β and |γ| per unit, one line per epoch
//! <output>/score/model.safetensors    the dense weights a criterion other than SCOP scored
//! <output>/score/statistics.jsonl     that criterion's scores per unit, one line
//! <output>/plan.json                  the pruning plan
//! <output>/finetune/model.safetensors the pruned, finetuned weights (+ arch.json)
//! <output>/<stage>/metrics.json       evaluation before and after a training stage
//! <output>/export/                    TorchScript, safetensors, arch.json, model-card.json
//! <output>/<stage>/checkpoints/       resumable checkpoints of a training stage
//! <output>/summary.json               the summary table of `scop-worker run`
//! ```
//!
//! Stages hand their results to the next one only through these files, so a stage
//! can run in another process or on another machine that shares the directory.
//! This is the only place their names are written.

use std::path::{Path, PathBuf};

use crate::error::{Error, FieldError, Result};
use crate::plan::Plan;
use crate::stage::Stage;
use crate::stats::ScoreStatistics;

/// Every event of a job, one JSON object per line.
pub const METRICS_LOG: &str = "metrics.jsonl";
/// The pruning plan the decide stage writes.
pub const PLAN_FILE: &str = "plan.json";
/// Score statistics of every knockoff epoch, one JSON line each.
pub const STATISTICS_FILE: &str = "statistics.jsonl";
/// A finished stage's evaluation before and after it trained.
pub const STAGE_METRICS_FILE: &str = "metrics.json";
/// Weights as safetensors, in a stage's directory and in the export.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The architecture of those weights.
pub const ARCH_FILE: &str = "arch.json";
/// The TorchScript module of the export.
pub const TORCHSCRIPT_FILE: &str = "model.pt";
/// The model card of the export.
pub const CARD_FILE: &str = "model-card.json";
/// The folder of a training stage's checkpoints.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
/// The memory layout `resources.memory_format: auto` chose for a training stage, and its timings.
pub const MEMORY_FORMAT_FILE: &str = "memory-format.json";
/// The summary of a local run.
pub const SUMMARY_FILE: &str = "summary.json";
/// The spec as a local run hands it to its rank processes, every path absolute.
pub const RANK_SPEC_FILE: &str = "job-spec.json";

/// The file layout of one job's output directory.
#[derive(Debug, Clone)]
pub struct JobDir {
    root: PathBuf,
}

impl JobDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A stage's directory, named after the stage.
    pub fn stage_dir(&self, stage: impl AsRef<str>) -> PathBuf {
        self.root.join(stage.as_ref())
    }

    /// The weights a training stage leaves for the next.
    pub fn model(&self, stage: impl AsRef<str>) -> PathBuf {
        self.stage_dir(stage).join(WEIGHTS_FILE)
    }

    /// The architecture of those weights.
    pub fn arch(&self, stage: impl AsRef<str>) -> PathBuf {
        self.stage_dir(stage).join(ARCH_FILE)
    }

    pub fn checkpoints(&self, stage: impl AsRef<str>) -> PathBuf {
        self.stage_dir(stage).join(CHECKPOINTS_DIR)
    }

    /// The layout a training stage chose by timing both, reused when it resumes.
    pub fn memory_format(&self, stage: impl AsRef<str>) -> PathBuf {
        self.stage_dir(stage).join(MEMORY_FORMAT_FILE)
    }

    /// Score statistics of every knockoff epoch.
    pub fn statistics(&self) -> PathBuf {
        self.statistics_of(Stage::Knockoff)
    }

    /// The score statistics a scoring stage (`knockoff` or `score`) wrote.
    pub fn statistics_of(&self, stage: Stage) -> PathBuf {
        self.stage_dir(stage).join(STATISTICS_FILE)
    }

    pub fn plan(&self) -> PathBuf {
        self.root.join(PLAN_FILE)
    }

    /// Metrics of a finished stage (evaluation, params, time), read by later stages and the summary.
    pub fn stage_metrics(&self, stage: impl AsRef<str>) -> PathBuf {
        self.stage_dir(stage).join(STAGE_METRICS_FILE)
    }

    pub fn export_dir(&self) -> PathBuf {
        self.stage_dir(Stage::Export)
    }

    /// The export's model card.
    pub fn card(&self) -> PathBuf {
        self.export_dir().join(CARD_FILE)
    }

    pub fn metrics_log(&self) -> PathBuf {
        self.root.join(METRICS_LOG)
    }

    pub fn summary(&self) -> PathBuf {
        self.root.join(SUMMARY_FILE)
    }

    pub fn rank_spec(&self) -> PathBuf {
        self.root.join(RANK_SPEC_FILE)
    }

    /// Writes the plan where the finetune and export stages read it, creating the directory.
    pub fn write_plan(&self, plan: &Plan) -> Result<()> {
        std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        // Atomically and durably: finetune never reads half a plan.
        crate::durable::write_atomic(&self.plan(), plan.to_json().as_bytes())
            .map_err(|e| crate::Error::Io { path: e.path.display().to_string(), source: e.source })
    }

    /// Reads the plan a decide step wrote.
    pub fn read_plan(&self) -> Result<Plan> {
        let path = self.plan();
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        Plan::from_json(&text, &path.display().to_string())
    }

    /// The score statistics of the last knockoff epoch, checked for shape.
    pub fn read_last_statistics(&self) -> Result<ScoreStatistics> {
        read_last_statistics(&self.statistics())
    }

    /// The last score statistics the scoring stage `stage` wrote, checked for shape.
    pub fn read_last_statistics_of(&self, stage: Stage) -> Result<ScoreStatistics> {
        read_last_statistics(&self.statistics_of(stage))
    }

    /// The figures of the export's model card that the summary table shows.
    pub fn read_export_figures(&self) -> Result<crate::summary::ExportFigures> {
        crate::summary::ExportFigures::read(&self.card())
    }

    /// Hands a sweep's shared stage outputs to one of its branches: every file
    /// directly in each of `stages`' folders (weights, architecture, score
    /// statistics, stage metrics; not the checkpoints) appears in the branch's
    /// folder of the same name, hard-linked where the file system allows and
    /// copied otherwise. Files the branch already has are kept, so handing
    /// twice (after a restart) changes nothing. Returns how many files it added.
    pub fn share_outputs(&self, branch: &JobDir, stages: &[Stage]) -> Result<usize> {
        let mut added = 0;
        for &stage in stages {
            let from = self.stage_dir(stage);
            let into = branch.stage_dir(stage);
            let entries = std::fs::read_dir(&from).map_err(io(&from))?;
            std::fs::create_dir_all(&into).map_err(io(&into))?;
            for entry in entries {
                let entry = entry.map_err(io(&from))?;
                let source = entry.path();
                if !entry.file_type().map_err(io(&source))?.is_file() {
                    continue;
                }
                let target = into.join(entry.file_name());
                if target.exists() {
                    continue;
                }
                // Through a temporary name, so a crash never leaves half a file under the real one.
                let partial = into.join(format!(".{}.partial", entry.file_name().to_string_lossy()));
                let _ = std::fs::remove_file(&partial);
                if std::fs::hard_link(&source, &partial).is_err() {
                    std::fs::copy(&source, &partial).map_err(io(&source))?;
                }
                std::fs::rename(&partial, &target).map_err(io(&target))?;
                added += 1;
            }
        }
        Ok(added)
    }

    /// A finished stage's metrics, as the stage wrote them.
    pub fn read_stage_metrics<T: serde::de::DeserializeOwned>(&self, stage: impl AsRef<str>) -> Result<T> {
        let path = self.stage_metrics(stage);
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        serde_json::from_str(&text).map_err(|e| {
            Error::Parse(FieldError::new(path.display().to_string(), format!("not stage metrics: {e}")))
        })
    }
}

/// The last line of a statistics file (one [`ScoreStatistics`] per line), checked for shape.
pub fn read_last_statistics(path: &Path) -> Result<ScoreStatistics> {
    let origin = || path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let last = text.lines().rev().find(|l| !l.trim().is_empty()).ok_or_else(|| {
        Error::Parse(FieldError::new(origin(), "no score statistics (did the knockoff or score stage run?)"))
    })?;
    let stats: ScoreStatistics = serde_json::from_str(last).map_err(|e| {
        Error::Parse(FieldError::new(origin(), format!("last line is not score statistics: {e}")))
    })?;
    if let Some(problem) = stats.check() {
        return Err(Error::Parse(FieldError::new(origin(), problem)));
    }
    Ok(stats)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.display().to_string(), source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::UnitStatistics;

    #[test]
    fn paths_are_named_after_stages() {
        let dir = JobDir::new("out");
        assert_eq!(dir.model(Stage::Knockoff), Path::new("out/knockoff/model.safetensors"));
        assert_eq!(dir.arch("finetune"), Path::new("out/finetune/arch.json"));
        assert_eq!(dir.checkpoints(Stage::Pretrain), Path::new("out/pretrain/checkpoints"));
        assert_eq!(dir.statistics(), Path::new("out/knockoff/statistics.jsonl"));
        assert_eq!(dir.statistics_of(Stage::Score), Path::new("out/score/statistics.jsonl"));
        assert_eq!(dir.stage_metrics(Stage::Finetune), Path::new("out/finetune/metrics.json"));
        assert_eq!(dir.export_dir(), Path::new("out/export"));
        assert_eq!(dir.plan(), Path::new("out/plan.json"));
    }

    #[test]
    fn readers_name_the_file_and_what_is_wrong_with_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = JobDir::new(tmp.path());
        let err = dir.read_plan().unwrap_err().to_string();
        assert!(err.starts_with(&dir.plan().display().to_string()), "{err}");

        std::fs::create_dir_all(dir.stage_dir(Stage::Knockoff)).unwrap();
        std::fs::write(dir.statistics(), "\n").unwrap();
        let err = dir.read_last_statistics().unwrap_err().to_string();
        assert!(
            err.ends_with("statistics.jsonl: no score statistics (did the knockoff or score stage run?)"),
            "{err}"
        );

        let unit = |beta: Vec<f32>| UnitStatistics::scop("layer1.0.conv1", beta, vec![1.0, 2.0]);
        let line =
            |epoch, beta| serde_json::to_string(&ScoreStatistics { epoch, units: vec![unit(beta)] }).unwrap();
        std::fs::write(
            dir.statistics(),
            format!("{}\n{}\n", line(1, vec![0.5, 0.5]), line(2, vec![1.0, 0.0])),
        )
        .unwrap();
        let last = dir.read_last_statistics().unwrap();
        assert_eq!((last.epoch, last.scores()["layer1.0.conv1"].clone()), (2, vec![1.0, -2.0]));
        std::fs::write(dir.statistics(), line(3, vec![2.0, 0.0])).unwrap();
        let err = dir.read_last_statistics().unwrap_err().to_string();
        assert!(err.ends_with("layer1.0.conv1: β must be in [0, 1], got 2"), "{err}");

        std::fs::write(dir.stage_metrics(Stage::Knockoff), "{").unwrap();
        let err = dir.read_stage_metrics::<serde_json::Value>(Stage::Knockoff).unwrap_err().to_string();
        assert!(err.contains("knockoff/metrics.json: not stage metrics"), "{err}");
    }

    #[test]
    fn a_branch_gets_the_shared_outputs_once_without_the_checkpoints() {
        let tmp = tempfile::tempdir().unwrap();
        let sweep = JobDir::new(tmp.path().join("sweep"));
        let branch = JobDir::new(tmp.path().join("branch"));
        std::fs::create_dir_all(sweep.checkpoints(Stage::Knockoff)).unwrap();
        std::fs::write(sweep.model(Stage::Knockoff), b"weights").unwrap();
        std::fs::write(sweep.statistics(), b"{}\n").unwrap();
        std::fs::write(sweep.checkpoints(Stage::Knockoff).join("step-1.safetensors"), b"ckpt").unwrap();
        assert_eq!(sweep.share_outputs(&branch, &[Stage::Knockoff]).unwrap(), 2);
        assert_eq!(std::fs::read(branch.model(Stage::Knockoff)).unwrap(), b"weights");
        assert_eq!(std::fs::read(branch.statistics()).unwrap(), b"{}\n");
        assert!(!branch.checkpoints(Stage::Knockoff).exists());
        // Again (a restart): nothing added, nothing changed.
        assert_eq!(sweep.share_outputs(&branch, &[Stage::Knockoff]).unwrap(), 0);
        // A stage the sweep never ran is an error naming its folder.
        let err = sweep.share_outputs(&branch, &[Stage::Pretrain]).unwrap_err().to_string();
        assert!(err.contains("pretrain"), "{err}");
    }
}
