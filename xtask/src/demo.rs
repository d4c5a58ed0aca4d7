//! `cargo xtask demo`: the main job end to end, the way a user runs it.
//!
//! It sets up libtorch, builds the release binaries, fetches Fashion-MNIST,
//! starts `scopd standalone --workers 2` (the coordinator plus two CPU worker
//! agents, one rank each), submits `examples/fashion-mnist-resnet20.yaml` with
//! `scopctl submit` and follows it with `scopctl watch` (live bars on a
//! terminal, plain lines otherwise, the final table at the end), writes the
//! HTML report with `scopctl report`, and stops everything it started, unless
//! `--keep-running` leaves the coordinator up for exploring with `scopctl`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use scop_core::spec::JobSpec;

use crate::{data, setup, shell};

const EXAMPLE: &str = "examples/fashion-mnist-resnet20.yaml";

/// The coordinator the demo started; stopped with SIGTERM when dropped unless kept.
struct Coordinator {
    child: Child,
    keep: bool,
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        eprintln!("demo: stopping scopd standalone and its agents");
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn run(quick: bool, keep_running: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    setup::run()?;
    let bin = shell::release_binaries()?;
    data::fashion_mnist()?;
    let root = shell::root();
    let demo_dir = root.join(if quick { "runs/demo-quick" } else { "runs/demo" });
    std::fs::create_dir_all(&demo_dir).with_context(|| format!("cannot create {}", demo_dir.display()))?;
    let spec_path = if quick { quick_spec(&root, &demo_dir)? } else { root.join(EXAMPLE) };
    // The same checks scopctl makes, before anything is started.
    JobSpec::from_file(&spec_path).map_err(|e| anyhow::anyhow!("{}: {e}", spec_path.display()))?;
    let client_config = demo_dir.join("scopctl.yaml");
    let scopctl = |args: &[&str]| {
        let mut cmd = Command::new(bin.join("scopctl"));
        cmd.args(args).env("SCOPCTL_CONFIG", &client_config);
        cmd
    };

    eprintln!("demo: starting scopd standalone --workers 2 (data in {})", demo_dir.join("scopd").display());
    let coordinator = start_coordinator(&bin, &demo_dir, &client_config, keep_running)?;
    wait_for_workers(&scopctl, 2)?;

    let submitted = shell::output(scopctl(&["submit", "-o", "json"]).arg(&spec_path))?;
    let job: serde_json::Value = serde_json::from_str(submitted.trim())
        .with_context(|| format!("scopctl submit printed no job: {submitted}"))?;
    let id = job["id"].as_str().context("the submitted job has no id")?.to_owned();
    eprintln!("demo: submitted {} as job {id}; following it with `scopctl watch {id}`", spec_path.display());
    let watched = scopctl(&["watch", &id]).status().context("cannot run scopctl watch")?;
    if !watched.success() {
        bail!(
            "the job did not succeed (scopctl watch exited with {watched}); `scopctl get job {id}` says why"
        );
    }

    let report = demo_dir.join("report.html");
    shell::run(scopctl(&["report", &id, "--out"]).arg(&report))?;
    println!();
    println!("report:        {}", report.display());
    println!("demo: finished in {:.0?}", started.elapsed());
    if keep_running {
        println!("demo: scopd standalone keeps running (pid {}); try:", coordinator.child.id());
        println!("  export SCOPCTL_CONFIG={}", client_config.display());
        println!("  {} get jobs", bin.join("scopctl").display());
        println!("  {} plan {id}", bin.join("scopctl").display());
        println!("  {} artifacts {id} --download out/", bin.join("scopctl").display());
        println!("  kill {}   # stops it and its agents", coordinator.child.id());
    }
    Ok(())
}

/// Starts `scopd standalone` in the demo's directory and waits for its banner;
/// its log goes to `scopd.log` there.
fn start_coordinator(
    bin: &Path,
    demo_dir: &Path,
    client_config: &Path,
    keep: bool,
) -> anyhow::Result<Coordinator> {
    let log_path = demo_dir.join("scopd.log");
    let log =
        std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let mut child = Command::new(bin.join("scopd"))
        .args(["standalone", "--workers", "2", "--cpu"])
        .arg("--data-dir")
        .arg(demo_dir.join("scopd"))
        .arg("--client-config")
        .arg(client_config)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .context("cannot start scopd standalone")?;
    let stdout = child.stdout.take().context("scopd has no stdout")?;
    let mut coordinator = Coordinator { child, keep };
    // Print the banner (addresses, client config) as scopd prints it.
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line?;
        println!("{line}");
        if line.trim_start().starts_with("agent logs") {
            break;
        }
    }
    if let Ok(Some(status)) = coordinator.child.try_wait() {
        coordinator.keep = true;
        let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
        bail!(
            "scopd standalone exited ({status}); is another scopd using ports 7070-7072?\n{}",
            tail.lines().rev().take(5).collect::<Vec<_>>().join("\n")
        );
    }
    // Keep draining its stdout so scopd never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Ok(coordinator)
}

/// Polls `scopctl workers` until `count` agents are connected.
fn wait_for_workers(scopctl: &dyn Fn(&[&str]) -> Command, count: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = scopctl(&["workers", "-o", "json"]).output().context("cannot run scopctl workers")?;
        let connected = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .map_or(0, |workers| workers.iter().filter(|w| w["state"] == "connected").count());
        if connected >= count {
            eprintln!("demo: {connected} worker agents connected");
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "only {connected} of {count} worker agents connected within 120 s: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A copy of the example with a tiny schedule: a first look in a couple of minutes.
fn quick_spec(root: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let mut spec = JobSpec::from_file(&root.join(EXAMPLE)).map_err(|e| anyhow::anyhow!("{EXAMPLE}: {e}"))?;
    spec.data.train_subset = Some(6_000);
    spec.data.test_subset = Some(2_000);
    if let Some(pretrain) = &mut spec.pretrain {
        pretrain.epochs = 2;
    }
    spec.knockoff.epochs = 1;
    spec.finetune.epochs = 1;
    spec.output.log_every_steps = 10;
    let path = dir.join("fashion-mnist-resnet20-quick.yaml");
    let yaml = serde_norway::to_string(&spec)?;
    std::fs::write(&path, format!("# Written by `cargo xtask demo --quick` from {EXAMPLE}.\n{yaml}"))?;
    Ok(path)
}
