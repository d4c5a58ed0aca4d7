//! The final table of a job, read from its events: the stages' finish metrics
//! (the export's model-card figures, as `jobs.proto` documents them), with the
//! evaluations and the decide stage's figures as a fallback for older workers.
//! The table itself is `scop-core`'s, the one `scop-worker run` prints too.

use scop_proto::v1 as pb;

pub use scop_core::summary::{Figures, JobSummary};

use crate::records::stage_name;

/// Reads the summary out of a job's events.
pub fn from_events(job: &pb::Job, events: &[pb::JobEvent]) -> JobSummary {
    let mut summary = match scop_core::spec::JobSpec::from_yaml(&job.spec_yaml) {
        Ok(spec) => JobSummary::for_spec(&spec),
        Err(_) => JobSummary { network: "-".into(), dataset: "-".into(), ..JobSummary::default() },
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
                summary.stage_finished(stage_name(f.stage()).unwrap_or("?"), f.seconds);
                if let Some(stage) = f.stage().domain() {
                    let metrics = f.metrics.iter().map(|(k, v)| (k.clone(), *v)).collect();
                    summary.apply(stage, &metrics);
                }
            }
            _ => {}
        }
    }
    summary
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
        let summary = from_events(&job, &events);
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
        let summary = from_events(&job, &events);
        assert_eq!((summary.dense.top1, summary.pruned.top1), (Some(0.92), Some(0.9)));
        assert_eq!(summary.dense.params, None);
        assert!(summary.render().contains("| -"), "{}", summary.render());
    }

    #[test]
    fn another_criterions_score_stage_gives_the_dense_row_and_names_the_pruned_one() {
        let job = pb::Job {
            spec_yaml: "model: { arch: resnet20, num_classes: 10 }\ndata: { format: idx, root: d }\nprune: { criterion: fpgm }\n".into(),
            ..Default::default()
        };
        let events = [evaluated(pb::Stage::Score, 0, 0.93), evaluated(pb::Stage::Finetune, 1, 0.9)];
        let summary = from_events(&job, &events);
        assert_eq!((summary.dense.top1, summary.pruned.top1), (Some(0.93), Some(0.9)));
        assert!(summary.render().contains("| fpgm pruned"), "{}", summary.render());
    }
}
