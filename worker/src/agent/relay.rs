//! Turns a trainer's JSON event lines into the `TaskEvent`s the coordinator
//! understands, and remembers what the final `TaskFinished` reports.

use std::collections::HashMap;

use scop_proto::v1 as pb;

use crate::events::Event;

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
                // Trainers that do not time their steps leave 0; derive it from the ETA then.
                let remaining = u64::from(epochs.saturating_sub(epoch)) * steps + steps.saturating_sub(step);
                let step_seconds = if step_seconds > 0.0 {
                    step_seconds
                } else if remaining > 0 {
                    eta_seconds / remaining as f64
                } else {
                    0.0
                };
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
                }))
            }
            Event::Statistics(stats) => Some(Kind::Statistics(pb::ScoreStatistics {
                epoch: stats.epoch,
                units: stats
                    .units
                    .into_iter()
                    .map(|u| pb::UnitStatistics { unit: u.unit, beta: u.beta, gamma_abs: u.gamma_abs })
                    .collect(),
            })),
            Event::CheckpointWritten { path, .. } => {
                Some(Kind::CheckpointWritten(path.display().to_string()))
            }
            Event::Evaluated { loss, top1, top5, .. } => {
                self.metrics.insert("test_loss".into(), loss);
                self.metrics.insert("top1".into(), top1);
                self.metrics.insert("top5".into(), top5);
                None
            }
            Event::StageFinished { seconds, .. } => {
                self.metrics.insert("seconds".into(), seconds);
                None
            }
            Event::StageStarted { .. } | Event::PlanDecided { .. } => None,
        }
    }

    /// The finish report, with the files under `export_dir` as artifacts.
    pub fn finished(self, export_dir: Option<&std::path::Path>) -> pb::TaskFinished {
        let mut artifacts = Vec::new();
        let entries = export_dir.and_then(|dir| std::fs::read_dir(dir).ok());
        if let Some(entries) = entries {
            for entry in entries.flatten() {
                let path = entry.path();
                let size_bytes = entry.metadata().map(|m| m.len()).unwrap_or(0);
                let kind = match path.extension().and_then(|e| e.to_str()) {
                    Some("safetensors") => "safetensors",
                    Some("pt") => "torchscript",
                    Some("json") => "model_card",
                    _ => "file",
                };
                artifacts.push(pb::Artifact {
                    kind: kind.into(),
                    path: path.display().to_string(),
                    size_bytes,
                });
            }
        }
        artifacts.sort_by(|a, b| a.path.cmp(&b.path));
        pb::TaskFinished { metrics: self.metrics, artifacts }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_statistics_and_checkpoints_are_relayed() {
        let mut relay = Relay::default();
        let progress = r#"{"type":"progress","stage":"knockoff","epoch":1,"epochs":2,"step":5,"steps":10,"loss":0.5,"accuracy":0.8,"samples_per_second":100.0,"eta_seconds":30.0,"lr":0.1}"#;
        let Some(pb::task_event::Kind::Progress(p)) = relay.translate(progress) else {
            panic!("not progress")
        };
        assert_eq!((p.epoch, p.step, p.steps, p.loss), (1, 5, 10, 0.5));
        // Untimed: 15 steps remain (5 of this epoch, 10 of the next), 2 s each.
        assert_eq!((p.step_seconds, p.allreduce_seconds), (2.0, 0.0));
        let timed =
            progress.replace(r#""lr":0.1"#, r#""lr":0.1,"step_seconds":0.5,"allreduce_seconds":0.125"#);
        let Some(pb::task_event::Kind::Progress(p)) = relay.translate(&timed) else { panic!("not progress") };
        assert_eq!((p.step_seconds, p.allreduce_seconds), (0.5, 0.125));
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
        assert_eq!(relay.translate("not json"), None);
        let evaluated =
            r#"{"type":"evaluated","stage":"finetune","epoch":1,"loss":0.4,"top1":0.9,"top5":1.0}"#;
        assert_eq!(relay.translate(evaluated), None);
        assert_eq!(relay.finished(None).metrics.get("top1"), Some(&0.9));
    }
}
