//! `cargo xtask bench loader`: the ImageFolder training loader (decode +
//! random-resized crop + flip + normalise + batch) against torchvision's
//! `ImageFolder` + `DataLoader`, same JPEGs, same transform, same number of
//! workers, side by side in one run; prints images/s, images/s per core and the
//! ratio. Then the same for the evaluation transform (short side resized to
//! `size × 256 / 224`, centre crop).
//!
//! The JPEGs are generated once under `target/bench-loader/` (photo-sized,
//! 400–640 × 300–480) by `xtask/bench/torchvision_loader.py`; ours are timed by
//! the hidden `scop-worker bench-loader` in a release build.

use std::process::Command;

use anyhow::Context;
use serde_json::Value;

use crate::shell;

const IMAGES: u32 = 2000;
const CLASSES: u32 = 10;
const BATCH: u32 = 64;
const SIZE: u32 = 224;
const BATCHES: u32 = 25;

fn json_line(text: &str, what: &str) -> anyhow::Result<Value> {
    text.lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .with_context(|| format!("{what} printed no JSON"))
}

pub fn run() -> anyhow::Result<()> {
    let worker = shell::release_binaries()?.join("scop-worker");
    let python = shell::venv_python()?;
    let script = shell::root().join("xtask/bench/torchvision_loader.py");
    let root = shell::target_dir().join("bench-loader");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // One decoding worker per core on both sides: throughput per core is the figure.
    let workers = cores as u32;

    println!("generating {IMAGES} JPEGs under {} (once)...", root.display());
    shell::run(Command::new(&python).arg(&script).args(["generate"]).arg(&root).args([
        "--images",
        &IMAGES.to_string(),
        "--classes",
        &CLASSES.to_string(),
    ]))?;

    let common = |cmd: &mut Command, evaluation: bool| {
        cmd.args(["--workers", &workers.to_string(), "--batch", &BATCH.to_string()])
            .args(["--size", &SIZE.to_string(), "--batches", &BATCHES.to_string()])
            .env("OMP_NUM_THREADS", "1");
        if evaluation {
            cmd.arg("--eval");
        }
    };
    println!(
        "ImageFolder loader, {IMAGES} JPEGs, batch {BATCH} at {SIZE}px, {workers} workers on {cores} cores (best of 2):"
    );
    for (name, evaluation) in [("training", false), ("evaluation", true)] {
        // Alternate the two twice and keep each side's best, so a burst of load on a
        // shared machine does not decide the ratio.
        let (mut ours, mut theirs) = (0.0f64, 0.0f64);
        for _ in 0..2 {
            let mut cmd = Command::new(&worker);
            cmd.arg("bench-loader").arg("--root").arg(&root).args(["--classes", &CLASSES.to_string()]);
            common(&mut cmd, evaluation);
            let report = json_line(&shell::output(&mut cmd)?, "scop-worker bench-loader")?;
            ours = ours.max(report["images_per_second"].as_f64().context("images_per_second")?);

            let mut cmd = super::baseline_command(&python);
            cmd.arg(&script).arg("measure").arg(&root);
            common(&mut cmd, evaluation);
            let report = json_line(&shell::output(&mut cmd)?, "torchvision_loader.py")?;
            theirs = theirs.max(report["images_per_second"].as_f64().context("images_per_second")?);
        }
        let per_core = |ips: f64| ips / cores as f64;
        let goal = if evaluation { "" } else { "  (goal >= 1.5x)" };
        println!(
            "{name} transform ({}):",
            if evaluation { "resize, centre crop" } else { "random-resized crop, flip" }
        );
        println!("  scop        {ours:>8.1} img/s  {:>7.1} img/s per core", per_core(ours));
        println!("  torchvision {theirs:>8.1} img/s  {:>7.1} img/s per core", per_core(theirs));
        println!("  ratio (per core, scop / torchvision): {:.2}x{goal}", ours / theirs);
    }
    Ok(())
}
