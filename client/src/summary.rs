//! The final table of a job: dense vs pruned top-1/top-5, params, FLOPs, the
//! prune rate and the time per stage, from the stages' finish metrics (the
//! export's, as `jobs.proto` documents them), with the evaluations and the
//! decide stage's figures as a fallback for older workers.

use scop_proto::v1 as pb;
use serde::{Deserialize, Serialize};

use comfy_table::Table;
use comfy_table::presets::ASCII_MARKDOWN;

use crate::format::{duration, millions, percent};
use crate::records::stage_name;

/// Accuracy and size of one model; `None` where the job did not report it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub top1: Option<f64>,
    pub top5: Option<f64>,
    pub params: Option<f64>,
    pub flops: Option<f64>,
}

/// Everything the final table shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobSummary {
    pub network: String,
    pub dataset: String,
    pub prune_rate: Option<f64>,
    /// The spec's `prune.criterion` (`None`: unknown, shown as SCOP).
    pub criterion: Option<String>,
    pub dense: Figures,
    pub pruned: Figures,
    /// `(stage, seconds)` in the order the stages finished.
    pub stage_seconds: Vec<(String, f64)>,
}

impl JobSummary {
    /// The pruned row's name: `SCOP pruned`, or `l1 pruned` for another criterion.
    pub fn pruned_label(&self) -> String {
        match self.criterion.as_deref() {
            None | Some("scop") => "SCOP pruned".to_owned(),
            Some(other) => format!("{other} pruned"),
        }
    }

    /// Reads the summary out of a job's events.
    pub fn from_events(job: &pb::Job, events: &[pb::JobEvent]) -> JobSummary {
        let spec = scop_core::spec::JobSpec::from_yaml(&job.spec_yaml).ok();
        let mut summary = JobSummary {
            network: spec.as_ref().map_or_else(|| "-".into(), |s| s.model.arch.clone()),
            dataset: spec.as_ref().map_or_else(
                || "-".into(),
                |s| {
                    s.data
                        .root
                        .file_name()
                        .map_or_else(|| "data".into(), |n| n.to_string_lossy().into_owned())
                },
            ),
            prune_rate: spec.as_ref().map(|s| s.prune.rate),
            criterion: spec.as_ref().map(|s| s.prune.criterion.as_str().to_owned()),
            ..JobSummary::default()
        };
        for event in events {
            match &event.kind {
                Some(pb::job_event::Kind::Evaluated(e)) => {
                    // The scoring stage (knockoff, or score for another criterion)
                    // evaluates the dense network first.
                    let scoring = matches!(e.stage(), pb::Stage::Knockoff | pb::Stage::Score);
                    if scoring && e.epoch == 0 {
                        summary.dense.top1 = Some(e.top1);
                        summary.dense.top5 = Some(e.top5);
                    }
                    if e.stage() == pb::Stage::Finetune {
                        summary.pruned.top1 = Some(e.top1);
                        summary.pruned.top5 = Some(e.top5);
                    }
                }
                Some(pb::job_event::Kind::StageFinished(f)) => {
                    let name = stage_name(f.stage()).unwrap_or("?").to_owned();
                    summary.stage_seconds.retain(|(s, _)| *s != name);
                    summary.stage_seconds.push((name, f.seconds));
                    summary.apply(f);
                }
                _ => {}
            }
        }
        summary
    }

    /// Takes the figures a finished stage reported.
    fn apply(&mut self, finished: &pb::StageFinished) {
        let get = |key: &str| finished.metrics.get(key).copied();
        let set = |slot: &mut Option<f64>, value: Option<f64>| {
            if value.is_some() {
                *slot = value;
            }
        };
        match finished.stage() {
            pb::Stage::Decide => {
                set(&mut self.dense.params, get("params_before"));
                set(&mut self.pruned.params, get("params_after"));
                set(&mut self.dense.flops, get("flops_before"));
                set(&mut self.pruned.flops, get("flops_after"));
            }
            pb::Stage::Export => {
                set(&mut self.dense.top1, get("top1_dense"));
                set(&mut self.dense.top5, get("top5_dense"));
                set(&mut self.pruned.top1, get("top1_pruned"));
                set(&mut self.pruned.top5, get("top5_pruned"));
                set(&mut self.dense.params, get("params_dense"));
                set(&mut self.pruned.params, get("params_pruned"));
                set(&mut self.dense.flops, get("flops_dense"));
                set(&mut self.pruned.flops, get("flops_pruned"));
                set(&mut self.prune_rate, get("prune_rate"));
            }
            _ => {}
        }
    }

    /// The table, then the time per stage.
    pub fn render(&self) -> String {
        // Markdown, so the table pastes into a report as it is.
        let mut table = Table::new();
        table.load_style(ASCII_MARKDOWN);
        table.set_header(["model", "network", "dataset", "top-1", "top-5", "prune rate", "params", "FLOPs"]);
        let show = |value: Option<f64>, f: fn(f64) -> String| value.map_or_else(|| "-".to_owned(), f);
        let ratio = |after: Option<f64>, before: Option<f64>| match (after, before) {
            (Some(a), Some(b)) if b > 0.0 => format!("{} ({:.2}x)", millions(a), a / b),
            (Some(a), _) => millions(a),
            _ => "-".to_owned(),
        };
        table.add_row([
            "dense".to_owned(),
            self.network.clone(),
            self.dataset.clone(),
            show(self.dense.top1, percent),
            show(self.dense.top5, percent),
            "-".to_owned(),
            show(self.dense.params, millions),
            show(self.dense.flops, millions),
        ]);
        table.add_row([
            self.pruned_label(),
            self.network.clone(),
            self.dataset.clone(),
            show(self.pruned.top1, percent),
            show(self.pruned.top5, percent),
            show(self.prune_rate, |r| format!("{:.0} %", r * 100.0)),
            ratio(self.pruned.params, self.dense.params),
            ratio(self.pruned.flops, self.dense.flops),
        ]);
        format!("{table}\ntime per stage: {}", self.stage_times())
    }

    /// `pretrain 6m12s, knockoff 1m01s, …, total 9m30s`.
    pub fn stage_times(&self) -> String {
        let mut parts: Vec<String> =
            self.stage_seconds.iter().map(|(stage, s)| format!("{stage} {}", duration(*s))).collect();
        let total: f64 = self.stage_seconds.iter().map(|(_, s)| s).sum();
        parts.push(format!("total {}", duration(total)));
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(stage: pb::Stage, seconds: f64, metrics: &[(&str, f64)]) -> pb::JobEvent {
        pb::JobEvent {
            kind: Some(pb::job_event::Kind::StageFinished(pb::StageFinished {
                stage: stage as i32,
                seconds,
                attempt: 1,
                metrics: metrics.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            })),
            ..Default::default()
        }
    }

    fn evaluated(stage: pb::Stage, epoch: u32, top1: f64) -> pb::JobEvent {
        pb::JobEvent {
            kind: Some(pb::job_event::Kind::Evaluated(pb::Evaluated {
                stage: stage as i32,
                epoch,
                loss: 0.3,
                top1,
                top5: 0.99,
            })),
            ..Default::default()
        }
    }

    #[test]
    fn the_exports_figures_make_the_table() {
        let job = pb::Job {
            spec_yaml: "model: { arch: resnet20, num_classes: 10 }\ndata: { format: idx, root: data/fashion-mnist }\nprune: { rate: 0.45 }\n".into(),
            ..Default::default()
        };
        let events = [
            evaluated(pb::Stage::Knockoff, 0, 0.5),
            finished(pb::Stage::Knockoff, 61.0, &[("top1", 0.91)]),
            finished(pb::Stage::Decide, 0.02, &[("params_before", 272_474.0), ("params_after", 150_066.0)]),
            evaluated(pb::Stage::Finetune, 1, 0.6),
            finished(pb::Stage::Finetune, 372.0, &[]),
            finished(
                pb::Stage::Export,
                3.0,
                &[
                    ("top1_dense", 0.9125),
                    ("top5_dense", 0.9987),
                    ("top1_pruned", 0.905),
                    ("top5_pruned", 0.9979),
                    ("params_dense", 272_474.0),
                    ("params_pruned", 150_066.0),
                    ("flops_dense", 40_813_184.0),
                    ("flops_pruned", 22_556_288.0),
                ],
            ),
        ];
        let summary = JobSummary::from_events(&job, &events);
        assert_eq!((summary.network.as_str(), summary.dataset.as_str()), ("resnet20", "fashion-mnist"));
        assert_eq!((summary.dense.top1, summary.pruned.top1), (Some(0.9125), Some(0.905)));
        let text = summary.render();
        for expected in ["91.25 %", "90.50 %", "99.79 %", "45 %", "0.15 M (0.55x)", "22.56 M (0.55x)"] {
            assert!(text.contains(expected), "{expected} in\n{text}");
        }
        assert!(
            text.ends_with(
                "time per stage: knockoff 1m01s, decide 0.0s, finetune 6m12s, export 3.0s, total 7m16s"
            ),
            "{text}"
        );
    }

    #[test]
    fn evaluations_stand_in_for_an_export_without_figures() {
        let job = pb::Job::default();
        let events = [evaluated(pb::Stage::Knockoff, 0, 0.92), evaluated(pb::Stage::Finetune, 3, 0.9)];
        let summary = JobSummary::from_events(&job, &events);
        assert_eq!((summary.dense.top1, summary.pruned.top1), (Some(0.92), Some(0.9)));
        assert_eq!(summary.dense.params, None);
        assert!(summary.render().contains("| -"), "{}", summary.render());
        assert!(summary.render().contains("| SCOP pruned"), "{}", summary.render());
    }

    #[test]
    fn another_criterions_score_stage_gives_the_dense_row_and_names_the_pruned_one() {
        let job = pb::Job {
            spec_yaml: "model: { arch: resnet20, num_classes: 10 }\ndata: { format: idx, root: d }\nprune: { criterion: fpgm }\n".into(),
            ..Default::default()
        };
        let events = [evaluated(pb::Stage::Score, 0, 0.93), evaluated(pb::Stage::Finetune, 1, 0.9)];
        let summary = JobSummary::from_events(&job, &events);
        assert_eq!((summary.dense.top1, summary.pruned.top1), (Some(0.93), Some(0.9)));
        assert!(summary.render().contains("| fpgm pruned"), "{}", summary.render());
    }
}
