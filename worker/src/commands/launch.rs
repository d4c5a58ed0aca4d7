//! The local launcher: runs one stage as N `scop-worker rank` processes on this
//! machine, relays rank 0's events, and stops every rank when one fails or when
//! the user interrupts.
//!
//! Each stage gets a fresh rendezvous, built by `scop-core` as the coordinator
//! builds it: free loopback ports for the TCP ring and a random job token (or,
//! with NCCL, one GPU per rank and an NCCL unique id made here), with the spec's
//! collective and connect timeouts. CPU threads are split between the ranks.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rand::Rng;
use scop_core::rendezvous::{Meeting, Rendezvous, Timeouts, group};
use scop_core::spec::{DeviceKind, ResourcesSpec};
use scop_core::stage::Stage;

use crate::events::{Event, EventSink};

/// Why a launched stage failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot start rank {rank} ({program}): {source}")]
    Spawn {
        rank: usize,
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
    #[error("{stage}: rank {rank} failed first ({status}): {reason}")]
    RankFailed { stage: String, rank: usize, status: String, reason: String },
    #[error("{stage}: interrupted; all {world} ranks were stopped")]
    Interrupted { stage: String, world: usize },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How to start the ranks of every stage of one job.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// The `scop-worker` executable.
    pub program: PathBuf,
    /// The job spec file every rank reads.
    pub spec_file: PathBuf,
    /// The output directory shared by the ranks.
    pub output: PathBuf,
    pub world: usize,
    pub device: DeviceKind,
    /// Intra-op threads per rank.
    pub threads: usize,
    pub resume: bool,
    /// Limit on each collective while a peer is silent (milliseconds); a crashed
    /// rank ends its peers at once, since its connections close.
    pub timeout_ms: u64,
    /// Limit on joining the group (milliseconds).
    pub connect_timeout_ms: u64,
    /// NCCL between GPU ranks (else the TCP ring), even for one rank.
    pub nccl: bool,
}

impl Launcher {
    /// Threads per rank: the spec's `resources.threads`, or the cores split evenly (at least 1).
    pub fn threads_per_rank(spec_threads: u32, world: usize) -> usize {
        if spec_threads > 0 {
            return spec_threads as usize;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / world.max(1)).max(1)
    }

    pub fn new(
        spec_file: PathBuf,
        output: PathBuf,
        world: usize,
        device: DeviceKind,
        threads: usize,
    ) -> Self {
        let program = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("scop-worker"));
        Self {
            program,
            spec_file,
            output,
            world,
            device,
            threads,
            resume: false,
            timeout_ms: Timeouts::default().timeout_ms,
            connect_timeout_ms: Timeouts::default().connect_timeout_ms,
            nccl: device == DeviceKind::Cuda && world > 1,
        }
    }

    /// Takes the spec's backend and timeouts (`resources.backend`,
    /// `collective_timeout`, `connect_timeout`).
    pub fn with_resources(mut self, resources: &ResourcesSpec) -> Self {
        let timeouts = Timeouts::of(resources);
        self.nccl = resources.uses_nccl();
        self.timeout_ms = timeouts.timeout_ms;
        self.connect_timeout_ms = timeouts.connect_timeout_ms;
        self
    }

    /// The rendezvous records of one stage, one per rank: `scop-core`'s
    /// [`group`], as the coordinator builds them, meeting on free loopback
    /// ports (or, with NCCL, one GPU per rank and a unique id made here).
    pub fn rendezvous(&self) -> Result<Vec<Rendezvous>> {
        let token: String = {
            let mut rng = rand::thread_rng();
            (0..32).map(|_| format!("{:x}", rng.gen_range(0..16u8))).collect()
        };
        let meeting = match self.nccl {
            false => Meeting::Tcp { peers: free_loopback_ports(self.world)? },
            true => Meeting::Nccl {
                unique_id: nccl_unique_id()?,
                devices: (0..self.world).map(|r| r as u32).collect(),
            },
        };
        let timeouts = Timeouts { timeout_ms: self.timeout_ms, connect_timeout_ms: self.connect_timeout_ms };
        Ok(group(&token, timeouts, &meeting))
    }

    /// Runs `stage` on every rank; relays rank 0's events into `sink`. Returns when
    /// all ranks have succeeded, or fails (after stopping every rank) when one fails.
    pub fn run_stage(&self, stage: Stage, sink: &mut dyn EventSink) -> Result<()> {
        crate::interrupt::install();
        let records = self.rendezvous()?;
        let (tx, rx) = mpsc::channel::<(usize, Line)>();
        let mut ranks: Vec<RankProcess> = Vec::with_capacity(self.world);
        for (rank, record) in records.iter().enumerate() {
            let mut child = match self.command(stage, record).spawn() {
                Ok(child) => child,
                Err(source) => {
                    // The ranks already started would wait for this one until their timeout.
                    for r in &mut ranks {
                        let _ = r.child.kill();
                        let _ = r.child.wait();
                    }
                    return Err(Error::Spawn { rank, program: self.program.display().to_string(), source });
                }
            };
            if let Some(mut stdin) = child.stdin.take() {
                // A rank that died before reading it fails on its own; its exit says why.
                let json = serde_json::to_string(record).expect("rendezvous serialises");
                let _ = std::io::Write::write_all(&mut stdin, json.as_bytes());
            }
            let stdout = child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
            let stderr = child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
            let readers = [relay(rank, stdout, &tx, Line::Stdout), relay(rank, stderr, &tx, Line::Stderr)]
                .into_iter()
                .flatten()
                .collect();
            ranks.push(RankProcess { child, readers, status: None, last_error: None });
        }
        drop(tx);
        let outcome = self.supervise(stage, &mut ranks, &rx, sink);
        if matches!(outcome, Err(Failure::Interrupted)) {
            // Each rank finishes its step and checkpoints, so --resume continues from there.
            stop_gracefully(&mut ranks, DRAIN);
        }
        if outcome.is_err() {
            for r in ranks.iter_mut().filter(|r| r.status.is_none()) {
                let _ = r.child.kill();
            }
        }
        for r in &mut ranks {
            if r.status.is_none() {
                r.status = r.child.wait().ok();
            }
            for reader in r.readers.drain(..) {
                let _ = reader.join();
            }
        }
        // Lines that arrived while the ranks were being stopped.
        for (rank, line) in rx.try_iter() {
            note(&mut ranks, rank, line, sink);
        }
        match outcome {
            Err(Failure::Rank(rank)) => {
                let r = &ranks[rank];
                Err(Error::RankFailed {
                    stage: stage.as_str().to_owned(),
                    rank,
                    status: r.status.map_or_else(|| "unknown status".to_owned(), describe_status),
                    reason: r.last_error.clone().unwrap_or_else(|| "no message on stderr".to_owned()),
                })
            }
            Err(Failure::Interrupted) => {
                Err(Error::Interrupted { stage: stage.as_str().to_owned(), world: self.world })
            }
            Ok(()) => Ok(()),
        }
    }

    fn command(&self, stage: Stage, record: &Rendezvous) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.arg("rank")
            .arg("--spec")
            .arg(&self.spec_file)
            .args(["--stage", stage.as_str()])
            .args(["--rank", &record.rank.to_string()])
            .args(["--world", &record.world.to_string()])
            // The record carries the job token: it goes through stdin, never argv.
            .args(["--rendezvous", "-"])
            .arg("--output")
            .arg(&self.output)
            .args(["--threads", &self.threads.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if self.resume {
            cmd.arg("--resume");
        }
        cmd
    }

    /// Waits for every rank; the first failure (or an interrupt) ends the wait.
    fn supervise(
        &self,
        stage: Stage,
        ranks: &mut [RankProcess],
        rx: &mpsc::Receiver<(usize, Line)>,
        sink: &mut dyn EventSink,
    ) -> Result<(), Failure> {
        loop {
            if crate::interrupt::requested() {
                return Err(Failure::Interrupted);
            }
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok((rank, line)) => note(ranks, rank, line, sink),
                Err(mpsc::RecvTimeoutError::Timeout | mpsc::RecvTimeoutError::Disconnected) => {}
            }
            let mut running = 0;
            for rank in 0..ranks.len() {
                if ranks[rank].status.is_some() {
                    continue;
                }
                match ranks[rank].child.try_wait() {
                    Ok(Some(status)) => {
                        ranks[rank].status = Some(status);
                        if !status.success() {
                            // Its last words are still in the pipe: read them before judging.
                            for reader in ranks[rank].readers.drain(..) {
                                let _ = reader.join();
                            }
                            for (r, line) in rx.try_iter() {
                                note(ranks, r, line, sink);
                            }
                            tracing::debug!(stage = stage.as_str(), rank, "rank failed");
                            return Err(Failure::Rank(rank));
                        }
                    }
                    Ok(None) => running += 1,
                    Err(_) => return Err(Failure::Rank(rank)),
                }
            }
            if running == 0 {
                return Ok(());
            }
        }
    }
}

/// How a supervised stage ended badly.
enum Failure {
    Rank(usize),
    Interrupted,
}

/// A line one rank wrote.
enum Line {
    Stdout(String),
    Stderr(String),
}

/// How long interrupted ranks get to checkpoint before they are killed.
const DRAIN: Duration = Duration::from_secs(20);

/// Sends SIGTERM to every running rank and waits up to `grace` for them to exit.
fn stop_gracefully(ranks: &mut [RankProcess], grace: Duration) {
    for r in ranks.iter().filter(|r| r.status.is_none()) {
        if let Ok(pid) = i32::try_from(r.child.id()) {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        }
    }
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline {
        for r in ranks.iter_mut().filter(|r| r.status.is_none()) {
            r.status = r.child.try_wait().ok().flatten();
        }
        if ranks.iter().all(|r| r.status.is_some()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct RankProcess {
    child: Child,
    readers: Vec<std::thread::JoinHandle<()>>,
    status: Option<ExitStatus>,
    /// The last non-empty line the rank wrote on stderr.
    last_error: Option<String>,
}

/// Relays rank 0's events to the sink; shows every rank's stderr, prefixed.
fn note(ranks: &mut [RankProcess], rank: usize, line: Line, sink: &mut dyn EventSink) {
    match line {
        Line::Stdout(text) => match serde_json::from_str::<Event>(&text) {
            Ok(event) if rank == 0 => sink.emit(&event),
            Ok(_) => {}
            Err(_) => eprintln!("[rank {rank}] {text}"),
        },
        Line::Stderr(text) => {
            if !text.trim().is_empty() {
                eprintln!("[rank {rank}] {text}");
                ranks[rank].last_error = Some(text.trim().to_owned());
            }
        }
    }
}

/// A thread that sends each line of `stream` to `tx`, tagged with the rank.
fn relay(
    rank: usize,
    stream: Option<Box<dyn std::io::Read + Send>>,
    tx: &mpsc::Sender<(usize, Line)>,
    wrap: fn(String) -> Line,
) -> Option<std::thread::JoinHandle<()>> {
    let stream = stream?;
    let tx = tx.clone();
    Some(std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send((rank, wrap(line))).is_err() {
                break;
            }
        }
    }))
}

fn describe_status(status: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("killed by signal {signal}");
        }
    }
    status.code().map_or_else(|| "no exit code".to_owned(), |c| format!("exit code {c}"))
}

/// `n` distinct free ports on 127.0.0.1, as `127.0.0.1:port`. The ports are free
/// when chosen; a rank binds its own moments later.
pub fn free_loopback_ports(n: usize) -> Result<Vec<String>> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::Setup(format!("cannot find a free port on 127.0.0.1: {e}")))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.to_string()))
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::Setup(format!("cannot read a listener's address: {e}")))
}

#[cfg(feature = "nccl")]
fn nccl_unique_id() -> Result<String> {
    let id = crate::collective::new_unique_id().map_err(|e| Error::Setup(format!("nccl unique id: {e}")))?;
    Ok(scop_core::rendezvous::encode_unique_id(&id))
}

#[cfg(not(feature = "nccl"))]
fn nccl_unique_id() -> Result<String> {
    Err(Error::Setup(
        "resources.backend is nccl (backend: nccl, or auto with device: cuda and world_size > 1): \
         build scop-worker with the `nccl` cargo feature"
            .into(),
    ))
}
