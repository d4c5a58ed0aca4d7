//! The local worker agents of `scopd standalone`: how many, on which devices,
//! started as `scop-worker agent` child processes, restarted when one dies,
//! and stopped with SIGTERM (then killed if they linger).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::error::{Error, Result};

/// How long an agent may take to stop its ranks after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// The longest wait before restarting an agent that keeps dying.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One local agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSpec {
    /// From 0; names its log file and scratch directory.
    pub index: u32,
    /// The GPU it owns (through `CUDA_VISIBLE_DEVICES`) and offers beside one
    /// CPU rank slot, or `None` for only the CPU rank slot.
    pub gpu: Option<u32>,
    /// Intra-op threads of its ranks.
    pub threads: u32,
}

/// The agents to start: `workers` of them (by default one per GPU, or one),
/// sharing the cores. The first ones own a GPU each and offer it beside one CPU
/// rank slot, so both CUDA and CPU jobs run on a GPU machine; agents beyond the
/// GPUs (and every agent on a machine without, or under `--cpu`) offer one CPU
/// rank slot.
pub fn plan_agents(workers: Option<u32>, gpus: u32, cores: u32) -> Result<Vec<AgentSpec>> {
    let count = workers.unwrap_or(if gpus > 0 { gpus } else { 1 });
    let threads = (cores / count.max(1)).max(1);
    Ok((0..count).map(|index| AgentSpec { index, gpu: (index < gpus).then_some(index), threads }).collect())
}

/// A line for people: "2 agents, one CPU rank slot each (1 thread)".
pub fn describe(plan: &[AgentSpec]) -> String {
    let Some(first) = plan.first() else {
        return "none (--workers 0): connect agents to the worker API".to_owned();
    };
    let gpus = plan.iter().filter(|a| a.gpu.is_some()).count();
    let threads = format!("{} thread{}", first.threads, if first.threads == 1 { "" } else { "s" });
    if gpus == 0 {
        format!("{} agent(s), one CPU rank slot each ({threads})", plan.len())
    } else {
        format!(
            "{} agent(s), one CPU rank slot each ({threads}), {gpus} of them also one GPU slot",
            plan.len()
        )
    }
}

/// `explicit`, else `scop-worker` next to this executable, else on `PATH`.
pub fn find_worker_bin(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(bin) = explicit {
        return if bin.is_file() {
            Ok(bin.to_owned())
        } else {
            Err(Error::Config(format!("--worker-bin {}: no such file", bin.display())))
        };
    }
    let beside = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|d| d.join("scop-worker")));
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("scop-worker"));
    beside.into_iter().chain(on_path).find(|p| p.is_file()).ok_or_else(|| {
        Error::Config(
            "cannot find the scop-worker executable next to scopd or on PATH; pass --worker-bin".to_owned(),
        )
    })
}

/// The number of CUDA devices libtorch sees, asked of `scop-worker info`
/// (scopd itself never loads libtorch).
pub async fn probe_gpus(worker_bin: &Path) -> Result<u32> {
    let failed = |why: String| Error::Config(format!("{} info: {why}", worker_bin.display()));
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        Command::new(worker_bin).arg("info").stdin(Stdio::null()).output(),
    )
    .await
    .map_err(|_| failed("no answer within 120 s".into()))?
    .map_err(|e| failed(e.to_string()))?;
    if !output.status.success() {
        return Err(failed(format!("{}: {}", output.status, String::from_utf8_lossy(&output.stderr).trim())));
    }
    let info: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|e| failed(format!("not JSON: {e}")))?;
    info.get("cuda_devices")
        .and_then(serde_json::Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| failed("no cuda_devices count in its answer".into()))
}

/// The running agents and their supervisors.
pub struct Fleet {
    stop: watch::Sender<bool>,
    supervisors: JoinSet<()>,
}

impl Fleet {
    /// Starts every agent of `plan` against the worker API at `coordinator`.
    pub fn start(
        worker_bin: &Path,
        coordinator: &str,
        token_file: &Path,
        data_dir: &Path,
        plan: &[AgentSpec],
        roots: &scop_core::sandbox::Roots,
    ) -> Result<Fleet> {
        let logs = data_dir.join("logs");
        std::fs::create_dir_all(&logs)
            .map_err(|source| Error::Io { path: logs.display().to_string(), source })?;
        let (stop, stopping) = watch::channel(false);
        let mut supervisors = JoinSet::new();
        for spec in plan {
            let mut args = agent_args(spec, coordinator, token_file, data_dir);
            for (flag, dirs) in [("--data-root", &roots.data), ("--models-root", &roots.models)] {
                for dir in dirs {
                    args.extend([flag.to_owned(), dir.display().to_string()]);
                }
            }
            let launch = Launch {
                bin: worker_bin.to_owned(),
                args,
                gpu: spec.gpu,
                log: logs.join(format!("agent-{}.log", spec.index)),
            };
            supervisors.spawn(supervise(launch, stopping.clone()));
        }
        Ok(Fleet { stop, supervisors })
    }

    /// SIGTERM to every agent, then waits for them (killing the ones that linger).
    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        while self.supervisors.join_next().await.is_some() {}
    }
}

/// The command line of one agent.
fn agent_args(spec: &AgentSpec, coordinator: &str, token_file: &Path, data_dir: &Path) -> Vec<String> {
    let mut args = vec![
        "agent".to_owned(),
        "--coordinator".into(),
        coordinator.into(),
        "--token-file".into(),
        token_file.display().to_string(),
        "--advertise-host".into(),
        "127.0.0.1".into(),
        "--threads".into(),
        spec.threads.to_string(),
        "--scratch-dir".into(),
        data_dir.join(format!("agents/{}", spec.index)).display().to_string(),
    ];
    match spec.gpu {
        // Its GPU (CUDA_VISIBLE_DEVICES) and a CPU slot, for CPU jobs on a GPU machine.
        Some(_) => args.extend(["--cpu-slots".into(), "1".into()]),
        None => args.extend(["--cpu".into(), "--slots".into(), "1".into()]),
    }
    args
}

struct Launch {
    bin: PathBuf,
    args: Vec<String>,
    gpu: Option<u32>,
    log: PathBuf,
}

impl Launch {
    fn spawn(&self) -> std::io::Result<Child> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let mut command = Command::new(&self.bin);
        command.args(&self.args).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).kill_on_drop(true);
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "info");
        }
        if let Some(gpu) = self.gpu {
            command.env("CUDA_VISIBLE_DEVICES", gpu.to_string());
        }
        command.spawn()
    }
}

/// Keeps one agent running until asked to stop, restarting it with backoff.
async fn supervise(launch: Launch, mut stopping: watch::Receiver<bool>) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let mut child = match launch.spawn() {
            Ok(child) => child,
            Err(error) => {
                tracing::error!(%error, bin = %launch.bin.display(), "cannot start a local agent");
                return;
            }
        };
        let started = tokio::time::Instant::now();
        tokio::select! {
            status = child.wait() => {
                let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                tracing::warn!(%status, log = %launch.log.display(), "a local agent exited; restarting it");
                if started.elapsed() > MAX_BACKOFF {
                    backoff = Duration::from_secs(1);
                }
            }
            () = stop_asked(&mut stopping) => {
                terminate(&mut child).await;
                return;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stop_asked(&mut stopping) => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Resolves once the fleet is asked to stop (the guard `wait_for` returns is
/// dropped here, so the supervisor's future stays `Send`).
async fn stop_asked(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// SIGTERM, then SIGKILL after [`STOP_GRACE`].
async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok() {
            return;
        }
        tracing::warn!(pid, "a local agent did not stop within 15 s of SIGTERM; killing it");
    }
    let _ = child.kill().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(workers: Option<u32>, gpus: u32, cores: u32, expected: &[(Option<u32>, u32)]) {
        let plan = plan_agents(workers, gpus, cores).unwrap();
        let got: Vec<(Option<u32>, u32)> = plan.iter().map(|a| (a.gpu, a.threads)).collect();
        assert_eq!(got, expected, "workers {workers:?}, {gpus} GPUs, {cores} cores");
    }

    #[test]
    fn agents_follow_the_gpus_or_share_the_cores() {
        check(None, 0, 2, &[(None, 2)]);
        check(Some(2), 0, 2, &[(None, 1), (None, 1)]);
        check(Some(3), 0, 2, &[(None, 1), (None, 1), (None, 1)]);
        check(None, 2, 16, &[(Some(0), 8), (Some(1), 8)]);
        check(Some(1), 2, 16, &[(Some(0), 16)]);
        check(Some(0), 0, 2, &[]);
        // More agents than GPUs: the others are CPU agents (a CPU job needs no GPU).
        check(Some(2), 1, 16, &[(Some(0), 8), (None, 8)]);
    }

    #[test]
    fn gpu_agents_also_offer_a_cpu_slot() {
        let spec = AgentSpec { index: 0, gpu: Some(0), threads: 4 };
        let args = agent_args(&spec, "http://127.0.0.1:7071", Path::new("/d/worker.token"), Path::new("/d"));
        assert!(args.join(" ").ends_with("--scratch-dir /d/agents/0 --cpu-slots 1"), "{args:?}");
        let plan = plan_agents(Some(2), 1, 16).unwrap();
        assert_eq!(
            describe(&plan),
            "2 agent(s), one CPU rank slot each (8 threads), 1 of them also one GPU slot"
        );
    }

    #[test]
    fn cpu_agents_get_one_slot_and_their_own_scratch_dir() {
        let spec = AgentSpec { index: 1, gpu: None, threads: 1 };
        let args = agent_args(&spec, "http://127.0.0.1:7071", Path::new("/d/worker.token"), Path::new("/d"));
        assert_eq!(
            args.join(" "),
            "agent --coordinator http://127.0.0.1:7071 --token-file /d/worker.token --advertise-host 127.0.0.1 \
             --threads 1 --scratch-dir /d/agents/1 --cpu --slots 1"
        );
    }
}
