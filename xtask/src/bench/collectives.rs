//! `cargo xtask bench collectives`: the TCP-ring all-reduce against
//! `torch.distributed`'s gloo backend, side by side in one run on 127.0.0.1.
//!
//! Both sides sum one 100 MB f32 tensor across 2 and 4 rank processes, each timed
//! call starting right after a barrier. Per call the slowest rank's time counts;
//! the figure printed is the median over the calls.
//!
//! Then the data-parallel training-step scaling table (`dp_scaling.rs`).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::shell;

const BYTES: usize = 100_000_000;
const WARMUP: usize = 2;
const ITERS: usize = 10;
const WORLDS: [usize; 2] = [2, 4];

pub fn run() -> anyhow::Result<()> {
    let worker = shell::release_binaries()?.join("scop-worker");
    let python = shell::venv_python()?;
    let root = shell::root();
    let script = root.join("xtask/bench/gloo_allreduce.py");

    println!(
        "all-reduce (sum) of {} MB f32 on 127.0.0.1: median of {ITERS} calls after {WARMUP} warm-up calls",
        BYTES / 1_000_000
    );
    println!(
        "{:>5}  {:<9}  {:>9}  {:>11}  {:>11}",
        "world", "backend", "time ms", "algbw GB/s", "busbw GB/s"
    );
    for world in WORLDS {
        let ring = median_of_slowest(&ring_ranks(&worker, world)?)?;
        let gloo = median_of_slowest(&gloo_ranks(&python, &script, world)?)?;
        for (name, ms) in [("tcp-ring", ring), ("gloo", gloo)] {
            let algbw = BYTES as f64 / (ms / 1e3) / 1e9;
            let busbw = algbw * 2.0 * (world as f64 - 1.0) / world as f64;
            println!("{world:>5}  {name:<9}  {ms:>9.1}  {algbw:>11.2}  {busbw:>11.2}");
        }
        println!("{world:>5}  speed-up of the tcp ring over gloo: {:.2}x (goal: >= 1.5x)", gloo / ring);
    }
    super::dp_scaling::run(&worker)
}

/// Free ports on 127.0.0.1, one per rank (released just before the ranks bind them).
pub fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .context("binding a free port")?;
    listeners.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

fn ring_ranks(worker: &Path, world: usize) -> anyhow::Result<Vec<String>> {
    let peers: Vec<String> = free_ports(world)?.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let children: Vec<_> = (0..world)
        .map(|rank| {
            Command::new(worker)
                .args(["bench-allreduce", "--rank", &rank.to_string(), "--peers", &peers.join(",")])
                .args([
                    "--bytes",
                    &BYTES.to_string(),
                    "--warmup",
                    &WARMUP.to_string(),
                    "--iters",
                    &ITERS.to_string(),
                ])
                .env("OMP_NUM_THREADS", "1")
                .stdout(Stdio::piped())
                .spawn()
                .with_context(|| format!("cannot start {}", worker.display()))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut outputs = Vec::new();
    for (rank, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("tcp-ring rank {rank} of {world} failed with {}", out.status);
        }
        outputs.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Ok(outputs)
}

fn gloo_ranks(python: &Path, script: &Path, world: usize) -> anyhow::Result<Vec<String>> {
    let port = free_ports(1)?[0];
    let mut cmd = super::baseline_command(python);
    cmd.arg(script).args([world, BYTES, WARMUP, ITERS, port as usize].map(|v| v.to_string()));
    cmd.env("OMP_NUM_THREADS", "1");
    Ok(vec![shell::output(&mut cmd)?])
}

/// Parses `RESULT rank=R times_ms=a,b,...` lines; per call takes the slowest rank,
/// then returns the median over calls.
fn median_of_slowest(outputs: &[String]) -> anyhow::Result<f64> {
    let mut per_rank: Vec<Vec<f64>> = Vec::new();
    for line in outputs.iter().flat_map(|o| o.lines()).filter(|l| l.starts_with("RESULT ")) {
        let times = line
            .split_whitespace()
            .find_map(|f| f.strip_prefix("times_ms="))
            .with_context(|| format!("no times_ms in {line:?}"))?;
        per_rank.push(
            times
                .split(',')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .with_context(|| format!("bad times in {line:?}"))?,
        );
    }
    let calls = per_rank.first().map_or(0, Vec::len);
    if calls == 0 || per_rank.iter().any(|t| t.len() != calls) {
        bail!(
            "expected {ITERS} timings from every rank, got {:?}",
            per_rank.iter().map(Vec::len).collect::<Vec<_>>()
        );
    }
    let mut slowest: Vec<f64> =
        (0..calls).map(|i| per_rank.iter().map(|t| t[i]).fold(0.0, f64::max)).collect();
    slowest.sort_by(f64::total_cmp);
    Ok(slowest[calls / 2])
}
