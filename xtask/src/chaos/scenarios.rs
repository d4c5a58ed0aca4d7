//! The scenarios: each starts its own cluster, runs the suite's job, injects
//! one fault at a chosen point, waits for the job to end and returns its row.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::Signal;
use scop_core::job_dir::JobDir;

use super::cluster::{Cluster, Options, signal};
use super::job::{Job, is, now_ms};
use super::netns::BRIDGE_IP;
use super::relay::{Impairment, Relay};
use super::report::{Expect, Row};
use super::spec::{CHECKPOINT_EVERY, STEPS_PER_EPOCH};

/// What every scenario may use.
#[derive(Debug)]
pub struct Ctx {
    pub bin: PathBuf,
    /// Scenario directories go under it.
    pub base: PathBuf,
    /// Why network namespaces cannot be used here, if they cannot.
    pub no_netns: Option<String>,
    pub netem: bool,
}

pub type Scenario = fn(&Ctx, &str) -> anyhow::Result<Row>;

/// Every scenario, in the order they run.
pub const ALL: &[(&str, &str, Scenario)] = &[
    ("baseline", "no fault: the reference for wall time lost", baseline),
    ("kill-agent", "SIGKILL an agent in the middle of knockoff; it is restarted", kill_agent),
    (
        "standalone-kill-agent",
        "scopd standalone --workers 2 restarts an agent SIGKILLed in knockoff; no healthy worker is declared lost",
        standalone_kill_agent,
    ),
    ("kill-scopd", "SIGKILL scopd in the middle of finetune, restart it on the same data dir", kill_scopd),
    (
        "cut-stream",
        "drop both worker streams for 5 s while knockoff's last Statistics and Finished are in flight",
        cut_stream,
    ),
    (
        "agent-restart-outbox",
        "a rank finishes while its agent is cut off; the agent is SIGKILLed and restarted, and resends from its outbox",
        agent_restart_outbox,
    ),
    ("sigstop-rank", "SIGSTOP a rank for longer than the heartbeat timeout, then SIGCONT", sigstop_rank),
    (
        "corrupt-checkpoint",
        "the latest checkpoint is damaged between an attempt's failure and its retry",
        corrupt_checkpoint,
    ),
    ("full-disk", "the artifact directory (a 3 MiB tmpfs) runs out of space", full_disk),
    (
        "wrong-worker",
        "a second agent with the worker token reports Finished for a rank placed elsewhere",
        wrong_worker,
    ),
    (
        "partition",
        "hosts in network namespaces; a worker's link is down for longer than the heartbeat timeout",
        partition,
    ),
    (
        "slow-lossy-ring",
        "hosts in network namespaces; 100 ms delay and 1 % loss between the ranks for all of finetune",
        slow_lossy_ring,
    ),
];

const JOB_TIMEOUT: Duration = Duration::from_secs(150);
const WAIT: Duration = Duration::from_secs(60);

fn expect(options: &Options) -> Expect {
    Expect {
        outcome: "succeeded",
        reason_contains: None,
        max_recomputed: CHECKPOINT_EVERY,
        max_silence: options.heartbeat_timeout * 2,
        may_lose: &[],
    }
}

/// As [`expect`], where agent 1 is the one the fault hits.
fn expect_agent_1_hit(options: &Options) -> Expect {
    Expect { may_lose: &[1], ..expect(options) }
}

/// A started cluster with its agents connected.
fn cluster(ctx: &Ctx, name: &str, options: Options) -> anyhow::Result<Cluster> {
    let agents = options.agents;
    let mut cluster = Cluster::new(&ctx.bin, ctx.base.join(name), options)?;
    cluster.start_scopd()?;
    for index in 0..agents {
        cluster.start_agent(index, None, None)?;
    }
    cluster.wait_workers(agents)?;
    Ok(cluster)
}

fn finish(name: &str, cluster: &Cluster, job: &Job, expect: &Expect) -> anyhow::Result<Row> {
    let result = job.wait_end(JOB_TIMEOUT)?;
    Ok(Row::check(name, cluster, job, &result, expect))
}

fn baseline(ctx: &Ctx, name: &str) -> anyhow::Result<Row> {
    let options = Options::default();
    let cluster = cluster(ctx, name, options.clone())?;
    let job = cluster.submit(|_| {})?;
    finish(name, &cluster, &job, &expect(&options))
}

fn kill_agent(ctx: &Ctx, name: &str) -> anyhow::Result<Row> {
    let options = Options::default();
    let mut cluster = cluster(ctx, name, options.clone())?;
    let job = cluster.submit(|_| {})?;
    job.wait_step("knockoff", 3, WAIT)?;
    cluster.kill_agent(1);
    // As `scopd standalone` does for its agents: started again, on the same scratch dir.
    std::thread::sleep(Duration::from_secs(1));
    cluster.start_agent(1, None, None)?;
    let mut row = finish(name, &cluster, &job, &expect_agent_1_hit(&options))?;
    check_one_retry(&mut row);
    Ok(row)
}

/// The killed agent's attempt is retried, once: a second retry would mean a
/// live worker (the survivor, or the restarted agent) was declared lost.
fn check_one_retry(row: &mut Row) {
    match row.restarts {
        0 => row.failures.push("the killed agent's attempt was not retried".into()),
        1 => {}
        n => row.failures.push(format!("{n} retries for one killed agent: a retry was thrown away")),
    }
}

/// The reproduction, as a new user runs it: `scopd standalone
/// --workers 2 --cpu` with the agents it starts and restarts itself; one of
/// them is SIGKILLed in the middle of knockoff. Only its attempt is retried,
/// and neither the survivor nor the restarted agent is ever declared lost.
fn standalone_kill_agent(ctx: &Ctx, name: &str) -> anyhow::Result<Row> {
    let options = Options { agents: 0, local_agents: 2, ..Options::default() };
    let mut cluster = Cluster::new(&ctx.bin, ctx.base.join(name), options.clone())?;
    cluster.start_scopd()?;
    cluster.wait_workers(options.local_agents)?;
    let job = cluster.submit(|_| {})?;
    job.wait_step("knockoff", 3, WAIT)?;
    let agent = cluster.local_agent_pid(1).context("scopd runs no agent 1")?;
    signal(agent, Signal::SIGKILL);
    let mut row = finish(name, &cluster, &job, &expect_agent_1_hit(&options))?;
    check_one_retry(&mut row);
    let restarted = cluster.local_agent_pid(1);
    match restarted {
        Some(pid) if pid != agent => {
            row.notes.push(format!("scopd restarted agent 1 (pid {agent} killed, now {pid})"));
        }
        _ => row.failures.push("scopd did not restart the killed agent".into()),
    }
    Ok(row)
}

fn kill_scopd(ctx: &Ctx, name: &str) -> anyhow::Result<Row> {
    let options = Options::default();
    let mut cluster = cluster(ctx, name, options.clone())?;
    let job = cluster.submit(|_| {})?;
    job.wait_step("finetune", 2, WAIT)?;
    cluster.kill_scopd();
    std::thread::sleep(Duration::from_secs(1));
    cluster.start_scopd()?;
    finish(name, &cluster, &job, &expect(&options))
}

/// Agents reach the worker port through one relay route each.
fn relayed_agents(ctx: &Ctx, name: &str, options: Options) -> anyhow::Result<(Cluster, Vec<Relay>)> {
    let agents = options.agents;
    let mut cluster = Cluster::new(&ctx.bin, ctx.base.join(name), options)?;
    cluster.start_scopd()?;
    let mut relays = Vec::new();
    for index in 0..agents {
        let relay = Relay::start(
            &[("127.0.0.1:0".parse()?, cluster.worker)],
            Impairment { delay: Duration::ZERO, loss: 0.0 },
        )?;
        cluster.start_agent(index, Some(format!("http://{}", relay.addr(0))), None)?;
        relays.push(relay);
    }
    cluster.wait_workers(agents)?;
    Ok((cluster, relays))
}

/// The time (coordinator clock) of the first event of `kind` in `stage`
/// whose `epoch` is `epoch` (any epoch when `None`).
fn event_time(job: &Job, kind: &str, stage: &str, epoch: Option<u64>) -> Option<i64> {
    job.events()
        .iter()
        .find(|e| is(e, kind, stage) && epoch.is_none_or(|want| e["epoch"].as_u64() == Some(want)))
        .and_then(|e| e["time_ms"].as_i64())
}

fn cut_stream(ctx: &Ctx, name: &str) -> anyhow::Result<Row> {
    // Longer than the cut plus the agents' reconnect backoff: the workers must not be declared lost.
    let options = Options { heartbeat_timeout: Duration::from_secs(10), ..Options::default() };
    let (cluster, relays) = relayed_agents(ctx, name, options.clone())?;
    let job = cluster.submit(|_| {})?;
    let last_epoch = u64::from(job.spec.knockoff.epochs);
    // One step before the end of the last knockoff epoch: its statistics and
    // the ranks' Finished follow within the cut.
    job.wait_step("knockoff", STEPS_PER_EPOCH * last_epoch - 1, WAIT)?;
    let cut_ms = now_ms();
    for relay in &relays {
        relay.cut(Duration::from_secs(5));
    }
    let mut row = finish(name, &cluster, &job, &expect(&options))?;
    let healed_ms = cut_ms + 5_000;
    let statistics = event_time(&job, "statistics_received", "knockoff", Some(last_epoch));
    let finished = event_time(&job, "stage_finished", "knockoff", None);
    match (statistics, finished) {
        (Some(s), Some(f)) if s >= healed_ms && f >= healed_ms => row.notes.push(format!(
            "final statistics applied {:.1} s and knockoff's finish {:.1} s after the cut began (resent after it)",
            (s - cut_ms) as f64 / 1000.0,
            (f - cut_ms) as f64 / 1000.0
        )),
        (s, f) => row.failures.push(format!(
            "the fault missed its window: statistics at {:?} ms, finish at {:?} ms after the cut began, the cut lasted 5000 ms",
            s.map(|s| s - cut_ms),
            f.map(|f| f - cut_ms)
        )),
    }
    if row.restarts > 0 {
        row.failures.push("the cut made a stage retry: events in flight were not delivered".into());
    }
    Ok(row)
}

fn agent_restart_outbox(ctx: &Ctx, name: &str) -> anyhow::Result<Row> {
    let options = Options { heartbeat_timeout: Duration::from_secs(12), ..Options::default() };
    let (mut cluster, relays) = relayed_agents(ctx, name, options.clone())?;
    let job = cluster.submit(|_| {})?;
    let last_epoch = u64::from(job.spec.knockoff.epochs);
    job.wait_step("knockoff", STEPS_PER_EPOCH * last_epoch - 1, WAIT)?;
    relays[1].cut(Duration::from_secs(3600));
    // Its rank finishes the stage and exits; the Finished stays in the agent's outbox.
    let deadline = Instant::now() + Duration::from_secs(8);
    while cluster.rank_pid(1).is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let rank_done = cluster.rank_pid(1).is_none();
    cluster.kill_agent(1);
    cluster.start_agent(1, None, None)?;
    std::thread::sleep(Duration::from_millis(500));
    relays[1].cut(Duration::ZERO);
    let mut row = finish(name, &cluster, &job, &expect_agent_1_hit(&options))?;
    if !rank_done {
        row.failures.push("the rank did not finish while its agent was cut off".into());
    }
    let log = std::fs::read_to_string(cluster.dir.join("logs/agent-1.log")).unwrap_or_default();
    let resent = log.lines().filter(|l| l.contains("unacknowledged events from before a restart")).count();
    let same_id = log.contains("registering under the worker id of a previous run");
    if resent == 0 || !same_id {
        row.failures.push(format!(
            "the restarted agent resent nothing from its outbox (outbox files read: {resent}, same worker id: {same_id})"
        ));
    } else {
        row.notes.push(
            "the restarted agent re-registered as the same worker and resent its unacknowledged events"
                .into(),
        );
    }
    if row.restarts > 0 {
        row.failures.push("the finished rank's stage was retried: its Finished was lost".into());
    }
    Ok(row)
}

fn sigstop_rank(ctx: &Ctx, name: &str) -> anyhow::Result<Row> {
    let options = Options::default();
    let cluster = cluster(ctx, name, options.clone())?;
    let job = cluster.submit(|_| {})?;
    job.wait_step("knockoff", 3, WAIT)?;
    let rank = cluster.rank_pid(1).context("agent 1 runs no rank")?;
    let stopped = options.heartbeat_timeout + Duration::from_secs(1);
    signal(rank, Signal::SIGSTOP);
    std::thread::sleep(stopped);
    signal(rank, Signal::SIGCONT);
    let mut expect = expect(&options);
    // The stop itself is silence the job cannot avoid.
    expect.max_silence += stopped;
    let mut row = finish(name, &cluster, &job, &expect)?;
    row.notes.push(format!("rank stopped for {:.0} s; its agent kept heartbeating", stopped.as_secs_f64()));
    if row.restarts > 0 {
        row.failures.push("a live worker was treated as lost".into());
    }
    Ok(row)
}

fn corrupt_checkpoint(ctx: &Ctx, name: &str) -> anyhow::Result<Row> {
    let options = Options::default();
    let cluster = cluster(ctx, name, options.clone())?;
    let job = cluster.submit(|_| {})?;
    job.wait_step("knockoff", 5, WAIT)?;
    let ranks: Vec<i32> = (0..2).filter_map(|i| cluster.rank_pid(i)).collect();
    if ranks.len() != 2 {
        bail!("expected two rank processes, found {}", ranks.len());
    }
    for &rank in &ranks {
        signal(rank, Signal::SIGSTOP);
    }
    let checkpoints = JobDir::new(cluster.artifacts_dir().join("jobs").join(&job.id)).checkpoints("knockoff");
    let latest = std::fs::read_to_string(checkpoints.join("latest"))
        .with_context(|| format!("{}/latest", checkpoints.display()))?;
    let damaged = checkpoints.join(latest.trim());
    let tensors = std::fs::read_dir(&damaged)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .context("no safetensors in the latest checkpoint")?;
    let mut bytes = std::fs::read(&tensors)?;
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 64] {
        *b ^= 0xFF;
    }
    std::fs::write(&tensors, bytes)?;
    // The attempt fails: one rank dies, the other finds its peer gone.
    signal(ranks[0], Signal::SIGKILL);
    signal(ranks[1], Signal::SIGCONT);
    let mut expect = expect(&options);
    // The damaged checkpoint's own interval is recomputed too.
    expect.max_recomputed = 2 * CHECKPOINT_EVERY;
    let mut row = finish(name, &cluster, &job, &expect)?;
    let notice = job.events().into_iter().find(|e| e["kind"] == "notice");
    match notice {
        Some(n) => row.notes.push(format!("job event: {}", n["message"].as_str().unwrap_or(""))),
        None => row.failures.push("no job event says a damaged checkpoint was skipped".into()),
    }
    row.notes.push(format!("damaged {}", damaged.file_name().unwrap_or_default().to_string_lossy()));
    Ok(row)
}

/// A size-limited tmpfs, unmounted on drop.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

fn full_disk(ctx: &Ctx, name: &str) -> anyhow::Result<Row> {
    let artifacts = ctx.base.join(format!("{name}-artifacts"));
    std::fs::create_dir_all(&artifacts)?;
    let _ = std::process::Command::new("umount").arg(&artifacts).output();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(&artifacts)
        .output()
        .context("cannot run mount")?;
    if !mounted.status.success() {
        bail!("cannot mount a 3 MiB tmpfs: {}", String::from_utf8_lossy(&mounted.stderr).trim());
    }
    let _mount = Mount(artifacts.clone());
    let options = Options { artifacts_dir: Some(artifacts), ..Options::default() };
    let cluster = cluster(ctx, name, options.clone())?;
    let job = cluster.submit(|spec| spec.max_restarts = 1)?;
    let expect =
        Expect { outcome: "failed", reason_contains: Some("No space left on device"), ..expect(&options) };
    finish(name, &cluster, &job, &expect)
}

fn wrong_worker(ctx: &Ctx, name: &str) -> anyhow::Result<Row> {
    let options = Options::default();
    let cluster = cluster(ctx, name, options.clone())?;
    let job = cluster.submit(|_| {})?;
    job.wait_step("knockoff", 2, WAIT)?;
    let root = crate::shell::root();
    let out = std::process::Command::new(crate::shell::venv_python()?)
        .arg(root.join("xtask/src/chaos/impersonate.py"))
        .arg(cluster.worker.to_string())
        .arg(cluster.data_dir().join("worker.token"))
        .arg(cluster.data_dir().join("scop.db"))
        .env("PYTHONPATH", root.join("client/python/src"))
        .output()
        .context("cannot run the impostor")?;
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!("the impostor printed no answer: {}", String::from_utf8_lossy(&out.stderr).trim())
    })?;
    let mut row = finish(name, &cluster, &job, &expect(&options))?;
    let audited =
        answer["audit"].as_array().is_some_and(|rows| rows.iter().any(|r| r[1] == "report_refused"));
    if answer["code"] == "PERMISSION_DENIED" && audited {
        row.notes.push(format!(
            "impostor's Finished for {} (placed on {}) refused: {}; audit row report_refused written",
            answer["task_id"].as_str().unwrap_or("?"),
            answer["placed_on"].as_str().unwrap_or("?"),
            answer["details"].as_str().unwrap_or("")
        ));
    } else {
        row.failures.push(format!("the impostor was not refused and audited: {answer}"));
    }
    Ok(row)
}

fn hosts_or_skip(ctx: &Ctx) -> anyhow::Result<()> {
    match &ctx.no_netns {
        Some(why) => bail!("needs network namespaces, which this machine cannot make: {why}"),
        None => Ok(()),
    }
}

fn partition(ctx: &Ctx, name: &str) -> anyhow::Result<Row> {
    hosts_or_skip(ctx)?;
    let options = Options { hosts: true, ..Options::default() };
    let cluster = cluster(ctx, name, options.clone())?;
    let job = cluster.submit(|_| {})?;
    job.wait_step("knockoff", 3, WAIT)?;
    let host = cluster.agents[1].host.clone().context("agent 1 has no host")?;
    let down = options.heartbeat_timeout + Duration::from_secs(3);
    host.set_link(false)?;
    std::thread::sleep(down);
    host.set_link(true)?;
    let mut expect = expect_agent_1_hit(&options);
    // The partition itself may be silent; the limit is counted from its end.
    expect.max_silence += down;
    let mut row = finish(name, &cluster, &job, &expect)?;
    row.notes.push(format!(
        "coordinator {}, agents {} and {}; {} down for {:.0} s",
        cluster.hosts.as_ref().map_or(String::new(), |h| h.hosts[0].ip.to_string()),
        cluster.agents[0].host.as_ref().map_or(String::new(), |h| h.ip.to_string()),
        host.ip,
        host.ip,
        down.as_secs_f64()
    ));
    Ok(row)
}

fn slow_lossy_ring(ctx: &Ctx, name: &str) -> anyhow::Result<Row> {
    hosts_or_skip(ctx)?;
    let options = Options { hosts: true, ..Options::default() };
    let mut cluster = Cluster::new(&ctx.bin, ctx.base.join(name), options.clone())?;
    cluster.start_scopd()?;
    // Each worker host's ring ports come from a range of its own, and the
    // ranks reach each other through a relay on the bridge that listens on
    // those ports and impairs what it carries.
    let hosts = cluster.hosts.as_ref().context("no hosts")?.hosts.clone();
    let mut routes: Vec<(SocketAddr, SocketAddr)> = Vec::new();
    for (i, host) in hosts.iter().skip(1).enumerate() {
        let first = 30_000 + 100 * u16::try_from(i)?;
        host.set_port_range(first, first + 39)?;
        for port in first..=first + 39 {
            routes.push((SocketAddr::from((BRIDGE_IP, port)), SocketAddr::from((host.ip, port))));
        }
    }
    let relay = Relay::start(&routes, Impairment { delay: Duration::from_millis(100), loss: 0.01 })?;
    for index in 0..options.agents {
        cluster.start_agent(index, None, Some(BRIDGE_IP.to_string()))?;
    }
    cluster.wait_workers(options.agents)?;
    let job = cluster.submit(|_| {})?;
    job.wait_event("stage_started", "finetune", WAIT)?;
    relay.impair(true);
    let (_, before) = relay.counters();
    job.wait_event("stage_finished", "finetune", JOB_TIMEOUT)?;
    relay.impair(false);
    let (lost, after) = relay.counters();
    let mut row = finish(name, &cluster, &job, &expect(&options))?;
    let how = if ctx.netem { "netem is present, but" } else { "no netem in this kernel;" };
    row.notes.push(format!(
        "{how} a userspace relay between the ranks added 100 ms each way and lost {lost} of the segments it carried \
         ({:.1} MB during finetune), each loss a 200 ms retransmission stall",
        (after - before) as f64 / 1e6
    ));
    if after == before {
        row.failures.push("no ring traffic went through the relay: the fault was not injected".into());
    }
    let finetune = |kind| event_time(&job, kind, "finetune", None);
    if let (Some(start), Some(end)) = (finetune("stage_started"), finetune("stage_finished")) {
        row.notes.push(format!("finetune took {:.1} s under the impairment", (end - start) as f64 / 1000.0));
    }
    relay.stop();
    Ok(row)
}
