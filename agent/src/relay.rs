//! Turns a trainer's JSON event lines into the `TaskEvent`s the coordinator
//! understands, and assembles the final `TaskFinished`: the stage's last
//! evaluation and time, and for the export its files and the model card's
//! figures (the keys `StageFinished.metrics` documents in `jobs.proto`).

use std::collections::HashMap;
use std::path::Path;

use scop_core::event::Event;
use scop_core::job_dir::{ARCH_FILE, CARD_FILE, TORCHSCRIPT_FILE, WEIGHTS_FILE};
use scop_core::summary::ExportFigures;
use scop_proto::v1 as pb;

/// The relay state of one rank's trainer.
#[derive(Debug, Default)]
pub struct Relay {
    /// Figures for `TaskFinished.metrics`: the last evaluation and stage time.
    metrics: HashMap<String, f64>,
}

impl Relay {
    /// The task event for one stdout line of the trainer; `None` for lines that
    /// are not events or events the coordinator does not take.
    pub fn translate(&mut self, line: &str) -> Option<pb::task_event::Kind> {
        use pb::task_event::Kind;
        let event: Event = serde_json::from_str(line.trim()).ok()?;
        match event {
            Event::Progress {
                epoch,
                epochs,
                step,
                steps,
                loss,
                accuracy,
                samples_per_second,
                eta_seconds,
                step_seconds,
                allreduce_seconds,
                ..
            } => {
                Some(Kind::Progress(pb::TaskProgress {
                    epoch,
                    step,
                    steps,
                    loss,
                    accuracy,
                    samples_per_second,
                    epochs,
                    step_seconds,
                    allreduce_seconds,
                    // The trainer's own estimate, carried as it is: nobody computes it again.
                    eta_seconds,
                }))
            }
            Event::Statistics(stats) => Some(Kind::Statistics(pb::ScoreStatistics {
                epoch: stats.epoch,
                units: stats
                    .units
                    .into_iter()
                    .map(|u| pb::UnitStatistics {
                        unit: u.unit,
                        beta: u.beta,
                        gamma_abs: u.gamma_abs,
                        score: u.score,
                    })
                    .collect(),
            })),
            Event::CheckpointWritten { path, .. } => {
                Some(Kind::CheckpointWritten(path.display().to_string()))
            }
            Event::Evaluated { epoch, loss, top1, top5, .. } => {
                self.metrics.insert("test_loss".into(), loss);
                self.metrics.insert("top1".into(), top1);
                self.metrics.insert("top5".into(), top5);
                Some(Kind::Evaluated(pb::TaskEvaluated { epoch, loss, top1, top5 }))
            }
            Event::StageFinished { seconds, .. } => {
                self.metrics.insert("seconds".into(), seconds);
                None
            }
            Event::CheckpointFallback { restored, skipped, .. } => Some(Kind::CheckpointFallback(format!(
                "resumed from {} because newer checkpoints were damaged: {}",
                restored.display(),
                skipped.join("; ")
            ))),
            Event::StageStarted { .. } | Event::PlanDecided { .. } => None,
        }
    }

    /// The finish report. For the export stage, `export_dir` is the directory
    /// it wrote: its files become artifacts with paths relative to the job's
    /// directory (`export/model.pt`), and its model card's figures join the
    /// metrics.
    pub fn finished(mut self, export_dir: Option<&Path>) -> pb::TaskFinished {
        let mut artifacts = Vec::new();
        if let Some(dir) = export_dir {
            artifacts = export_artifacts(dir);
            match ExportFigures::read(&dir.join(CARD_FILE)) {
                Ok(card) => self.metrics.extend(card.metrics()),
                Err(error) => tracing::warn!(%error, "the model card's figures are not reported"),
            }
        }
        pb::TaskFinished { metrics: self.metrics, artifacts }
    }
}

/// The files of an export directory, by name, as artifacts.
fn export_artifacts(dir: &Path) -> Vec<pb::Artifact> {
    let prefix = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut artifacts = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = match name.as_str() {
            TORCHSCRIPT_FILE => "torchscript",
            WEIGHTS_FILE => "safetensors",
            ARCH_FILE => "arch",
            CARD_FILE => "model_card",
            _ => "file",
        };
        let path = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        artifacts.push(pb::Artifact {
            kind: kind.into(),
            path,
            size_bytes: meta.len(),
            stage: pb::Stage::Unspecified as i32,
        });
    }
    artifacts.sort_by(|a, b| a.path.cmp(&b.path));
    artifacts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_statistics_evaluations_and_checkpoints_are_relayed() {
        let mut relay = Relay::default();
        let progress = r#"{"type":"progress","stage":"knockoff","epoch":1,"epochs":2,"step":5,"steps":10,"loss":0.5,"accuracy":0.8,"samples_per_second":100.0,"eta_seconds":30.0,"lr":0.1}"#;
        let Some(pb::task_event::Kind::Progress(p)) = relay.translate(progress) else {
            panic!("not progress")
        };
        assert_eq!((p.epoch, p.step, p.steps, p.loss), (1, 5, 10, 0.5));
        // The trainer's ETA travels unchanged; an untimed trainer's step time stays 0.
        assert_eq!((p.eta_seconds, p.step_seconds, p.allreduce_seconds), (30.0, 0.0, 0.0));
        let timed =
            progress.replace(r#""lr":0.1"#, r#""lr":0.1,"step_seconds":0.5,"allreduce_seconds":0.125"#);
        let Some(pb::task_event::Kind::Progress(p)) = relay.translate(&timed) else { panic!("not progress") };
        assert_eq!((p.eta_seconds, p.step_seconds, p.allreduce_seconds), (30.0, 0.5, 0.125));
        let checkpoint =
            r#"{"type":"checkpoint_written","stage":"knockoff","path":"out/knockoff/checkpoints/step-5"}"#;
        assert_eq!(
            relay.translate(checkpoint),
            Some(pb::task_event::Kind::CheckpointWritten("out/knockoff/checkpoints/step-5".into()))
        );
        let stats =
            r#"{"type":"statistics","epoch":2,"units":[{"unit":"u","beta":[0.5],"gamma_abs":[1.0]}]}"#;
        let Some(pb::task_event::Kind::Statistics(s)) = relay.translate(stats) else {
            panic!("not statistics")
        };
        assert_eq!((s.epoch, s.units[0].unit.as_str()), (2, "u"));
        let fallback = r#"{"type":"checkpoint_fallback","stage":"knockoff","restored":"c/knockoff-step-00000010","skipped":["c/knockoff-step-00000020/tensors.safetensors: does not match the manifest"]}"#;
        assert_eq!(
            relay.translate(fallback),
            Some(pb::task_event::Kind::CheckpointFallback(
                "resumed from c/knockoff-step-00000010 because newer checkpoints were damaged: \
                 c/knockoff-step-00000020/tensors.safetensors: does not match the manifest"
                    .into()
            ))
        );
        assert_eq!(relay.translate("not json"), None);
        let evaluated =
            r#"{"type":"evaluated","stage":"finetune","epoch":1,"loss":0.4,"top1":0.9,"top5":1.0}"#;
        assert_eq!(
            relay.translate(evaluated),
            Some(pb::task_event::Kind::Evaluated(pb::TaskEvaluated {
                epoch: 1,
                loss: 0.4,
                top1: 0.9,
                top5: 1.0
            }))
        );
        let finished = relay.finished(None);
        assert_eq!(finished.metrics.get("top1"), Some(&0.9));
        assert!(finished.artifacts.is_empty());
    }
}
