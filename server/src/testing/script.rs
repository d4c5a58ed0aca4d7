//! What a scripted worker reports for each stage of a job, with figures that
//! look like a real run's: progress every few steps, test-split evaluations,
//! score statistics during knockoff, and an export with real files.

use std::path::Path;

use scop_core::job_dir::{ARCH_FILE, CARD_FILE, JobDir, TORCHSCRIPT_FILE, WEIGHTS_FILE};
use scop_core::stage::Stage;
use scop_proto::v1 as pb;

use super::{FakeWorker, statistics};

/// Epochs and steps per epoch of every scripted training stage.
pub const EPOCHS: u32 = 2;
pub const STEPS: u64 = 10;

/// The figures the scripted export reports (and writes into its model card).
pub const TOP1_DENSE: f64 = 0.9125;
pub const TOP1_PRUNED: f64 = 0.9050;
pub const PARAMS_DENSE: u64 = 272_474;
pub const PARAMS_PRUNED: u64 = 150_066;
/// The CPU latency the scripted export's model card claims.
pub const LATENCY_MS: f64 = 1.25;

/// Test-split top-1 of a scripted stage after `epoch` (0: before training).
pub fn top1(stage: pb::Stage, epoch: u32) -> f64 {
    let start = match stage {
        pb::Stage::Finetune => 0.80,
        _ => TOP1_DENSE - 0.02,
    };
    let end = if stage == pb::Stage::Finetune { TOP1_PRUNED } else { TOP1_DENSE };
    start + (end - start) * f64::from(epoch) / f64::from(EPOCHS)
}

impl FakeWorker {
    /// Reports `task`'s stage the way a trainer would, then finishes it.
    pub async fn play(&self, task: &pb::AssignTask) {
        use pb::task_event::Kind;
        let stage = task.stage();
        if stage == pb::Stage::Export {
            let finished = write_export(Path::new(&task.checkpoint_dir));
            self.send(task, Kind::Finished(finished)).await;
            return;
        }
        self.send(task, Kind::Evaluated(evaluation(stage, 0))).await;
        for epoch in 1..=EPOCHS {
            for step in (2..=STEPS).step_by(2) {
                let done = f64::from(epoch - 1) + step as f64 / STEPS as f64;
                let progress = pb::TaskProgress {
                    epoch,
                    step,
                    steps: STEPS,
                    loss: 1.5 / (1.0 + done),
                    accuracy: 0.6 + 0.1 * done,
                    samples_per_second: 480.0,
                    epochs: EPOCHS,
                    step_seconds: 0.25,
                    allreduce_seconds: 0.0,
                    // As a trainer estimates it: the steps left at the step time.
                    eta_seconds: (u64::from(EPOCHS - epoch) * STEPS + (STEPS - step)) as f64 * 0.25,
                };
                self.send(task, Kind::Progress(progress)).await;
            }
            // The script's scoring epochs are the last ones of the spec's
            // schedule, so its last statistics are those of the final epoch.
            let scoring_epoch = (final_knockoff_epoch(&task.spec_yaml) + epoch).checked_sub(EPOCHS);
            let scoring = matches!(stage, pb::Stage::Knockoff | pb::Stage::Score);
            if let (true, Some(scoring_epoch @ 1..)) = (scoring, scoring_epoch) {
                let mut stats = statistics("resnet20", 1);
                stats.epoch = scoring_epoch;
                if stage == pb::Stage::Score {
                    // Another criterion sends its scores (here c/n) instead of β.
                    for unit in &mut stats.units {
                        unit.score = std::mem::take(&mut unit.beta);
                    }
                }
                self.send(task, Kind::Statistics(stats)).await;
            }
            self.send(task, Kind::Evaluated(evaluation(stage, epoch))).await;
        }
        if matches!(stage, pb::Stage::Pretrain | pb::Stage::Knockoff | pb::Stage::Score) && task.rank == 0 {
            // The weights a real stage leaves for the next (a stand-in file).
            let layout = JobDir::new(&task.checkpoint_dir);
            let stage = stage.domain().expect("a worker stage");
            std::fs::create_dir_all(layout.stage_dir(stage)).unwrap();
            std::fs::write(layout.model(stage), b"stand-in weights").unwrap();
        }
        let last = evaluation(stage, EPOCHS);
        let metrics = [("top1", last.top1), ("top5", last.top5), ("test_loss", last.loss), ("seconds", 5.0)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        self.send(task, Kind::Finished(pb::TaskFinished { metrics, artifacts: Vec::new() })).await;
    }

    /// Plays every stage assigned to this worker until the export is done.
    pub async fn play_job(&mut self) {
        loop {
            let task = self.assigned().await;
            self.play(&task).await;
            if task.stage() == pb::Stage::Export {
                return;
            }
        }
    }
}

/// The epoch `decide` takes its statistics from (the spec's `knockoff.epochs`,
/// or 1 for the score stage), or [`EPOCHS`] for a spec that does not parse.
pub fn final_knockoff_epoch(spec_yaml: &str) -> u32 {
    scop_core::spec::JobSpec::from_yaml(spec_yaml).map_or(EPOCHS, |s| s.final_statistics_epoch())
}

fn evaluation(stage: pb::Stage, epoch: u32) -> pb::TaskEvaluated {
    let top1 = top1(stage, epoch);
    pb::TaskEvaluated { epoch, loss: 2.0 * (1.0 - top1), top1, top5: (top1 + 0.08).min(0.999) }
}

/// Writes small stand-ins for the export's files into `<job_dir>/export` and
/// returns the finish report a real export rank sends.
fn write_export(job_dir: &Path) -> pb::TaskFinished {
    let dir = JobDir::new(job_dir).export_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let metrics: Vec<(&str, f64)> = vec![
        ("top1_dense", TOP1_DENSE),
        ("top5_dense", 0.9987),
        ("top1_pruned_before_finetune", 0.80),
        ("top1_pruned", TOP1_PRUNED),
        ("top5_pruned", 0.9979),
        ("params_dense", PARAMS_DENSE as f64),
        ("params_pruned", PARAMS_PRUNED as f64),
        ("flops_dense", 40_813_184.0),
        ("flops_pruned", 22_556_288.0),
        ("input_size", 32.0),
        ("prune_rate", 0.45),
    ];
    let mut card: serde_json::Map<String, serde_json::Value> =
        metrics.iter().map(|(k, v)| ((*k).to_owned(), serde_json::json!(v))).collect();
    // The fields a real model card has besides: sizes at the top, evaluated figures under `metrics`.
    for (key, value) in [
        ("params", PARAMS_PRUNED),
        ("dense_params", PARAMS_DENSE),
        ("flops", 22_556_288),
        ("dense_flops", 40_813_184),
        ("input_size", 32),
    ] {
        card.insert(key.to_owned(), serde_json::json!(value));
    }
    card.insert(
        "metrics".to_owned(),
        serde_json::json!({
            "top1_dense": TOP1_DENSE,
            "top1_pruned_before_finetune": 0.80,
            "top1_pruned": TOP1_PRUNED,
            "latency_ms": LATENCY_MS,
        }),
    );
    let files: [(&str, &str, Vec<u8>); 4] = [
        (TORCHSCRIPT_FILE, "torchscript", vec![7; 3 << 19]),
        (WEIGHTS_FILE, "safetensors", vec![1; 1000]),
        (ARCH_FILE, "arch", b"{\"arch\":\"resnet20\"}".to_vec()),
        (CARD_FILE, "model_card", serde_json::to_vec_pretty(&card).unwrap()),
    ];
    let mut artifacts = Vec::new();
    for (name, kind, bytes) in files {
        std::fs::write(dir.join(name), &bytes).unwrap();
        artifacts.push(pb::Artifact {
            kind: kind.into(),
            path: format!("{}/{name}", Stage::Export),
            size_bytes: bytes.len() as u64,
            stage: pb::Stage::Unspecified as i32,
        });
    }
    let metrics = metrics.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    pb::TaskFinished { metrics, artifacts }
}
