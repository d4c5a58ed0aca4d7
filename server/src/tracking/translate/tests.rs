//! Tests of what a job's run holds.

use super::*;
use crate::domain::Progress;

fn event(sequence: u64, kind: EventKind) -> JobEvent {
    JobEvent { job_id: "j".into(), sequence, time_ms: 1_000 + sequence as i64, kind }
}

fn progress(stage: Stage, epoch: u32, samples_per_second: f64, loss: f64) -> EventKind {
    EventKind::Progress(Progress {
        stage,
        epoch,
        epochs: 2,
        step: 1,
        steps: 4,
        loss,
        accuracy: 0.5,
        samples_per_second,
        eta_seconds: 1.0,
    })
}

fn evaluated(stage: Stage, epoch: u32, top1: f64) -> EventKind {
    EventKind::Evaluated { stage, epoch, loss: 0.5, top1, top5: 0.99 }
}

fn series(batch: &Batch, key: &str) -> Vec<(i64, f64)> {
    batch.metrics.iter().filter(|m| m.key == key).map(|m| (m.step, m.value)).collect()
}

#[test]
fn every_epoch_of_a_stage_is_one_point_per_series_with_throughput_averaged() {
    let mut translator = Translator::default();
    let mut batch = Batch::default();
    let kinds = [
        evaluated(Stage::Finetune, 0, 0.3),
        progress(Stage::Finetune, 1, 100.0, 2.0),
        progress(Stage::Finetune, 1, 300.0, 1.0),
        evaluated(Stage::Finetune, 1, 0.6),
        progress(Stage::Finetune, 2, 400.0, 0.5),
        evaluated(Stage::Finetune, 2, 0.7),
        EventKind::Evaluated { stage: Stage::Knockoff, epoch: 1, loss: f64::NAN, top1: 0.2, top5: 0.9 },
    ];
    for (i, kind) in kinds.into_iter().enumerate() {
        assert_eq!(translator.add(&event(i as u64 + 1, kind), &mut batch), None);
    }
    assert_eq!(series(&batch, "finetune/top1"), [(0, 0.3), (1, 0.6), (2, 0.7)]);
    assert_eq!(series(&batch, "finetune/top5").len(), 3);
    assert_eq!(series(&batch, "finetune/samples_per_second"), [(1, 200.0), (2, 400.0)]);
    assert_eq!(series(&batch, "finetune/train_loss"), [(1, 1.5), (2, 0.5)]);
    assert_eq!(series(&batch, "knockoff/loss"), [], "NaN is not sent");
    assert_eq!(series(&batch, "knockoff/top1"), [(1, 0.2)]);
    assert!(batch.metrics.iter().all(|m| m.timestamp_ms > 1_000));
}

#[test]
fn state_changes_tag_the_run_and_the_end_asks_for_its_status() {
    let mut translator = Translator::default();
    let mut batch = Batch::default();
    let change = |to| EventKind::StateChanged { from: None, to, reason: None };
    assert_eq!(translator.add(&event(1, change(JobState::Running(Stage::Knockoff))), &mut batch), None);
    let plan = EventKind::PlanDecided { units: 3, channels_before: 48, channels_after: 30 };
    assert_eq!(translator.add(&event(2, plan), &mut batch), Some(Follow::PlanDecided));
    let end = translator.add(&event(3, change(JobState::Failed)), &mut batch);
    assert_eq!(end, Some(Follow::Ended(JobState::Failed)));
    assert_eq!(
        batch.tags,
        [
            ("scop.state".to_owned(), "running:knockoff".to_owned()),
            ("scop.state".to_owned(), "failed".to_owned())
        ]
    );
    assert_eq!(
        [JobState::Succeeded, JobState::Failed, JobState::Cancelled].map(run_status),
        ["FINISHED", "FAILED", "KILLED"]
    );
}

#[test]
fn the_export_s_figures_are_the_final_ones() {
    let mut translator = Translator::default();
    let mut batch = Batch::default();
    let metrics =
        [("top1_pruned".to_owned(), 0.81), ("params_pruned".to_owned(), 1.5e5), ("seconds".to_owned(), 2.0)];
    let finished =
        EventKind::StageFinished { stage: Stage::Export, attempt: 1, seconds: 2.0, metrics: metrics.into() };
    translator.add(&event(1, finished), &mut batch);
    let finetune = EventKind::StageFinished {
        stage: Stage::Finetune,
        attempt: 2,
        seconds: 9.0,
        metrics: [("top1".to_owned(), 0.8)].into(),
    };
    translator.add(&event(2, finetune), &mut batch);
    let mut keys: Vec<_> = batch.metrics.iter().map(|m| (m.key.as_str(), m.step, m.value)).collect();
    keys.sort_by(|a, b| a.0.cmp(b.0));
    assert_eq!(
        keys,
        [
            ("export/seconds", 1, 2.0),
            ("final/params_pruned", 0, 1.5e5),
            ("final/top1_pruned", 0, 0.81),
            ("finetune/seconds", 2, 9.0)
        ]
    );
}

#[test]
fn the_spec_is_every_field_under_its_dotted_path() {
    let params = spec_params(
        "name: tiny\nmodel: { arch: resnet20, num_classes: 10 }\ndata: { format: idx, root: /data/fm }\n\
         finetune: { lr: 0.02 }\ntracking: { experiment: sweeps }\n",
    );
    let get = |key: &str| params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    assert_eq!(get("name"), Some("tiny"));
    assert_eq!(get("model.arch"), Some("resnet20"));
    assert_eq!(get("finetune.lr"), Some("0.02"));
    assert_eq!(get("prune.rate"), Some("0.45"), "defaults are parameters too");
    assert_eq!(get("knockoff.betas"), Some("[0.5,0.9]"));
    assert_eq!(get("tracking.experiment"), Some("sweeps"));
    assert_eq!(get(Stage::Pretrain.as_ref()), None, "absent optional sections are left out");
    assert!(params.iter().all(|(k, v)| !k.is_empty() && v.chars().count() <= PARAM_CHARS));
    assert!(params.windows(2).all(|w| w[0].0 < w[1].0), "sorted, each key once");

    let long = cut("x".repeat(PARAM_CHARS + 10));
    assert_eq!((long.chars().count(), long.ends_with('…')), (PARAM_CHARS, true));
}

#[test]
fn a_spec_that_no_longer_validates_is_still_logged_as_written() {
    let params = spec_params("model: { arch: resnet7 }\nsomething: { new: 1 }\n");
    assert!(params.contains(&("model.arch".to_owned(), "resnet7".to_owned())), "{params:?}");
    assert!(params.contains(&("something.new".to_owned(), "1".to_owned())), "{params:?}");
}

#[test]
fn a_branch_run_is_tagged_with_its_sweep_and_candidate() {
    let job = |parent: Option<&str>, candidate: &str| Job {
        id: "b".into(),
        state: crate::domain::JobState::Queued,
        stage: None,
        stages: crate::domain::StagePlan::from_stored("decide,finetune,export").unwrap(),
        spec_yaml: String::new(),
        labels: [("team".to_owned(), "vision".to_owned())].into(),
        priority: 0,
        request_id: None,
        created_at_ms: 0,
        updated_at_ms: 0,
        error: None,
        attempt: 0,
        last_sequence: 1,
        owner: "alice".into(),
        name: String::new(),
        parent_id: parent.map(str::to_owned),
        candidate: candidate.into(),
    };
    let tags = job_tags(&job(Some("s"), "scop-0.45"));
    let tag =
        |tags: &[(String, String)], key: &str| tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    assert_eq!(tag(&tags, "scop.sweep").as_deref(), Some("s"));
    assert_eq!(tag(&tags, "scop.candidate").as_deref(), Some("scop-0.45"));
    assert_eq!(tag(&tags, "scop.label.team").as_deref(), Some("vision"));
    let plain = job_tags(&job(None, ""));
    assert_eq!((tag(&plain, "scop.sweep"), tag(&plain, "scop.candidate")), (None, None));
}
