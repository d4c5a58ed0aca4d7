//! `cargo xtask bench train`: training steps of the stage code against PyTorch
//! eager, side by side in one run with the same net, batch, input size and
//! thread count, plus the knockoff/plain ratio, the pruned/dense ratios of ResNet-20
//! pruned at 45 % with `residual: scatter`, `keep` and `group`, each with `round_to`
//! 1 and 8 and in the layout `memory_format: auto` times faster, and the loader
//! throughput against the training throughput. PyTorch's pruned/dense ratios on the
//! same architectures stand beside ours; where they differ, it is mostly scop's
//! channels-last batch-norm backward (`worker/src/models/batch_norm.rs`).
//!
//! Our figures come from the hidden `scop-worker bench-train` command (the real
//! `Supervised` and knockoff step code on a random batch), PyTorch's from
//! `xtask/bench/pytorch_train.py` in the project's venv.

use std::path::Path;
use std::process::Command;

use anyhow::Context;
use serde_json::Value;

use crate::shell;

const ARCH: &str = "resnet20";
const BATCH: u32 = 128;
const SIZE: u32 = 32;
const IN_CHANNELS: u32 = 3;
/// Untimed steps of each kind, then rounds of timed steps (ours interleaves the kinds per round).
const WARMUP: u32 = 3;
const STEPS: u32 = 4;
const ROUNDS: u32 = 3;
const LOADER_BATCHES: u32 = 30;

pub fn run() -> anyhow::Result<()> {
    let worker = shell::release_binaries()?.join("scop-worker");
    let python = shell::venv_python()?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let data = shell::root().join("data/fashion-mnist");

    let mut ours = Command::new(&worker);
    ours.args(["bench-train", "--arch", ARCH])
        .args(["--batch", &BATCH.to_string(), "--input-size", &SIZE.to_string()])
        .args(["--in-channels", &IN_CHANNELS.to_string(), "--threads", &threads.to_string()])
        .args(["--warmup", &WARMUP.to_string(), "--steps", &STEPS.to_string()])
        .args(["--rounds", &ROUNDS.to_string(), "--loader-batches", &LOADER_BATCHES.to_string()]);
    let arch_dir = std::env::temp_dir().join(format!("scop-bench-train-{}", std::process::id()));
    ours.arg("--arch-dir").arg(&arch_dir);
    if data.join("train-images-idx3-ubyte.gz").exists() {
        ours.arg("--loader-data").arg(&data);
    } else {
        eprintln!("{} is missing (`cargo xtask data`): no loader figure", data.display());
    }
    ours.env("OMP_NUM_THREADS", threads.to_string());
    // Ours, then PyTorch on the architectures ours wrote: images/s of each
    // network, dense first, each in its faster layout.
    let measured = (|| -> anyhow::Result<(Value, Vec<f64>)> {
        let ours: Value = serde_json::from_str(shell::output(&mut ours)?.trim())
            .context("scop-worker bench-train printed no JSON")?;
        let pruned = ours["pruned"].as_array().context("bench-train JSON lacks pruned")?;
        let names: Vec<String> = std::iter::once("dense".to_owned())
            .chain(
                pruned.iter().map(|p| format!("{}-{}", p["residual"].as_str().unwrap_or("?"), p["round_to"])),
            )
            .collect();
        let torch_archs = torch_arch_steps(&python, &arch_dir, &names, threads)?;
        Ok((ours, torch_archs))
    })();
    let _ = std::fs::remove_dir_all(&arch_dir);
    let (ours, torch_archs) = measured?;

    // PyTorch eager as most code runs it (contiguous NCHW), and in the layout we train in.
    let torch_run = |channels_last: bool| -> anyhow::Result<(f64, f64)> {
        let out = shell::output(&mut pytorch_train(&python, threads, channels_last))?;
        let mode = |mode: &str| -> anyhow::Result<f64> {
            json_lines(&out)
                .find(|v| v["mode"] == mode)
                .and_then(|v| v["images_per_second"].as_f64())
                .with_context(|| format!("pytorch_train.py printed no {mode} figure:\n{out}"))
        };
        Ok((mode("plain")?, mode("knockoff")?))
    };
    let (torch_plain_nchw, torch_knockoff_nchw) = torch_run(false)?;
    let (torch_plain_cl, torch_knockoff_cl) = torch_run(true)?;
    let ours_cl = ours["dense_channels_last"].as_bool().unwrap_or(false);
    let (torch_plain, torch_knockoff) =
        if ours_cl { (torch_plain_cl, torch_knockoff_cl) } else { (torch_plain_nchw, torch_knockoff_nchw) };

    let figure = |key: &str| -> anyhow::Result<f64> {
        ours[key]["images_per_second"].as_f64().with_context(|| format!("bench-train JSON lacks {key}"))
    };
    let (plain, knockoff) = (figure("plain")?, figure("knockoff")?);
    let pruned = ours["pruned"].as_array().context("bench-train JSON lacks pruned")?;

    let layout = |cl: bool| if cl { "channels-last" } else { "contiguous" };
    println!(
        "training steps of {ARCH}, batch {BATCH}, {SIZE}x{SIZE}x{IN_CHANNELS}, {threads} threads, CPU (images/s; higher is better)"
    );
    println!(
        "scop trains the dense net {} (resources.memory_format: auto); \
         the ratio is against PyTorch eager in the dense net's layout",
        layout(ours_cl),
    );
    println!("{:<34} {:>10} {:>14} {:>14} {:>8}", "step", "scop", "pytorch nchw", "pytorch ch-last", "ratio");
    println!(
        "{:<34} {plain:>10.0} {torch_plain_nchw:>14.0} {torch_plain_cl:>14.0} {:>7.2}x  (goal >= 1.0x)",
        "plain (SGD Nesterov)",
        plain / torch_plain
    );
    println!(
        "{:<34} {knockoff:>10.0} {torch_knockoff_nchw:>14.0} {torch_knockoff_cl:>14.0} {:>7.2}x",
        "knockoff (beta only, Adam)",
        knockoff / torch_knockoff
    );
    println!(
        "{:<34} {:>10.2}x {:>13.2}x {:>13.2}x            (goal <= 1.7x)",
        "time of knockoff step / plain step",
        plain / knockoff,
        torch_plain_nchw / torch_knockoff_nchw,
        torch_plain_cl / torch_knockoff_cl
    );
    let dense_flops = ours["dense_flops"].as_f64().unwrap_or(f64::NAN);
    println!(
        "{:<34} {:>10} {:>14} {:>8}  (each net in its faster layout; PyTorch eager on the same architectures)",
        "pruned, plain step", "scop", "pytorch", "ratio"
    );
    for (p, torch_ips) in pruned.iter().zip(&torch_archs[1..]) {
        let ips = p["images_per_second"].as_f64().context("bench-train JSON lacks a pruned figure")?;
        let residual = p["residual"].as_str().unwrap_or("?");
        let round_to = &p["round_to"];
        let flops = p["flops"].as_f64().unwrap_or(f64::NAN);
        println!(
            "{:<34} {ips:>10.0} {torch_ips:>14.0} {:>7.2}x  speed-up over dense (PyTorch {:.2}x; scop {}; {:.2}x fewer FLOPs, params {} -> {}){}",
            format!("45%-pruned, {residual}, round_to {round_to}"),
            ips / plain,
            torch_ips / torch_archs[0],
            layout(p["channels_last"].as_bool().unwrap_or(false)),
            dense_flops / flops,
            ours["dense_params"],
            p["params"],
            if residual == "group" { "  (goal >= 1.6x)" } else { "" }
        );
    }
    println!(
        "(channels-last, scop trains batch norm at widths that are not multiples of 16 with a backward pass of \
         its own; PyTorch's is libtorch's, which runs scalar code at those widths)"
    );
    match ours["loader_images_per_second"].as_f64() {
        Some(loader) => println!(
            "{:<34} {loader:>10.0} {:>10} {:>7.2}x  loader / plain step (must be > 1.0x)",
            "loader (Fashion-MNIST, augmented)",
            "-",
            loader / plain
        ),
        None => println!("loader: not measured"),
    }
    Ok(())
}

/// PyTorch eager's plain-step images/s of each network `bench-train --arch-dir`
/// wrote (`names`, in order), in the faster of the two layouts for each.
fn torch_arch_steps(python: &Path, dir: &Path, names: &[String], threads: usize) -> anyhow::Result<Vec<f64>> {
    let files: Vec<String> =
        names.iter().map(|n| dir.join(format!("{n}.json")).display().to_string()).collect();
    let mut best = vec![0.0_f64; names.len()];
    for channels_last in [false, true] {
        let mut torch = pytorch_train(python, threads, channels_last);
        let out = shell::output(torch.args(["--arch-json", &files.join(",")]))?;
        let figures: Vec<f64> = json_lines(&out).filter_map(|v| v["images_per_second"].as_f64()).collect();
        anyhow::ensure!(
            figures.len() == names.len(),
            "pytorch_train.py --arch-json printed {} figures for {} networks:\n{out}",
            figures.len(),
            names.len()
        );
        for (b, f) in best.iter_mut().zip(figures) {
            *b = b.max(f);
        }
    }
    Ok(best)
}

/// `pytorch_train.py` at the bench's batch, size, threads and steps, in one layout.
fn pytorch_train(python: &Path, threads: usize, channels_last: bool) -> Command {
    let mut torch = super::baseline_command(python);
    torch
        .arg(shell::root().join("xtask/bench/pytorch_train.py"))
        .args(["--batch", &BATCH.to_string(), "--size", &SIZE.to_string()])
        .args(["--in-channels", &IN_CHANNELS.to_string(), "--threads", &threads.to_string()])
        .args(["--warmup", &WARMUP.to_string(), "--steps", &(STEPS * ROUNDS).to_string()])
        .env("OMP_NUM_THREADS", threads.to_string());
    if channels_last {
        torch.arg("--channels-last");
    }
    torch
}

/// The JSON objects among `out`'s lines.
fn json_lines(out: &str) -> impl Iterator<Item = Value> + '_ {
    out.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok())
}
