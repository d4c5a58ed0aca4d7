//! A stage resumed from a checkpoint continues to the same result as an
//! uninterrupted run: same data order, same loss sequence, same final weights.

use std::path::Path;

use scop_core::spec::JobSpec;
use scop_worker::events::Event;
use scop_worker::stages::{knockoff, pretrain, weights};

use super::{identical, read_weights, run_stage, step_losses, tiny_spec};

/// Pretrain for two epochs of four steps, with a checkpoint every three steps.
fn two_epoch_pretrain(out: &Path) -> JobSpec {
    let mut spec = tiny_spec(out);
    spec.data.train_subset = Some(128);
    let pretrain = spec.pretrain.as_mut().unwrap();
    pretrain.epochs = 2;
    pretrain.checkpoint_every_steps = 3;
    pretrain.weight_decay = 5e-4;
    // Every checkpoint stays, so the test can resume from an early one.
    spec.checkpoint.keep = 100;
    spec
}

/// Starts `out` with only the checkpoint `name` of `stage` from `from`, as if
/// the process had died right after writing it.
fn interrupted_copy(from: &Path, out: &Path, stage: &str, name: &str) {
    let src = from.join(stage).join("checkpoints").join(name);
    let dst_root = out.join(stage).join("checkpoints");
    let dst = dst_root.join(name);
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display())) {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
    }
    std::fs::write(dst_root.join("latest"), format!("{name}\n")).unwrap();
    // The layout `memory_format: auto` chose when the stage started is in the stage's directory too.
    let choice = from.join(stage).join(scop_core::job_dir::MEMORY_FORMAT_FILE);
    if choice.exists() {
        std::fs::copy(&choice, out.join(stage).join(scop_core::job_dir::MEMORY_FORMAT_FILE)).unwrap();
    }
}

fn evaluations(events: &[Event]) -> Vec<(u32, f64, f64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Evaluated { epoch, loss, top1, .. } => Some((*epoch, *loss, *top1)),
            _ => None,
        })
        .collect()
}

fn assert_same_weights(a: &Path, b: &Path) {
    let (a, b) = (read_weights(a), read_weights(b));
    assert_eq!(a.len(), b.len());
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(identical(ta, tb), "{na} differs between the uninterrupted and the resumed run");
    }
}

#[test]
fn auto_layout_is_timed_once_and_a_resumed_stage_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let spec = two_epoch_pretrain(dir.path());
    run_stage(&spec, false, pretrain::run).0.unwrap();
    let record = dir.path().join("pretrain").join(scop_core::job_dir::MEMORY_FORMAT_FILE);
    let text = std::fs::read_to_string(&record).expect("auto on the CPU records its choice");
    let choice: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(matches!(choice["memory_format"].as_str(), Some("contiguous" | "channels_last")), "{text}");
    assert!(choice["contiguous_ms_per_pass"].as_f64().unwrap() > 0.0, "{text}");
    assert!(choice["channels_last_ms_per_pass"].as_f64().unwrap() > 0.0, "{text}");

    // A resume trusts the record even when it names the other layout: it is not timed again.
    let other = if choice["memory_format"] == "contiguous" { "channels_last" } else { "contiguous" };
    let edited = serde_json::json!({
        "memory_format": other, "batch": 1, "contiguous_ms_per_pass": -1.0, "channels_last_ms_per_pass": -1.0,
    });
    std::fs::write(&record, edited.to_string()).unwrap();
    run_stage(&spec, true, pretrain::run).0.unwrap();
    let kept: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    assert_eq!(kept, edited, "the resumed stage neither timed nor rewrote the choice");

    // A fresh run times again.
    run_stage(&spec, false, pretrain::run).0.unwrap();
    let fresh: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    assert!(fresh["contiguous_ms_per_pass"].as_f64().unwrap() > 0.0, "{fresh}");
}

#[test]
fn resumed_pretrain_repeats_the_uninterrupted_losses_and_weights() {
    let whole_dir = tempfile::tempdir().unwrap();
    let whole_spec = two_epoch_pretrain(whole_dir.path());
    let (result, whole) = run_stage(&whole_spec, false, pretrain::run);
    result.unwrap();
    let whole_losses = step_losses(&whole);
    assert_eq!(whole_losses.len(), 8, "two epochs of four steps: {whole_losses:?}");

    // Step 3 stops mid-epoch 1; step 6 stops mid-epoch 2, after an epoch end.
    for (name, done) in [("pretrain-step-00000003", 3), ("pretrain-step-00000006", 6)] {
        let dir = tempfile::tempdir().unwrap();
        interrupted_copy(whole_dir.path(), dir.path(), "pretrain", name);
        let spec = two_epoch_pretrain(dir.path());
        let (result, resumed) = run_stage(&spec, true, pretrain::run);
        result.unwrap_or_else(|e| panic!("resuming from {name}: {e}"));
        let losses = step_losses(&resumed);
        assert_eq!(losses, whole_losses[done..], "losses after resuming from {name}");
        let whole_evals = evaluations(&whole);
        let evals = evaluations(&resumed);
        assert_eq!(evals, whole_evals[whole_evals.len() - evals.len()..], "evaluations after {name}");
        assert_same_weights(
            &whole_spec.output.dir.join("pretrain/model.safetensors"),
            &dir.path().join("pretrain/model.safetensors"),
        );
    }
}

#[test]
fn resumed_knockoff_repeats_the_uninterrupted_losses_and_betas() {
    // Dense weights to score, shared by both runs.
    let init = tempfile::tempdir().unwrap();
    let weights_path = init.path().join("dense.safetensors");
    let probe = tiny_spec(init.path());
    let desc = weights::dense_desc(&probe).unwrap();
    let (_, vs) = weights::build(&desc, tch::Device::Cpu, 3).unwrap();
    weights::save(&vs, &desc, &weights_path, &init.path().join("arch.json")).unwrap();
    let knockoff_spec = |out: &Path| {
        let mut spec = tiny_spec(out);
        spec.pretrain = None;
        spec.model.init_from = Some(weights_path.clone());
        spec.data.train_subset = Some(128);
        spec.knockoff.epochs = 2;
        spec.knockoff.checkpoint_every_steps = 3;
        spec
    };

    let whole_dir = tempfile::tempdir().unwrap();
    let (result, whole) = run_stage(&knockoff_spec(whole_dir.path()), false, knockoff::run);
    result.unwrap();
    let whole_losses = step_losses(&whole);
    assert_eq!(whole_losses.len(), 8, "two epochs of four steps: {whole_losses:?}");

    let dir = tempfile::tempdir().unwrap();
    interrupted_copy(whole_dir.path(), dir.path(), "knockoff", "knockoff-step-00000006");
    let (result, resumed) = run_stage(&knockoff_spec(dir.path()), true, knockoff::run);
    result.unwrap();
    assert_eq!(step_losses(&resumed), whole_losses[6..]);
    // The last score statistics (β and |γ| after epoch 2) are the same.
    let last = |out: &Path| knockoff::read_last_statistics(&out.join("knockoff/statistics.jsonl")).unwrap();
    assert_eq!(last(dir.path()), last(whole_dir.path()));
    assert_same_weights(
        &whole_dir.path().join("knockoff/model.safetensors"),
        &dir.path().join("knockoff/model.safetensors"),
    );

    // Resumed from the checkpoint written after the last epoch (a retry of an
    // attempt that failed after it), the stage trains nothing but still
    // reports the final statistics and a real evaluation: the coordinator
    // decides only from the attempt that succeeds.
    let after_end = tempfile::tempdir().unwrap();
    interrupted_copy(whole_dir.path(), after_end.path(), "knockoff", "knockoff-step-00000008");
    let (result, resumed) = run_stage(&knockoff_spec(after_end.path()), true, knockoff::run);
    let report = result.unwrap();
    assert!(step_losses(&resumed).is_empty(), "nothing left to train");
    let reported: Vec<_> = resumed
        .iter()
        .filter_map(|e| match e {
            Event::Statistics(stats) => Some(stats.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(reported, [last(whole_dir.path())], "the final epoch's statistics, reported again");
    assert!(report.after.samples > 0 && report.after.loss > 0.0, "evaluated, not zeros: {:?}", report.after);
}
