//! A CPU job under NCCL's rules: the strict collective layer refuses every tensor
//! `NcclComm` would refuse, so a layout or precision that breaks the GPU path
//! fails here too.

use std::process::Command;

use scop_worker::collective::CHECKS_ENV;

use crate::ranks::tiny_spec;

const WORKER: &str = env!("CARGO_BIN_EXE_scop-worker");

/// Two ranks, channels-last weights and bf16 autocast through pretrain →
/// knockoff → finetune → export, every collective call checked.
#[test]
fn channels_last_bf16_job_on_two_ranks_obeys_the_nccl_contract() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = std::fs::read_to_string(tiny_spec(tmp.path(), 32, None)).unwrap();
    let text = plain
        .replace("schedule: constant }", "schedule: constant, amp: bf16 }")
        .replace(
            "schedule: constant, bn_recalibration_batches: 2 }",
            "schedule: constant, bn_recalibration_batches: 2, amp: bf16 }",
        )
        .replace("threads: 1 }", "threads: 1, memory_format: channels_last }");
    assert_eq!(text.matches("amp: bf16").count(), 2, "{text}");
    assert!(text.contains("memory_format: channels_last"), "{text}");
    let spec = tmp.path().join("channels-last-bf16.yaml");
    std::fs::write(&spec, text).unwrap();

    let out = Command::new(WORKER)
        .arg("run")
        .arg(&spec)
        .args(["--world-size", "2"])
        .env(CHECKS_ENV, "strict")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let log = std::fs::read_to_string(tmp.path().join("out/metrics.jsonl")).unwrap();
    for stage in ["pretrain", "knockoff", "finetune", "export"] {
        let finished = format!(r#""type":"stage_finished","stage":"{stage}""#);
        assert!(log.contains(&finished), "no {stage} finish in the log: {log}");
    }
    assert!(tmp.path().join("out/export/model.safetensors").is_file(), "{stderr}");
}
