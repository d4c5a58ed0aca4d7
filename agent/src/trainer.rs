//! One rank as a child process (`scop-worker rank …`): started with the task's
//! files, its stdout events relayed, its exit turned into finished or failed,
//! killed on cancel. A crash or libtorch abort ends the child, never the agent.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use scop_core::job_dir::JobDir;
use scop_proto::v1 as pb;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot};

use super::relay::Relay;

/// How long a draining rank may take to checkpoint and exit before it is killed.
pub const DRAIN: Duration = Duration::from_secs(60);

/// Why a running rank is stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// Kill it now (its job was cancelled or its attempt failed elsewhere).
    Kill(String),
    /// SIGTERM: it finishes its step, writes a checkpoint and exits; killed after [`DRAIN`].
    Drain(String),
}

/// Why a rank failed, and whether running it again could help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    /// No retry can fix it (the rank exited with
    /// [`scop_core::event::PERMANENT_FAILURE_EXIT_CODE`], or the agent refused
    /// the task's spec): the coordinator fails the job at once.
    pub permanent: bool,
}

impl Failure {
    fn permanent(reason: String) -> Self {
        Self { reason, permanent: true }
    }
}

impl From<String> for Failure {
    fn from(reason: String) -> Self {
        Self { reason, permanent: false }
    }
}

impl From<&str> for Failure {
    fn from(reason: &str) -> Self {
        reason.to_owned().into()
    }
}

/// Everything needed to start one rank.
#[derive(Debug, Clone)]
pub struct RankLaunch {
    pub worker_bin: PathBuf,
    pub task: pb::AssignTask,
    /// The full rendezvous record, as JSON.
    pub rendezvous_json: String,
    /// Where the task's spec and logs go on this worker.
    pub scratch: PathBuf,
    /// Intra-op threads for a CPU rank (0: libtorch's default).
    pub threads: u32,
    /// The roots every spec path must resolve inside; `None`: not checked.
    pub roots: Option<scop_core::sandbox::Roots>,
}

/// Refuses a task whose spec names a file outside the roots, before the rank
/// opens anything (the coordinator checked at submission; files may have changed since).
pub fn check_paths(launch: &RankLaunch) -> Result<(), String> {
    let Some(roots) = &launch.roots else { return Ok(()) };
    let spec = scop_core::spec::JobSpec::from_yaml(&launch.task.spec_yaml)
        .map_err(|e| format!("task {}: {e}", launch.task.task_id))?;
    let base = std::env::current_dir().map_err(|e| format!("the working directory: {e}"))?;
    roots.check_spec(&spec, &base).map_err(|e| format!("refused before opening any file: {e}"))
}

/// The child's command line. The rendezvous record, which carries the job
/// token, is passed as the path of a file only the agent's user can read,
/// never inline: argv is visible to every user through `ps`. `plan_path` is
/// the assignment's plan, written beside the spec, for the stages after decide.
pub fn command_line(
    launch: &RankLaunch,
    spec_path: &Path,
    rendezvous_path: &Path,
    plan_path: Option<&Path>,
) -> Result<Vec<String>, String> {
    let task = &launch.task;
    let stage = task.stage().domain().ok_or_else(|| format!("task {}: no stage", task.task_id))?;
    let mut args = vec![
        "rank".to_owned(),
        "--spec".into(),
        spec_path.display().to_string(),
        "--stage".into(),
        stage.as_str().into(),
        "--rank".into(),
        task.rank.to_string(),
        "--world".into(),
        task.world_size.to_string(),
        "--rendezvous".into(),
        rendezvous_path.display().to_string(),
        "--output".into(),
        task.checkpoint_dir.clone(),
    ];
    if task.resume {
        args.push("--resume".into());
    }
    if let Some(plan) = plan_path {
        args.extend(["--plan".into(), plan.display().to_string()]);
    }
    if launch.threads > 0 {
        args.extend(["--threads".into(), launch.threads.to_string()]);
    }
    if let Some(device) = task.device.as_ref().filter(|d| d.kind == "cuda") {
        args.extend(["--device".into(), device.index.to_string()]);
    }
    Ok(args)
}

/// Runs the rank to its end, sending its task events to `events`; stopped as
/// `stop` says when it fires. The last event is always `Finished` or `Failed`.
pub async fn run_rank(
    launch: RankLaunch,
    events: mpsc::Sender<pb::TaskEvent>,
    stop: oneshot::Receiver<Stop>,
) {
    let task_id = launch.task.task_id.clone();
    let rank = launch.task.rank;
    let event = |kind: pb::task_event::Kind| pb::TaskEvent {
        task_id: task_id.clone(),
        rank,
        sequence: 0,
        kind: Some(kind),
        permanent: false,
    };
    let send = |kind: pb::task_event::Kind| {
        let events = events.clone();
        let event = event(kind);
        async move {
            let _ = events.send(event).await;
        }
    };
    let last = match supervise(&launch, &send, stop).await {
        Ok(finished) => event(pb::task_event::Kind::Finished(finished)),
        Err(Failure { reason, permanent }) => {
            pb::TaskEvent { permanent, ..event(pb::task_event::Kind::Failed(reason)) }
        }
    };
    let _ = events.send(last).await;
}

async fn supervise<F, Fut>(
    launch: &RankLaunch,
    send: &F,
    mut stop: oneshot::Receiver<Stop>,
) -> Result<pb::TaskFinished, Failure>
where
    F: Fn(pb::task_event::Kind) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    // A spec the agent refuses is refused again on every retry.
    check_paths(launch).map_err(Failure::permanent)?;
    let scratch = &launch.scratch;
    std::fs::create_dir_all(scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let spec_path = scratch.join("job.yaml");
    std::fs::write(&spec_path, &launch.task.spec_yaml)
        .map_err(|e| format!("{}: {e}", spec_path.display()))?;
    let rendezvous_path = scratch.join("rendezvous.json");
    write_private(&rendezvous_path, launch.rendezvous_json.as_bytes())
        .map_err(|e| format!("{}: {e}", rendezvous_path.display()))?;
    // The plan travels with the assignment: the rank reads this copy, not the shared volume's.
    let plan_path = if launch.task.plan_json.is_empty() {
        None
    } else {
        let path = scratch.join(scop_core::job_dir::PLAN_FILE);
        std::fs::write(&path, &launch.task.plan_json).map_err(|e| format!("{}: {e}", path.display()))?;
        Some(path)
    };
    let args = command_line(launch, &spec_path, &rendezvous_path, plan_path.as_deref())?;
    let mut child = Command::new(&launch.worker_bin)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", launch.worker_bin.display()))?;
    let stdout = child.stdout.take().ok_or("the trainer has no stdout")?;
    let mut stderr = child.stderr.take().ok_or("the trainer has no stderr")?;
    // Drain stderr concurrently so a chatty trainer never blocks on a full pipe.
    let stderr_task = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let mut lines = BufReader::new(stdout).lines();
    let mut relay = Relay::default();
    // Once draining, the rank's own exit (after its checkpoint) ends it, or the deadline.
    let mut drain_deadline: Option<tokio::time::Instant> = None;
    let stopped = |stop: Result<Stop, _>| stop.unwrap_or_else(|_| Stop::Kill("the agent stopped".into()));
    let status = loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(line)) => if let Some(kind) = relay.translate(&line) { send(kind).await },
                Ok(None) | Err(_) => break child.wait().await.map_err(|e| format!("waiting for the trainer: {e}"))?,
            },
            asked = &mut stop, if drain_deadline.is_none() => match stopped(asked) {
                Stop::Kill(reason) => {
                    let _ = child.kill().await;
                    return Err(format!("cancelled: {reason}").into());
                }
                Stop::Drain(reason) => {
                    tracing::info!(task_id = %launch.task.task_id, %reason, "asking the rank to checkpoint and stop");
                    terminate(&child);
                    drain_deadline = Some(tokio::time::Instant::now() + DRAIN);
                }
            },
            () = sleep_until(drain_deadline) => {
                let _ = child.kill().await;
                return Err(format!("the rank did not stop within {} s of SIGTERM and was killed", DRAIN.as_secs()).into());
            }
        }
    };
    let stderr = stderr_task.await.unwrap_or_default();
    if status.success() {
        let export = (launch.task.stage() == pb::Stage::Export)
            .then(|| JobDir::new(&launch.task.checkpoint_dir).export_dir());
        Ok(relay.finished(export.as_deref()))
    } else {
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
        let reason = format!("trainer exited with {status}: {last}");
        if status.code() == Some(scop_core::event::PERMANENT_FAILURE_EXIT_CODE) {
            Err(Failure::permanent(reason))
        } else {
            Err(reason.into())
        }
    }
}

/// Writes `bytes` to a file readable and writable by its owner only (0600),
/// replacing any earlier one.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // A file left by an earlier attempt may have other permissions: start afresh.
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(bytes)
}

/// SIGTERM to the trainer: it finishes its step, checkpoints and exits.
fn terminate(child: &tokio::process::Child) {
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
    }
}

/// Resolves at `deadline`, or never without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(bin: &str, resume: bool) -> RankLaunch {
        let task = pb::AssignTask {
            task_id: "a/1".into(),
            stage: pb::Stage::Knockoff as i32,
            spec_yaml: "model: {}\n".into(),
            rank: 1,
            world_size: 2,
            resume,
            checkpoint_dir: "out".into(),
            ..Default::default()
        };
        let scratch = std::env::temp_dir().join(format!("scop-agent-test-{}", std::process::id()));
        RankLaunch {
            worker_bin: bin.into(),
            task,
            rendezvous_json: "{}".into(),
            scratch,
            threads: 2,
            roots: None,
        }
    }

    #[test]
    fn the_child_gets_the_rank_contract() {
        let args = command_line(&launch("w", true), Path::new("s.yaml"), Path::new("r.json"), None).unwrap();
        assert_eq!(
            args.join(" "),
            "rank --spec s.yaml --stage knockoff --rank 1 --world 2 --rendezvous r.json --output out --resume --threads 2"
        );
        // A GPU rank is told its device, which a one-rank group's record does not carry.
        let mut gpu = launch("w", false);
        gpu.task.device = Some(pb::Device { kind: "cuda".into(), index: 1, ..Default::default() });
        let args = command_line(&gpu, Path::new("s.yaml"), Path::new("r.json"), None).unwrap();
        assert!(args.join(" ").ends_with("--threads 2 --device 1"), "{args:?}");
        // A stage after decide is handed the assignment's plan.
        let args =
            command_line(&gpu, Path::new("s.yaml"), Path::new("r.json"), Some(Path::new("p.json"))).unwrap();
        assert!(args.join(" ").contains("--output out --plan p.json --threads 2"), "{args:?}");
    }

    #[tokio::test]
    async fn a_spec_reaching_outside_the_roots_fails_before_the_trainer_starts() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::os::unix::fs::symlink("/etc", data.join("escape")).unwrap();
        let mut launch = launch("/bin/false", false);
        launch.scratch = dir.path().join("scratch");
        launch.roots = Some(scop_core::sandbox::Roots { data: vec![data.clone()], models: vec![] });
        launch.task.spec_yaml = format!(
            "model: {{ arch: resnet20, num_classes: 10 }}\ndata: {{ format: idx, root: {} }}\n",
            data.join("escape").display()
        );
        let (events, mut received) = mpsc::channel(8);
        let (_cancel, cancelled) = oneshot::channel();
        run_rank(launch.clone(), events, cancelled).await;
        match received.recv().await.unwrap().kind.unwrap() {
            pb::task_event::Kind::Failed(reason) => {
                assert!(reason.contains("data.root") && reason.contains("resolved to /etc"), "{reason}");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        assert!(!launch.scratch.join("job.yaml").exists(), "nothing is written for a refused task");
        launch.task.spec_yaml = format!(
            "model: {{ arch: resnet20, num_classes: 10 }}\ndata: {{ format: idx, root: {} }}\n",
            data.join("fmnist").display()
        );
        assert_eq!(check_paths(&launch), Ok(()));
    }

    /// A shell script stands in for the trainer: its events are relayed and
    /// its exit status and last stderr line become the failure reason.
    #[tokio::test]
    async fn events_are_relayed_and_a_failed_exit_names_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("trainer.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\necho '{\"type\":\"checkpoint_written\",\"stage\":\"knockoff\",\"path\":\"c1\"}'\n\
             echo 'NaN loss at step 3' >&2\nexit 3\n",
        )
        .unwrap();
        std::process::Command::new("chmod").arg("+x").arg(&script).status().unwrap();
        let mut launch = launch(script.to_str().unwrap(), false);
        launch.scratch = dir.path().join("scratch");
        let (events, mut received) = mpsc::channel(8);
        let (_cancel, cancelled) = oneshot::channel();
        run_rank(launch, events, cancelled).await;
        let first = received.recv().await.unwrap().kind.unwrap();
        assert_eq!(first, pb::task_event::Kind::CheckpointWritten("c1".into()));
        match received.recv().await.unwrap().kind.unwrap() {
            pb::task_event::Kind::Failed(reason) => {
                assert_eq!(reason, "trainer exited with exit status: 3: NaN loss at step 3")
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    /// `ps` shows every process's argv to every user: the job token must not be in it.
    #[tokio::test]
    async fn the_job_token_travels_in_a_private_file_not_in_argv() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("trainer.sh");
        let argv = dir.path().join("argv.txt");
        std::fs::write(&script, format!("#!/bin/sh\necho \"$@\" > {}\n", argv.display())).unwrap();
        std::process::Command::new("chmod").arg("+x").arg(&script).status().unwrap();
        let mut launch = launch(script.to_str().unwrap(), false);
        launch.scratch = dir.path().join("scratch");
        launch.rendezvous_json = r#"{"job_token":"s3cret-job-token"}"#.into();
        let (events, _received) = mpsc::channel(8);
        let (_cancel, cancelled) = oneshot::channel();
        run_rank(launch, events, cancelled).await;
        let args = std::fs::read_to_string(&argv).unwrap();
        assert!(!args.contains("s3cret"), "{args}");
        let record = args.split(' ').skip_while(|a| *a != "--rendezvous").nth(1).unwrap();
        assert_eq!(std::fs::read_to_string(record).unwrap(), r#"{"job_token":"s3cret-job-token"}"#);
        assert_eq!(std::fs::metadata(record).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[tokio::test]
    async fn cancel_kills_the_trainer() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("trainer.sh");
        std::fs::write(&script, "#!/bin/sh\nsleep 30\n").unwrap();
        std::process::Command::new("chmod").arg("+x").arg(&script).status().unwrap();
        let mut launch = launch(script.to_str().unwrap(), false);
        launch.scratch = dir.path().join("scratch");
        let (events, mut received) = mpsc::channel(8);
        let (cancel, cancelled) = oneshot::channel();
        let running = tokio::spawn(run_rank(launch, events, cancelled));
        cancel.send(Stop::Kill("job cancelled".into())).unwrap();
        running.await.unwrap();
        assert_eq!(
            received.recv().await.unwrap().kind.unwrap(),
            pb::task_event::Kind::Failed("cancelled: job cancelled".into())
        );
    }

    /// Draining sends SIGTERM and keeps relaying: the trainer's last checkpoint
    /// and its own reason arrive before the failure.
    #[tokio::test]
    async fn drain_lets_the_trainer_checkpoint_before_it_stops() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("trainer.sh");
        let event = dir.path().join("checkpoint.json");
        std::fs::write(&event, r#"{"type":"checkpoint_written","stage":"knockoff","path":"c9"}"#).unwrap();
        let body = format!(
            "#!/bin/sh\ntrap 'cat {}; echo; echo \"knockoff: interrupted after epoch 1, step 9\" >&2; exit 1' TERM\n\
             echo ready\nwhile true; do sleep 0.05; done\n",
            event.display()
        );
        std::fs::write(&script, body).unwrap();
        std::process::Command::new("chmod").arg("+x").arg(&script).status().unwrap();
        let mut launch = launch(script.to_str().unwrap(), false);
        launch.scratch = dir.path().join("scratch");
        let (events, mut received) = mpsc::channel(8);
        let (stop, stopping) = oneshot::channel();
        let running = tokio::spawn(run_rank(launch, events, stopping));
        // Let the shell install its trap before asking it to stop.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        stop.send(Stop::Drain("the agent is shutting down".into())).unwrap();
        running.await.unwrap();
        assert_eq!(
            received.recv().await.unwrap().kind.unwrap(),
            pb::task_event::Kind::CheckpointWritten("c9".into())
        );
        match received.recv().await.unwrap().kind.unwrap() {
            pb::task_event::Kind::Failed(reason) => {
                assert!(reason.ends_with("knockoff: interrupted after epoch 1, step 9"), "{reason}")
            }
            other => panic!("expected the interrupted failure, got {other:?}"),
        }
    }
}
