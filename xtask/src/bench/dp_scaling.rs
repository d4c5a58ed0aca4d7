//! The data-parallel half of `cargo xtask bench collectives`: throughput of the
//! ResNet-20 training step at 1, 2 and 4 CPU rank processes on this machine.
//!
//! Weak scaling: every rank trains 128 samples per step, so the global batch grows
//! with the ranks. The machine's cores are shared fairly: each rank gets
//! `cores / world` intra-op threads (at least 1), so the ranks together never ask
//! for more threads than there are cores, except when there are more ranks than
//! cores, where each rank gets one thread and the ranks time-share.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use super::collectives::free_ports;

const BATCH: usize = 128;
const WARMUP: usize = 2;
const STEPS: usize = 8;
const WORLDS: [usize; 3] = [1, 2, 4];

pub fn run(worker: &Path) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!();
    println!(
        "data-parallel training step, ResNet-20 on 32x32x3, {BATCH} samples per rank and step, SGD, \
         gradients averaged over the tcp ring; {STEPS} timed steps after {WARMUP} warm-up; {cores} cores"
    );
    println!("{:>5}  {:>15}  {:>9}  {:>8}  {:>15}", "ranks", "threads/rank", "step ms", "img/s", "vs 1 rank");
    let mut base = None;
    for world in WORLDS {
        let threads = (cores / world).max(1);
        let ms = slowest_total_ms(worker, world, threads)?;
        let step_ms = ms / STEPS as f64;
        let images_per_second = (world * BATCH) as f64 / (step_ms / 1e3);
        let base = *base.get_or_insert(images_per_second);
        println!(
            "{world:>5}  {threads:>15}  {step_ms:>9.1}  {images_per_second:>8.1}  {:>14.2}x",
            images_per_second / base
        );
    }
    if cores < 4 {
        println!(
            "note: with {cores} cores, 1 rank x {cores} threads already uses the whole machine; more ranks \
             cannot add compute, only the all-reduce and the time-sharing of cores, so a ratio near or \
             below 1.0x is the expected result here. Scaling needs a core (or GPU) per rank."
        );
    }
    Ok(())
}

/// Runs `world` ranks of `scop-worker bench-train-step`; returns the slowest rank's span.
fn slowest_total_ms(worker: &Path, world: usize, threads: usize) -> anyhow::Result<f64> {
    let peers: Vec<String> = free_ports(world)?.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    let children: Vec<_> = (0..world)
        .map(|rank| {
            let rendezvous = format!(
                r#"{{"rank":{rank},"world":{world},"job_token":"bench","timeout_ms":120000,"backend":{{"kind":"tcp","peers":[{}]}}}}"#,
                peers.join(",")
            );
            Command::new(worker)
                .args(["bench-train-step", "--rendezvous", &rendezvous])
                .args(["--batch", &BATCH.to_string(), "--warmup", &WARMUP.to_string()])
                .args(["--steps", &STEPS.to_string(), "--threads", &threads.to_string()])
                .env("OMP_NUM_THREADS", threads.to_string())
                .stdout(Stdio::piped())
                .spawn()
                .with_context(|| format!("cannot start {}", worker.display()))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut slowest: f64 = 0.0;
    for (rank, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("training-step rank {rank} of {world} failed with {}", out.status);
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let ms: f64 = text
            .split_whitespace()
            .find_map(|f| f.strip_prefix("total_ms="))
            .with_context(|| format!("no total_ms in rank {rank}'s output {text:?}"))?
            .parse()
            .with_context(|| format!("bad total_ms in {text:?}"))?;
        slowest = slowest.max(ms);
    }
    Ok(slowest)
}
