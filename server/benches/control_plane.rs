//! The control-plane benchmark behind `cargo xtask bench control-plane`: a
//! real `scopd` process (release build, real SQLite, real sockets) under load
//! from this process.
//!
//! 1. 1,000 `SubmitJob` calls in flight at once, then 1,000 `GetJob` calls.
//! 2. Steady state: 1,000 simulated workers on `Connect` streams heartbeating
//!    at 1 Hz and 500 `WatchJob` followers, while a probe calls `GetJob` every
//!    10 ms and another cancels one watched job every 50 ms. Reported: the
//!    probe's latency, how long cancel events take to reach their watchers
//!    (receive time minus the event's time in the store, one clock), and the
//!    coordinator's CPU use over the phase (from `/proc/<pid>/stat`).
//!
//! Timing never decides anything here; it prints figures.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use scop_proto::v1 as pb;
use tokio::sync::Mutex;
use tonic::transport::Channel;

const IN_FLIGHT: usize = 1_000;
const WORKERS: usize = 1_000;
const WATCHERS: usize = 500;
const STEADY: Duration = Duration::from_secs(20);
/// HTTP/2 connections the load is spread over (a client library would pool too).
const CONNECTIONS: usize = 16;
const TOKEN: &str = "bench-token-0123456789abcdef";
const SPEC: &str = "model: { arch: resnet20, num_classes: 10 }\ndata: { format: idx, root: /data }\n";

/// Every call carries the bench's token.
fn bearer() -> scop_connect::Bearer {
    scop_connect::Bearer::new(Some(TOKEN)).expect("ascii")
}

type Jobs = pb::job_service_client::JobServiceClient<scop_connect::Authenticated>;
type Workers = pb::worker_service_client::WorkerServiceClient<scop_connect::Authenticated>;

/// The coordinator under test, killed when dropped.
struct Scopd {
    child: Child,
    public: String,
    worker: String,
}

impl Drop for Scopd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a port")
}

fn start_scopd(bin: &Path, dir: &Path) -> Scopd {
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("{TOKEN}\n")).expect("token file");
    let (public, worker, metrics) = (free_port(), free_port(), free_port());
    let child = Command::new(bin)
        .args(["--public-addr", &format!("127.0.0.1:{public}")])
        .args(["--worker-addr", &format!("127.0.0.1:{worker}")])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics}")])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--token-file")
        .arg(&tokens)
        .arg("--worker-token-file")
        .arg(&tokens)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    Scopd {
        child,
        public: format!("http://127.0.0.1:{public}"),
        worker: format!("http://127.0.0.1:{worker}"),
    }
}

async fn channels(url: &str) -> Vec<Channel> {
    let mut out = Vec::new();
    for _ in 0..CONNECTIONS {
        let endpoint = scop_connect::endpoint(url, None).expect("url");
        for attempt in 0.. {
            match endpoint.connect().await {
                Ok(channel) => {
                    out.push(channel);
                    break;
                }
                Err(_) if attempt < 100 => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => panic!("cannot connect to {url}: {e}"),
            }
        }
    }
    out
}

fn jobs(channels: &[Channel], i: usize) -> Jobs {
    pb::job_service_client::JobServiceClient::with_interceptor(channels[i % channels.len()].clone(), bearer())
}

/// p50, p99 and max of `samples`, in milliseconds.
fn percentiles(samples: &mut [Duration]) -> (f64, f64, f64) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    (at(0.5), at(0.99), at(1.0))
}

fn print_latency(what: &str, samples: &mut [Duration], wall: Option<Duration>) {
    let n = samples.len();
    let (p50, p99, max) = percentiles(samples);
    let rate = wall.map_or(String::new(), |w| format!(", {:.0} calls/s", n as f64 / w.as_secs_f64()));
    println!("{what:<44} n={n:<6} p50 {p50:>7.2} ms  p99 {p99:>7.2} ms  max {max:>7.2} ms{rate}");
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/<pid>/stat");
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / clock_ticks()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Many calls at once: `IN_FLIGHT` tasks started together; returns their latencies and the wall time.
async fn burst<F, Fut>(call: F) -> (Vec<Duration>, Duration)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..IN_FLIGHT {
        let call = call(i);
        tasks.spawn(async move {
            let begun = Instant::now();
            call.await;
            begun.elapsed()
        });
    }
    let mut samples = Vec::with_capacity(IN_FLIGHT);
    while let Some(done) = tasks.join_next().await {
        samples.push(done.expect("a call task"));
    }
    (samples, started.elapsed())
}

/// One simulated worker: Hello, then a heartbeat every second until `until`.
async fn simulated_worker(channel: Channel, index: usize, until: Instant) {
    let mut client: Workers =
        pb::worker_service_client::WorkerServiceClient::with_interceptor(channel, bearer());
    let (outbox, inbox) = tokio::sync::mpsc::channel(4);
    let device = pb::Device { kind: "cpu".into(), index: 0, name: "cpu".into(), memory_bytes: 0 };
    let hello = pb::Hello {
        hostname: format!("sim-{index}"),
        agent_version: "bench".into(),
        devices: vec![device],
        cpu_cores: 1,
        ..Default::default()
    };
    let send = |kind| pb::WorkerMessage { kind: Some(kind) };
    outbox.send(send(pb::worker_message::Kind::Hello(hello))).await.expect("hello");
    let mut replies = client
        .connect(tokio_stream::wrappers::ReceiverStream::new(inbox))
        .await
        .expect("connect")
        .into_inner();
    // Drain whatever the coordinator sends (Welcome, assignments of queued jobs).
    tokio::spawn(async move { while let Ok(Some(_)) = replies.message().await {} });
    // Spread the beats over the second.
    tokio::time::sleep(Duration::from_millis((index as u64 * 997) % 1000)).await;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    while Instant::now() < until {
        ticker.tick().await;
        let beat = pb::Heartbeat { time_ms: now_ms(), running_task_ids: Vec::new(), running_complete: false };
        if outbox.send(send(pb::worker_message::Kind::Heartbeat(beat))).await.is_err() {
            return;
        }
    }
}

/// Follows one job; records when the store wrote each event and how late it arrived.
async fn watcher(mut client: Jobs, job_id: String, delays: Arc<Mutex<Vec<(i64, Duration)>>>) {
    let request = pb::WatchJobRequest { job_id, from_sequence: 0 };
    let mut events = client.watch_job(request).await.expect("watch").into_inner();
    let mut caught_up = false;
    while let Ok(Some(event)) = events.message().await {
        // The replayed submission event is history, not delivery latency.
        if !caught_up && event.sequence == 1 {
            caught_up = true;
            continue;
        }
        let late = (now_ms() - event.time_ms).max(0) as u64;
        delays.lock().await.push((event.time_ms, Duration::from_millis(late)));
    }
}

async fn run(bin: PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let scopd = start_scopd(&bin, dir.path());
    let public = channels(&scopd.public).await;
    let workers = channels(&scopd.worker).await;
    println!(
        "control plane: scopd {} (pid {}), {CONNECTIONS} connections per port",
        bin.display(),
        scopd.child.id()
    );

    let submit = |i: usize| {
        let mut client = jobs(&public, i);
        async move {
            let request = pb::SubmitJobRequest { spec_yaml: SPEC.into(), ..Default::default() };
            client.submit_job(request).await.expect("submit");
        }
    };
    let (mut samples, wall) = burst(submit).await;
    print_latency("SubmitJob, 1,000 in flight", &mut samples, Some(wall));
    let listed = jobs(&public, 0)
        .list_jobs(pb::ListJobsRequest { page_size: 1000, ..Default::default() })
        .await
        .expect("list")
        .into_inner()
        .jobs;
    let ids: Arc<Vec<String>> = Arc::new(listed.into_iter().map(|j| j.id).collect());
    let get = |i: usize| {
        let mut client = jobs(&public, i);
        let ids = ids.clone();
        async move {
            let request = pb::GetJobRequest { job_id: ids[i % ids.len()].clone() };
            client.get_job(request).await.expect("get");
        }
    };
    let (mut samples, wall) = burst(get).await;
    print_latency("GetJob, 1,000 in flight", &mut samples, Some(wall));

    // Steady state.
    let until = Instant::now() + STEADY + Duration::from_secs(3);
    for i in 0..WORKERS {
        tokio::spawn(simulated_worker(workers[i % workers.len()].clone(), i, until));
    }
    let delays = Arc::new(Mutex::new(Vec::new()));
    for i in 0..WATCHERS {
        tokio::spawn(watcher(jobs(&public, i), ids[i].clone(), delays.clone()));
    }
    // Let every worker say Hello and every watcher catch up before measuring.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let connected = jobs(&public, 0)
        .list_workers(pb::ListWorkersRequest::default())
        .await
        .expect("list workers")
        .into_inner()
        .workers
        .len();
    let cpu_before = cpu_seconds(scopd.child.id());
    let started = Instant::now();
    let started_ms = now_ms();
    let mut probe = tokio::time::interval(Duration::from_millis(10));
    let mut cancel = tokio::time::interval(Duration::from_millis(50));
    let (mut probes, mut cancelled) = (Vec::new(), 0usize);
    while started.elapsed() < STEADY {
        tokio::select! {
            _ = probe.tick() => {
                let begun = Instant::now();
                let request = pb::GetJobRequest { job_id: ids[probes.len() % ids.len()].clone() };
                jobs(&public, probes.len()).get_job(request).await.expect("probe");
                probes.push(begun.elapsed());
            }
            _ = cancel.tick(), if cancelled < WATCHERS => {
                let request = pb::CancelJobRequest { job_id: ids[cancelled].clone() };
                jobs(&public, cancelled).cancel_job(request).await.expect("cancel");
                cancelled += 1;
            }
        }
    }
    let cpu = cpu_seconds(scopd.child.id()) - cpu_before;
    let wall = started.elapsed().as_secs_f64();
    println!(
        "steady state: {connected} workers heartbeating at 1 Hz, {WATCHERS} WatchJob streams, {:.0} s",
        wall
    );
    print_latency("GetJob probe every 10 ms", &mut probes, None);
    // Only what happened while measuring: not the placement of every job when the workers came.
    let mut delays: Vec<Duration> =
        delays.lock().await.iter().filter(|(at, _)| *at >= started_ms).map(|(_, late)| *late).collect();
    print_latency("event delivered to its watcher", &mut delays, None);
    println!(
        "scopd CPU: {cpu:.2} s over {wall:.1} s = {:.0} % of one core ({} heartbeats/s handled)",
        100.0 * cpu / wall,
        connected
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut bin = None;
    while let Some(arg) = args.next() {
        if arg == "--scopd" {
            bin = args.next().map(PathBuf::from);
        }
    }
    let bin = bin.unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/scopd"));
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build --release -p scop-server`",
        bin.display()
    );
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime").block_on(run(bin));
}
