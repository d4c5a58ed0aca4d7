//! `cargo xtask demo`: the main job end to end, as far as the system runs it today.
//!
//! It sets up libtorch, builds the release binaries, fetches Fashion-MNIST, runs
//! the SCOP job `examples/fashion-mnist-resnet20.yaml` (pretrain → knockoff →
//! 45% layer-wise plan → finetune → export) with `scop-worker run`, which prints
//! live progress and the final table, and then checks that a real `scopd`
//! serves its API. It says plainly what it ran.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use scop_core::spec::JobSpec;

use crate::{data, setup, shell};

const EXAMPLE: &str = "examples/fashion-mnist-resnet20.yaml";

pub fn run(quick: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    setup::run()?;
    shell::run(shell::cargo().args(["build", "--release", "--bins"]))?;
    data::fashion_mnist()?;
    let root = shell::root();
    let bin = root.join("target/release");

    let spec_path = if quick { quick_spec(&root)? } else { root.join(EXAMPLE) };
    let spec = JobSpec::from_file(&spec_path).map_err(|e| anyhow::anyhow!("{}: {e}", spec_path.display()))?;
    eprintln!("demo: running {} with scop-worker run", spec_path.display());
    shell::run(Command::new(bin.join("scop-worker")).arg("run").arg(&spec_path))?;

    let addr = check_coordinator(&bin)?;
    println!();
    println!("demo: what ran, for real:");
    println!("  - libtorch 2.11.0 from .venv, linked only by scop-worker");
    println!("  - the SCOP job {} in one worker process:", spec_path.display());
    println!(
        "    pretrain -> knockoff -> decide ({:.0}% layer-wise) -> finetune -> export",
        spec.prune.rate * 100.0
    );
    println!("  - artifacts in {}", spec.output.dir.join("export").display());
    println!("  - scopd serving its public API on {addr}, checked by `scopctl status`");
    println!("demo: not yet: jobs submitted through scopd and scheduled onto worker agents");
    println!("demo: finished in {:.0?}", started.elapsed());
    Ok(())
}

/// A copy of the example with a tiny schedule: a first look in a couple of minutes.
fn quick_spec(root: &Path) -> anyhow::Result<PathBuf> {
    let mut spec = JobSpec::from_file(&root.join(EXAMPLE)).map_err(|e| anyhow::anyhow!("{EXAMPLE}: {e}"))?;
    spec.data.train_subset = Some(6_000);
    spec.data.test_subset = Some(2_000);
    if let Some(pretrain) = &mut spec.pretrain {
        pretrain.epochs = 2;
    }
    spec.knockoff.epochs = 1;
    spec.finetune.epochs = 1;
    spec.output.dir = root.join("runs/fashion-mnist-resnet20-quick");
    spec.output.log_every_steps = 10;
    let dir = root.join("runs");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("fashion-mnist-resnet20-quick.yaml");
    let yaml = serde_norway::to_string(&spec)?;
    std::fs::write(&path, format!("# Written by `cargo xtask demo --quick` from {EXAMPLE}.\n{yaml}"))?;
    Ok(path)
}

/// Starts scopd on free loopback ports, waits until `scopctl status` says it serves, stops it.
fn check_coordinator(bin: &Path) -> anyhow::Result<String> {
    let free = || -> anyhow::Result<String> {
        Ok(format!("127.0.0.1:{}", std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port()))
    };
    let (public, worker, metrics) = (free()?, free()?, free()?);
    let data_dir = tempfile_dir()?;
    let mut scopd = Command::new(bin.join("scopd"))
        .args(["--public-addr", &public, "--worker-addr", &worker, "--metrics-addr", &metrics])
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--insecure-no-auth")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start scopd")?;
    let result = (|| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = Command::new(bin.join("scopctl"))
                .args(["--server", &format!("http://{public}"), "status"])
                .output()?;
            if status.status.success() {
                print!("{}", String::from_utf8_lossy(&status.stdout));
                return Ok(public.clone());
            }
            if Instant::now() > deadline {
                bail!("scopd did not become healthy: {}", String::from_utf8_lossy(&status.stderr));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })();
    let _ = scopd.kill();
    let _ = scopd.wait();
    let _ = std::fs::remove_dir_all(&data_dir);
    result
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = shell::root().join(format!("runs/.scopd-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
