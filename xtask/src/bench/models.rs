//! `cargo xtask bench models`: inference latency of ResNet-50 dense vs pruned with
//! `residual: scatter`, `keep` and `group`, all by the global policy to 2.25× fewer
//! FLOPs, batch 1 and 32, 224×224, CPU.
//!
//! The worker measures the four variants side by side in one release-built
//! process (`scop-worker bench-models`) and writes their architecture
//! descriptions and exported TorchScript; when the project's virtual environment
//! exists, PyTorch runs the very same architectures eagerly and the exported
//! TorchScript (`resnet_eager.py`) as baseline columns.
//!
//! Every table is measured in three layouts: contiguous (NCHW), channels-last
//! (the dense layout oneDNN prefers, which pruned widths that are multiples of 8
//! keep) and oneDNN's own blocked layout (the folded network on `to_mkldnn`
//! tensors; the scatter variant cannot run there and stays contiguous). The
//! blocked table's baseline is scop's exported TorchScript after PyTorch's own CPU
//! inference passes (freeze and `optimize_for_inference`, which also fold BN and
//! move to blocked tensors, and fuse ReLUs and adds into the convs). A last table
//! puts each variant in its fastest layout, the one a deployment would pick, and a
//! final run times the pruned variants with widths rounded to 16 instead of 8.
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
/// Each table is measured in each of these layouts (the first two named as in the job spec).
const LAYOUTS: [&str; 3] = ["contiguous", "channels_last", "blocked"];
/// The pruned variants have this many times fewer FLOPs than the dense network.
const FLOPS_FACTOR: &str = "2.25";

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
    let threads = threads();
    let dir_arg = dir.to_str().context("temporary directory is not UTF-8")?;
    let python = shell::root().join(".venv/bin/python");
    let mut reports = Vec::new();
    for layout in LAYOUTS {
        eprintln!("measuring tch (release build, {layout}), {REPS} repetitions after a warm-up…");
        let tch = bench_models(worker, layout, BATCHES, &threads, &["--arch-dir", dir_arg])?;
        let variants = tch["variants"].as_array().context("no variants in the worker's report")?;

        let mut baselines = Vec::new();
        if python.exists() {
            let script = shell::root().join("xtask/src/bench/resnet_eager.py");
            for baseline in Baseline::for_layout(layout) {
                let label = baseline.label;
                eprintln!("measuring PyTorch ({label}, {layout}) on the same architectures…");
                let mut cmd = super::baseline_command(&python);
                cmd.arg(&script).arg(baseline.mode);
                for v in variants {
                    cmd.arg(dir.join(format!("{}.{}", v["name"].as_str().unwrap_or_default(), baseline.ext)));
                }
                cmd.args(["--batches", BATCHES, "--size", SIZE, "--reps", REPS, "--threads", &threads]);
                cmd.args(["--memory-format", baseline.memory_format, "--optimize", baseline.optimize]);
                let report: Value = serde_json::from_str(&shell::output(&mut cmd)?)
                    .with_context(|| format!("resnet_eager.py {} printed no JSON", baseline.mode))?;
                baselines.push((label, report));
            }
        } else {
            eprintln!("no .venv: skipping the PyTorch baselines (run `cargo xtask setup`)");
        }
        let metric = Metric::for_report(&threads, &tch);
        print!("{}", render(&tch, &baselines, metric, legend(layout))?);
        reports.push((layout, tch, metric));
    }
    print!("{}", render_best(&reports)?);
    print!("{}", wider_rounding(worker, &threads)?);
    Ok(())
}

/// A PyTorch column beside tch's: how `resnet_eager.py` runs it.
struct Baseline {
    label: &'static str,
    /// `resnet_eager.py`'s command (`bench` or `script`) and the files it reads.
    mode: &'static str,
    ext: &'static str,
    memory_format: &'static str,
    /// `--optimize`: freeze and `torch.jit.optimize_for_inference` first.
    optimize: &'static str,
}

impl Baseline {
    fn for_layout(layout: &'static str) -> Vec<Baseline> {
        if layout == "blocked" {
            // PyTorch's inference passes choose the layout (blocked) themselves.
            let optimized = Baseline {
                label: "jit-opt",
                mode: "script",
                ext: "pt",
                memory_format: "contiguous",
                optimize: "1",
            };
            return vec![optimized];
        }
        vec![
            Baseline { label: "eager", mode: "bench", ext: "json", memory_format: layout, optimize: "0" },
            Baseline { label: "script", mode: "script", ext: "pt", memory_format: layout, optimize: "0" },
        ]
    }
}

/// What the columns of a table in `layout` are.
fn legend(layout: &str) -> &'static str {
    if layout == "blocked" {
        "tch = scop's model in Rust, each BN folded into its conv, on oneDNN's blocked tensors (scatter: \
         contiguous, index_add has no oneDNN kernel); jit-opt = scop's exported TorchScript in PyTorch \
         after torch.jit.freeze and optimize_for_inference (BN folded, blocked tensors, ReLU and add fused \
         into the convs)"
    } else {
        "tch = scop's model in Rust, each BN folded into its conv; eager = the same architecture in \
         PyTorch, script = scop's exported TorchScript in PyTorch, both with conv and BN apart"
    }
}

/// `scop-worker bench-models` at the bench's size and FLOPs target, its JSON report.
fn bench_models(
    worker: &Path,
    layout: &str,
    batches: &str,
    threads: &str,
    extra: &[&str],
) -> anyhow::Result<Value> {
    let mut cmd = Command::new(worker);
    cmd.args(["bench-models", "--reps", REPS, "--batches", batches, "--input-size", SIZE])
        .args(["--flops-factor", FLOPS_FACTOR, "--memory-format", layout, "--threads", threads])
        .args(extra);
    serde_json::from_str(&shell::output(&mut cmd)?).context("scop-worker bench-models printed no JSON")
}

/// Widths rounded to 16: oneDNN's f32 kernels on AVX-512 CPUs work in blocks of
/// 16 channels, so `round_to: 16` suits them better than the default 8. Timed in
/// the two layouts those widths are for, channels-last and blocked, at the largest
/// batch, against the dense network timed again in the same run.
fn wider_rounding(worker: &Path, threads: &str) -> anyhow::Result<String> {
    let last = BATCHES.split(',').next_back().context("no batch sizes")?;
    let mut out = String::new();
    for layout in ["channels_last", "blocked"] {
        eprintln!("measuring tch ({layout}, round_to 16), {REPS} repetitions after a warm-up…");
        let tch = bench_models(worker, layout, last, threads, &["--round-to", "16"])?;
        let metric = Metric::for_report(threads, &tch);
        let variants = tch["variants"].as_array().context("no variants in the worker's report")?;
        let ms = |v: &Value| tch_times(v, metric).get(last).copied().unwrap_or(f64::NAN);
        let dense_ms = ms(&variants[0]);
        let dense_flops = variants[0]["flops"].as_f64().unwrap_or(f64::NAN);
        out.push_str(&format!(
            "\nround_to 16, tch, {layout}, b={last} (dense timed again in the same run):\n"
        ));
        for v in variants {
            let speedup = dense_ms / ms(v);
            let flops_factor = dense_flops / v["flops"].as_f64().unwrap_or(f64::NAN);
            out.push_str(&format!(
                "  {:<8} {:>9.1} ms  {:<13}  {flops_factor:>5.2}× fewer FLOPs  {speedup:>5.2}× dense  {:>5.2} speed-up/FLOPs÷{}\n",
                v["name"].as_str().unwrap_or("?"),
                ms(v),
                v["memory_format"].as_str().unwrap_or("?"),
                speedup / flops_factor,
                goals(v),
            ));
        }
    }
    Ok(out)
}

/// The goals, beside the group variant's row.
fn goals(variant: &Value) -> &'static str {
    if variant["name"] == "group" { "  (goals: >= 2.0× dense, >= 0.9 per FLOPs÷)" } else { "" }
}

/// Each variant in its fastest layout at the largest batch, against the dense
/// network in its own fastest layout.
fn render_best(reports: &[(&str, Value, Metric)]) -> anyhow::Result<String> {
    let last = BATCHES.split(',').next_back().context("no batch sizes")?;
    let (_, first, _) = reports.first().context("no reports")?;
    let variants = first["variants"].as_array().context("no variants")?;
    // (milliseconds, layout) of variant i in its fastest layout: the one it ran in
    // (a variant that cannot run blocked ran contiguous in the blocked run).
    let fastest = |i: usize| -> (f64, &str) {
        reports
            .iter()
            .map(|(layout, tch, metric)| {
                let variant = &tch["variants"][i];
                let ms = tch_times(variant, *metric).get(last).copied().unwrap_or(f64::NAN);
                (ms, variant["memory_format"].as_str().unwrap_or(layout))
            })
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .unwrap_or((f64::NAN, "?"))
    };
    let (dense_ms, dense_layout) = fastest(0);
    let dense_flops = variants[0]["flops"].as_f64().unwrap_or(f64::NAN);
    let mut out = format!("\nEach variant in its fastest layout, tch, b={last}:\n");
    for (i, v) in variants.iter().enumerate() {
        let (ms, layout) = fastest(i);
        let flops_factor = dense_flops / v["flops"].as_f64().unwrap_or(f64::NAN);
        let speedup = dense_ms / ms;
        out.push_str(&format!(
            "  {:<8} {ms:>9.1} ms  {layout:<13}  {speedup:>5.2}× dense ({dense_layout})  {:>5.2} speed-up/FLOPs÷{}\n",
            v["name"].as_str().unwrap_or("?"),
            speedup / flops_factor,
            goals(v),
        ));
    }
    Ok(out)
}

#[derive(Clone, Copy)]
enum Metric {
    Wall,
    ThreadCpu,
}

impl Metric {
    /// One thread does all the work: its CPU time is the measure least disturbed
    /// by load, where the worker's report has it.
    fn for_report(threads: &str, tch: &Value) -> Self {
        let cpu =
            threads == "1" && tch["variants"][0]["best_cpu_ms"].as_object().is_some_and(|m| !m.is_empty());
        if cpu { Metric::ThreadCpu } else { Metric::Wall }
    }

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

/// Milliseconds of variant `i` at batch `b` from one source of figures.
type Source<'a> = Box<dyn Fn(usize, &str) -> f64 + 'a>;

fn render(tch: &Value, baselines: &[(&str, Value)], metric: Metric, legend: &str) -> anyhow::Result<String> {
    let variants = tch["variants"].as_array().context("no variants")?;
    let batches: Vec<String> = BATCHES.split(',').map(str::to_owned).collect();
    // Milliseconds of variant i at batch b, per source: tch first, then the baselines.
    let tch_ms: Vec<BTreeMap<String, f64>> = variants.iter().map(|v| tch_times(v, metric)).collect();
    let mut sources: Vec<(String, Source<'_>)> =
        vec![("tch".to_owned(), Box::new(|i: usize, b: &str| tch_ms[i].get(b).copied().unwrap_or(f64::NAN)))];
    for (label, report) in baselines {
        sources.push((
            (*label).to_owned(),
            Box::new(move |i: usize, b: &str| report[metric.key()][b][i].as_f64().unwrap_or(f64::NAN)),
        ));
    }
    let mut out = format!(
        "\n{} at {}×{}, {}, CPU, {} thread(s), best of {} runs, {} milliseconds per forward pass;\n\
         pruned variants: global policy to {}× fewer FLOPs, round_to {} ({})\n\n",
        tch["arch"].as_str().unwrap_or("?"),
        SIZE,
        SIZE,
        tch["memory_format"].as_str().unwrap_or("?"),
        tch["threads"],
        REPS,
        metric.describe(),
        tch["flops_factor"],
        tch["round_to"],
        legend,
    );
    out.push_str(&format!("{:<8} {:>11} {:>7} {:>7}", "variant", "params", "GMACs", "FLOPs÷"));
    for (label, _) in &sources {
        for b in &batches {
            out.push_str(&format!(" {:>13} {:>7}", format!("{label} b={b}"), "×dense"));
        }
    }
    out.push_str(&format!(" {:>14}\n", "tch ×/FLOPs÷"));
    let dense_flops = variants[0]["flops"].as_f64().unwrap_or(f64::NAN);
    let last = batches.last().context("no batch sizes")?;
    for (i, v) in variants.iter().enumerate() {
        let flops = v["flops"].as_f64().unwrap_or(f64::NAN);
        out.push_str(&format!(
            "{:<8} {:>11} {:>7.3} {:>6.2}×",
            v["name"].as_str().unwrap_or("?"),
            v["params"],
            flops / 1e9,
            dense_flops / flops
        ));
        for (_, ms) in &sources {
            for b in &batches {
                let (t, d) = (ms(i, b), ms(0, b));
                out.push_str(&format!(" {t:>13.1} {:>6.2}×", d / t));
            }
        }
        let speedup = sources[0].1(0, last) / sources[0].1(i, last);
        out.push_str(&format!(" {:>9.2} b={last}\n", speedup / (dense_flops / flops)));
    }
    Ok(out)
}
