//! Whole tiny jobs through the real `scop-worker run` binary: the artifacts a
//! user gets, and the one-line reasons it fails with.

use std::path::Path;
use std::process::{Command, Output};

use scop_core::plan::Plan;
use scop_worker::events::Event;
use scop_worker::stages::weights;
use tch::{Device, Kind, Tensor};

use super::{fashion_mnist, tiny_yaml};

/// Writes `yaml` next to the output and runs `scop-worker run` on it.
fn run_worker(dir: &Path, yaml: &str) -> Output {
    let spec = dir.join("job.yaml");
    std::fs::write(&spec, yaml).unwrap();
    Command::new(env!("CARGO_BIN_EXE_scop-worker"))
        .arg("run")
        .arg(&spec)
        .output()
        .expect("scop-worker starts")
}

/// The run failed with exit code 1 and an `error:` line on stderr containing `reason`.
fn assert_fails_with(output: &Output, reason: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    let line = stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("{stderr}"));
    let message: String = stderr[stderr.find(line).unwrap()..].to_owned();
    assert!(message.contains(reason), "expected {reason:?} in {message:?}");
}

#[test]
fn a_tiny_job_exports_a_pruned_model_with_its_card_and_plan() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let output = run_worker(dir.path(), &tiny_yaml(&fashion_mnist(), &out));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    for column in ["model", "network", "dataset", "top-1", "top-5", "prune rate", "params", "FLOPs"] {
        assert!(stdout.contains(column), "summary table lacks {column}: {stdout}");
    }
    assert!(stdout.contains("| SCOP pruned") && stdout.contains("resnet20"), "{stdout}");

    // metrics.jsonl: every line an event, a progress event per step of each stage.
    let log = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let events: Vec<Event> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for stage in ["pretrain", "knockoff", "finetune"] {
        let steps =
            events.iter().filter(|e| matches!(e, Event::Progress { stage: s, .. } if s == stage)).count();
        assert_eq!(steps, 8, "{stage}: 256 images in batches of 32");
    }
    assert!(events.iter().any(|e| matches!(e, Event::PlanDecided { .. })));

    // plan.json: every unit keeps C - floor(0.45 C) channels.
    let plan: Plan = serde_json::from_slice(&std::fs::read(out.join("plan.json")).unwrap()).unwrap();
    assert_eq!(plan.units.len(), 18, "resnet20: two units in each of its nine blocks");
    for unit in &plan.units {
        let pruned = (0.45 * f64::from(unit.channels)).floor() as usize;
        assert_eq!(unit.kept.len(), unit.channels as usize - pruned, "{}", unit.name);
    }

    // The model card carries metrics and preprocessing.
    let export = out.join("export");
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(export.join("model-card.json")).unwrap()).unwrap();
    for key in ["top1_dense", "top1_pruned", "top5_pruned", "top1_pruned_before_finetune"] {
        let v = card["metrics"][key].as_f64().unwrap_or_else(|| panic!("card lacks metrics.{key}: {card}"));
        assert!((0.0..=1.0).contains(&v), "{key} = {v}");
    }
    let pre = &card["preprocessing"];
    assert_eq!(pre["input_size"], 32);
    assert_eq!(pre["channels"], 1);
    assert_eq!(pre["mean"].as_array().map(Vec::len), Some(1), "{pre}");
    assert_eq!(pre["std"].as_array().map(Vec::len), Some(1), "{pre}");

    // TorchScript and safetensors + arch.json are the same network.
    let desc = weights::read_arch(&export.join("arch.json")).unwrap();
    assert_eq!(desc.params(), card["params"].as_u64().unwrap());
    let (model, _vs) = weights::load(&desc, &export.join("model.safetensors"), Device::Cpu).unwrap();
    let script = tch::CModule::load(export.join("model.pt")).unwrap();
    tch::manual_seed(5);
    let x = Tensor::randn([4, 1, 32, 32], (Kind::Float, Device::Cpu));
    let eager = tch::no_grad(|| model.f_forward_t(&x, false).unwrap());
    let scripted = tch::no_grad(|| script.forward_ts(&[&x]).unwrap());
    assert_eq!(eager.size(), [4, 10]);
    let diff = (&eager - &scripted).abs().max().double_value(&[]);
    assert!(diff < 1e-4, "TorchScript and eager outputs differ by {diff}");
}

#[test]
fn a_diverging_loss_fails_the_stage_naming_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = tiny_yaml(&fashion_mnist(), &dir.path().join("out")).replace("lr: 0.05", "lr: 1.0e30");
    assert_fails_with(&run_worker(dir.path(), &yaml), "pretrain: the loss is");
}

#[test]
fn a_missing_data_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty-data");
    std::fs::create_dir_all(&empty).unwrap();
    let yaml = tiny_yaml(&empty, &dir.path().join("out"));
    assert_fails_with(&run_worker(dir.path(), &yaml), "train-images-idx3-ubyte");
}

#[test]
fn a_spec_error_names_the_field_path() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = tiny_yaml(&fashion_mnist(), &dir.path().join("out")).replace("lr: 0.02", "lr: -0.1");
    assert_fails_with(&run_worker(dir.path(), &yaml), "finetune.lr: must be > 0, got -0.1");
}

#[test]
fn knockoff_without_weights_explains_itself() {
    let dir = tempfile::tempdir().unwrap();
    let yaml: String = tiny_yaml(&fashion_mnist(), &dir.path().join("out"))
        .lines()
        .filter(|l| !l.starts_with("pretrain:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_fails_with(&run_worker(dir.path(), &yaml), "knockoff needs trained weights");
}

/// `amp: bf16` trains pretrain and finetune in bf16 mixed precision: the job
/// completes, its losses stay finite, and the saved weights are fp32.
#[test]
fn a_job_with_bf16_amp_trains_and_saves_fp32_weights() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let yaml = tiny_yaml(&fashion_mnist(), &out)
        .replace("schedule: cosine, nesterov: true }", "schedule: cosine, nesterov: true, amp: bf16 }")
        .replace("bn_recalibration_batches: 2 }", "bn_recalibration_batches: 2, amp: bf16 }");
    assert_eq!(yaml.matches("amp: bf16").count(), 2, "{yaml}");
    let output = run_worker(dir.path(), &yaml);
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    let log = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let losses: Vec<f64> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Event>(l).ok())
        .filter_map(|e| match e {
            Event::Progress { loss, .. } => Some(loss),
            _ => None,
        })
        .collect();
    assert!(!losses.is_empty() && losses.iter().all(|l| l.is_finite()), "{losses:?}");
    for (name, tensor) in super::read_weights(&out.join("finetune/model.safetensors")) {
        assert_eq!(tensor.kind(), Kind::Float, "{name}");
    }
}

/// `scop-worker run` on a sweep: pretrain and knockoff once in the output,
/// then each candidate in `branches/<name>/` from the shared weights; a
/// table with one row per candidate and `sweep.json` with the outcomes.
#[test]
fn a_local_sweep_runs_the_shared_stages_once_then_each_candidate() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let yaml = format!(
        "{}sweep: [{{ criterion: scop, rate: 0.3 }}, {{ criterion: l1, rate: 0.6 }}]\n",
        tiny_yaml(&fashion_mnist(), &out)
    );
    let output = run_worker(dir.path(), &yaml);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("CANDIDATE") && stdout.contains("CPU LATENCY"), "{stdout}");

    // The shared stages ran once, in the sweep's own output.
    let log = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let events: Vec<Event> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let finished: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::StageFinished { stage, .. } => Some(stage.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(finished, ["pretrain", "knockoff"]);

    let plan = |name: &str| -> Plan {
        serde_json::from_slice(&std::fs::read(out.join("branches").join(name).join("plan.json")).unwrap())
            .unwrap()
    };
    let (scop, l1) = (plan("scop-0.3"), plan("l1-0.6"));
    assert_eq!((scop.prune.rate, l1.prune.rate), (0.3, 0.6));
    assert_eq!(l1.prune.criterion, scop_core::spec::Criterion::L1);
    // The SCOP branch used the sweep's knockoff weights; the l1 branch scored its own.
    assert!(out.join("branches/scop-0.3/knockoff/model.safetensors").exists());
    assert!(!out.join("branches/scop-0.3/pretrain/checkpoints").exists());
    assert!(out.join("branches/l1-0.6/score/statistics.jsonl").exists());

    let outcomes: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("sweep.json")).unwrap()).unwrap();
    let outcomes = outcomes.as_array().unwrap();
    assert_eq!(outcomes.len(), 2);
    for o in outcomes {
        assert!(o["error"].is_null(), "{o}");
        assert!(o["latency_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{o}");
        assert!(o["summary"]["pruned"]["top1"].as_f64().is_some(), "{o}");
    }
}
