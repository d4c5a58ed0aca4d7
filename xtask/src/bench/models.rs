//! `cargo xtask bench models`: inference latency of ResNet-50 dense vs pruned at
//! 45 % layer-wise (`residual: scatter` and `keep`), batch 1 and 32, 224×224, CPU.
//!
//! The worker measures the three variants side by side in one release-built
//! process (`scop-worker bench-models`) and writes their architecture
//! descriptions; when the project's virtual environment exists, PyTorch eager
//! runs the very same layouts (`resnet_eager.py`) as a baseline column.
//!
//! Both run with one intra-op thread unless `SCOP_BENCH_THREADS` says otherwise:
//! on a shared machine a descheduled OpenMP thread stalls every barrier of a
//! multi-threaded run, which swamps the ratios; one thread per process keeps the
//! comparison fair. Each figure is the best of a few interleaved repetitions,
//! in CPU time of the computing thread when there is one thread (steady under
//! load), else in wall-clock time.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::Context;
use serde_json::Value;

use crate::shell;

const REPS: &str = "3";
const BATCHES: &str = "1,32";
const SIZE: &str = "224";

fn threads() -> String {
    std::env::var("SCOP_BENCH_THREADS").unwrap_or_else(|_| "1".to_owned())
}

pub fn run() -> anyhow::Result<()> {
    let worker = shell::release_binaries()?.join("scop-worker");
    let dir = std::env::temp_dir().join(format!("scop-bench-models-{}", std::process::id()));
    let result = measure(&worker, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure(worker: &Path, dir: &Path) -> anyhow::Result<()> {
    eprintln!("measuring tch (release build), {REPS} repetitions after a warm-up…");
    let threads = threads();
    let dir_arg = dir.to_str().context("temporary directory is not UTF-8")?;
    let tch: Value = serde_json::from_str(&shell::output(Command::new(worker).args([
        "bench-models",
        "--reps",
        REPS,
        "--batches",
        BATCHES,
        "--input-size",
        SIZE,
        "--arch-dir",
        dir_arg,
        "--threads",
        &threads,
    ]))?)
    .context("scop-worker bench-models printed no JSON")?;
    let variants = tch["variants"].as_array().context("no variants in the worker's report")?;

    let python = shell::root().join(".venv/bin/python");
    let torch: Option<Value> = if python.exists() {
        eprintln!("measuring PyTorch eager on the same layouts…");
        let script = shell::root().join("xtask/src/bench/resnet_eager.py");
        let mut cmd = Command::new(&python);
        cmd.arg(script).arg("bench");
        for v in variants {
            cmd.arg(dir.join(format!("{}.json", v["name"].as_str().unwrap_or_default())));
        }
        cmd.args(["--batches", BATCHES, "--size", SIZE, "--reps", REPS, "--threads", &threads]);
        Some(serde_json::from_str(&shell::output(&mut cmd)?).context("resnet_eager.py printed no JSON")?)
    } else {
        eprintln!("no .venv: skipping the PyTorch baseline (run `cargo xtask setup`)");
        None
    };
    // One thread does all the work: its CPU time is the measure least disturbed by load.
    let cpu = threads == "1" && tch["variants"][0]["best_cpu_ms"].as_object().is_some_and(|m| !m.is_empty());
    let metric = if cpu { Metric::ThreadCpu } else { Metric::Wall };
    print!("{}", render(&tch, torch.as_ref(), metric)?);
    Ok(())
}

#[derive(Clone, Copy)]
enum Metric {
    Wall,
    ThreadCpu,
}

impl Metric {
    fn key(self) -> &'static str {
        match self {
            Metric::Wall => "best_ms",
            Metric::ThreadCpu => "best_cpu_ms",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Metric::Wall => "wall-clock",
            Metric::ThreadCpu => "CPU time of the computing thread",
        }
    }
}

/// Milliseconds by batch size for each variant, from the worker's report.
fn tch_times(variant: &Value, metric: Metric) -> BTreeMap<String, f64> {
    variant[metric.key()]
        .as_object()
        .map(|m| m.iter().filter_map(|(b, t)| Some((b.clone(), t.as_f64()?))).collect())
        .unwrap_or_default()
}

fn render(tch: &Value, torch: Option<&Value>, metric: Metric) -> anyhow::Result<String> {
    let variants = tch["variants"].as_array().context("no variants")?;
    let dense = tch_times(&variants[0], metric);
    let batches: Vec<String> = BATCHES.split(',').map(str::to_owned).collect();
    let mut out = format!(
        "\n{} at {}×{}, CPU, {} thread(s) (tch) / {} (PyTorch), best of {} runs, {} milliseconds per forward pass\n\n",
        tch["arch"].as_str().unwrap_or("?"),
        SIZE,
        SIZE,
        tch["threads"],
        torch.map_or("-".to_owned(), |t| t["threads"].to_string()),
        REPS,
        metric.describe()
    );
    out.push_str(&format!("{:<8} {:>12} {:>8}", "variant", "params", "GMACs"));
    for b in &batches {
        out.push_str(&format!(" {:>11} {:>8}", format!("tch b={b}"), "speed-up"));
    }
    if torch.is_some() {
        for b in &batches {
            out.push_str(&format!(" {:>11} {:>8}", format!("torch b={b}"), "speed-up"));
        }
    }
    out.push('\n');
    for (i, v) in variants.iter().enumerate() {
        let times = tch_times(v, metric);
        out.push_str(&format!(
            "{:<8} {:>12} {:>8.3}",
            v["name"].as_str().unwrap_or("?"),
            v["params"],
            v["flops"].as_f64().unwrap_or(0.0) / 1e9
        ));
        for b in &batches {
            let (t, d) =
                (times.get(b).copied().unwrap_or(f64::NAN), dense.get(b).copied().unwrap_or(f64::NAN));
            out.push_str(&format!(" {t:>11.1} {:>7.2}×", d / t));
        }
        if let Some(torch) = torch {
            for b in &batches {
                let row = &torch[metric.key()][b];
                let (t, d) = (row[i].as_f64().unwrap_or(f64::NAN), row[0].as_f64().unwrap_or(f64::NAN));
                out.push_str(&format!(" {t:>11.1} {:>7.2}×", d / t));
            }
        }
        out.push('\n');
    }
    if torch.is_some() {
        out.push_str("\ntch vs PyTorch eager (PyTorch ms / tch ms):");
        for (i, v) in variants.iter().enumerate() {
            let times = tch_times(v, metric);
            for b in &batches {
                let t = times.get(b).copied().unwrap_or(f64::NAN);
                let p = torch.and_then(|x| x[metric.key()][b][i].as_f64()).unwrap_or(f64::NAN);
                out.push_str(&format!("  {} b={b}: {:.2}×", v["name"].as_str().unwrap_or("?"), p / t));
            }
        }
        out.push('\n');
    }
    Ok(out)
}
