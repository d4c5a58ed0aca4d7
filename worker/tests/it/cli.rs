//! The `scop-worker` binary: inspect, export, info and the GPU check's CPU rehearsal keep working.

use std::process::{Command, Output};

use serde_json::Value;

fn worker(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scop-worker")).args(args).env_remove("RUST_BACKTRACE").output().unwrap()
}

fn stdout_json(out: &Output) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn inspect_prints_the_totals_as_json() {
    let out = worker(&[
        "inspect",
        "--arch",
        "resnet50",
        "--num-classes",
        "10",
        "--prune-rate",
        "0.45",
        "--input-size",
        "32",
        "--json",
    ]);
    let report = stdout_json(&out);
    assert_eq!(report["params_dense"], 23_528_522);
    assert_eq!(report["params_pruned"], 10_180_582);
    assert_eq!(report["flops_dense"], 83_431_424);
    assert_eq!(report["flops_pruned"], 37_059_686);
    assert_eq!(report["units"].as_array().unwrap().len(), 48);

    let out = worker(&["inspect", "--arch", "resnet18", "--policy", "global", "--residual", "keep"]);
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("policy global, rate 0.45, residual keep"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("FLOPs ")), "{table}");
}

#[test]
fn bad_arguments_exit_non_zero_with_the_field_named() {
    let out = worker(&["inspect", "--arch", "resnet51"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("arch: must be one of resnet20"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let init = dir.path().join("init.safetensors");
    std::fs::write(&init, b"not safetensors").unwrap();
    let out_dir = dir.path().join("out");
    let out = worker(&[
        "export",
        "--arch",
        "resnet20",
        "--init-from",
        init.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}: reading safetensors", init.display())), "{err}");
}

#[test]
fn export_with_init_from_writes_the_four_files() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first");
    let out =
        worker(&["export", "--arch", "resnet20", "--num-classes", "4", "--out", first.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let second = dir.path().join("second");
    let weights = first.join("model.safetensors");
    let out = worker(&[
        "export",
        "--arch",
        "resnet20",
        "--num-classes",
        "4",
        "--init-from",
        weights.to_str().unwrap(),
        "--out",
        second.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for file in ["model.safetensors", "arch.json", "model.pt", "model-card.json"] {
        assert!(second.join(file).is_file(), "{file}");
    }
    assert_eq!(std::fs::read(&weights).unwrap(), std::fs::read(second.join("model.safetensors")).unwrap());
}

#[test]
fn info_still_reports_the_runtime() {
    let info = stdout_json(&worker(&["info"]));
    assert!(info["intra_op_threads"].as_i64().unwrap() >= 1);
}

/// The CPU rehearsal of `scripts/gpu-check`: the collective checks run on a
/// one-rank TCP ring under NCCL's rules, and the training-step benchmark on the
/// CPU, each printing what the script parses.
#[cfg(feature = "nccl")]
#[test]
fn the_gpu_check_commands_rehearse_on_the_cpu() {
    let out = worker(&["check-nccl", "--cpu"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let checks: Vec<&str> = lines.iter().map(|l| l["check"].as_str().unwrap()).collect();
    assert_eq!(
        checks,
        [
            "tcp (nccl rules) communicator (1 rank)",
            "tcp (nccl rules) all_reduce / broadcast",
            "collective contract",
            "ddp over tcp (nccl rules)"
        ]
    );
    assert!(lines.iter().all(|l| l["ok"] == Value::Bool(true)), "{lines:?}");
    assert_eq!(lines[2]["detail"], "a raw channels-last weight is refused");

    let bench = stdout_json(&worker(&[
        "bench-gpu-train",
        "--cpu",
        "--arch",
        "resnet20",
        "--num-classes",
        "10",
        "--input-size",
        "16",
        "--batch",
        "4",
        "--warmup",
        "0",
        "--steps",
        "1",
    ]));
    assert_eq!((bench["arch"].as_str(), bench["batch"].as_i64()), (Some("resnet20"), Some(4)));
    assert!(bench["images_per_second"].as_f64().unwrap() > 0.0, "{bench}");
}
