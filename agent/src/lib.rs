//! The worker agent (`scop-agent`, and `scop-worker agent`): registers with the
//! coordinator, heartbeats, reconnects with backoff, and runs each assigned rank
//! as a child trainer process whose events it relays. This crate never links
//! libtorch (`cargo xtask check-links` proves it on `scop-agent`); only the
//! children, `scop-worker rank`, do.

pub mod advertise;
pub mod cli;
mod nccl_id;
pub mod outbox;
pub mod probe;
pub mod relay;
pub mod trainer;
mod worker_id;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use scop_connect::Bearer;
use scop_core::rendezvous::{BackendRendezvous, Rendezvous};
use scop_proto::v1 as pb;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use self::nccl_id::{nccl_unique_id, uses_nccl};
use self::trainer::{DRAIN, RankLaunch, Stop};

/// Everything the agent needs, from its flags. Its `Debug` leaves the token out.
#[derive(Clone)]
pub struct AgentConfig {
    /// `http://host:port` (or `https://`) of the coordinator's worker port.
    pub coordinator: String,
    /// PEM of the CA to trust for an `https://` coordinator, besides the system's.
    pub ca_cert: Option<Vec<u8>>,
    /// The bearer token for the worker port.
    pub token: String,
    pub hostname: String,
    /// One slot per device: CUDA GPUs, or CPU slots.
    pub devices: Vec<pb::Device>,
    pub cpu_cores: u32,
    /// Intra-op threads of each rank this agent starts.
    pub rank_threads: u32,
    /// The `scop-worker` executable that runs ranks.
    pub worker_bin: PathBuf,
    /// Where task specs are written.
    pub scratch_dir: PathBuf,
    /// The host other ranks reach this worker's ring listeners at.
    pub advertise_host: String,
    /// Where spec paths must stay; `None` (no root given): not checked.
    pub roots: Option<scop_core::sandbox::Roots>,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("coordinator", &self.coordinator)
            .field("ca_cert", &self.ca_cert.as_ref().map(|pem| format!("{} bytes of PEM", pem.len())))
            .field("token", &"<redacted>")
            .field("hostname", &self.hostname)
            .field("devices", &self.devices)
            .field("cpu_cores", &self.cpu_cores)
            .field("rank_threads", &self.rank_threads)
            .field("worker_bin", &self.worker_bin)
            .field("scratch_dir", &self.scratch_dir)
            .field("advertise_host", &self.advertise_host)
            .finish()
    }
}

/// What can stop the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("coordinator address {0:?}: {1}")]
    Address(String, String),
    #[error("token file {0}: {1}")]
    Token(String, String),
    #[error("cannot find the scop-worker executable to run ranks with: {0}")]
    WorkerBin(String),
    #[error("{0}")]
    Flag(String),
}

/// A task assigned without its rendezvous record, waiting for it.
#[derive(Debug)]
struct Waiting {
    task: pb::AssignTask,
    listen: String,
}

/// Agent state that survives reconnects.
struct Agent {
    config: AgentConfig,
    worker_id: String,
    /// Running ranks: task id → (rank, how to stop it).
    running: HashMap<String, (u32, oneshot::Sender<Stop>)>,
    waiting: HashMap<String, Waiting>,
    events_tx: mpsc::Sender<pb::TaskEvent>,
    /// The supervisors of the rank processes.
    ranks: tokio::task::JoinSet<()>,
    /// Task events sent but not yet acknowledged (kept across reconnects and restarts).
    outbox: outbox::Outbox,
}

/// Runs the agent until `shutdown` resolves; running ranks are then asked to
/// checkpoint and stop (SIGTERM), and killed if they take longer than [`DRAIN`].
pub async fn run(
    config: AgentConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    let address =
        |e: scop_connect::ConnectError| AgentError::Address(config.coordinator.clone(), e.to_string());
    let endpoint = scop_connect::endpoint(&config.coordinator, config.ca_cert.as_deref()).map_err(address)?;
    let bearer = Bearer::new(Some(&config.token)).map_err(address)?;
    let (events_tx, events_rx) = mpsc::channel(1024);
    let agent = Agent::new(config, events_tx);
    serve(agent, events_rx, &endpoint, bearer, shutdown).await;
    Ok(())
}

/// Connects, reconnects with backoff and relays rank events until `shutdown`;
/// then drains the running ranks.
async fn serve(
    mut agent: Agent,
    mut events_rx: mpsc::Receiver<pb::TaskEvent>,
    endpoint: &tonic::transport::Endpoint,
    bearer: Bearer,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(200);
    loop {
        let session = agent.session(endpoint, bearer.clone(), &mut events_rx);
        tokio::select! {
            ended = session => match ended {
                Ok(()) => backoff = Duration::from_millis(200),
                Err(reason) => tracing::warn!(%reason, "coordinator connection lost"),
            },
            () = &mut shutdown => break,
        }
        // Disconnected, the ranks go on: their events go into the outbox (and
        // its file) now, not when the next stream comes.
        let pause = tokio::time::sleep(backoff);
        tokio::pin!(pause);
        let stopping = loop {
            tokio::select! {
                () = &mut pause => break false,
                Some(event) = events_rx.recv() => { agent.record(event); }
                () = &mut shutdown => break true,
            }
        };
        if stopping {
            break;
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
    for (task_id, (_, stop)) in agent.running.drain() {
        tracing::info!(%task_id, "stopping rank: the agent is shutting down");
        let _ = stop.send(Stop::Drain("the agent is shutting down".into()));
    }
    // Each supervisor kills its rank at the drain deadline; this bound is a backstop.
    let _ = tokio::time::timeout(DRAIN + Duration::from_secs(5), async {
        while agent.ranks.join_next().await.is_some() {}
    })
    .await;
}

impl Agent {
    fn new(config: AgentConfig, events_tx: mpsc::Sender<pb::TaskEvent>) -> Agent {
        Agent {
            outbox: outbox::Outbox::open(&config.scratch_dir.join("outbox")),
            // The identity of a previous run: the ranks its outbox speaks for are placed on it.
            worker_id: worker_id::load(&config.scratch_dir),
            config,
            running: HashMap::new(),
            waiting: HashMap::new(),
            events_tx,
            ranks: tokio::task::JoinSet::new(),
        }
    }

    /// One Connect stream, until it breaks.
    async fn session(
        &mut self,
        endpoint: &tonic::transport::Endpoint,
        bearer: Bearer,
        events_rx: &mut mpsc::Receiver<pb::TaskEvent>,
    ) -> Result<(), String> {
        let connect = endpoint.connect();
        tokio::pin!(connect);
        let channel = loop {
            tokio::select! {
                channel = &mut connect => break channel.map_err(|e| e.to_string())?,
                Some(event) = events_rx.recv() => { self.record(event); }
            }
        };
        let mut client = pb::worker_service_client::WorkerServiceClient::with_interceptor(channel, bearer);
        let (outbox, inbox) = mpsc::channel(256);
        let hello = pb::Hello {
            hostname: self.config.hostname.clone(),
            agent_version: env!("CARGO_PKG_VERSION").into(),
            devices: self.config.devices.clone(),
            cpu_cores: self.config.cpu_cores,
            worker_id: self.worker_id.clone(),
            running: self
                .running
                .iter()
                .map(|(t, (r, _))| pb::RunningRank { task_id: t.clone(), rank: *r })
                .collect(),
        };
        let send = |kind| pb::WorkerMessage { kind: Some(kind) };
        outbox.send(send(pb::worker_message::Kind::Hello(hello))).await.map_err(|e| e.to_string())?;
        let call = client.connect(ReceiverStream::new(inbox));
        tokio::pin!(call);
        let mut inbound = loop {
            tokio::select! {
                answer = &mut call => break answer.map_err(|s| s.message().to_owned())?.into_inner(),
                Some(event) = events_rx.recv() => { self.record(event); }
            }
        };
        // What the last stream (or the last run of the agent) left unacknowledged, in order.
        for event in self.outbox.unacknowledged() {
            outbox.send(send(pb::worker_message::Kind::TaskEvent(event))).await.map_err(|e| e.to_string())?;
        }
        let mut heartbeat = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                message = inbound.message() => match message.map_err(|s| s.message().to_owned())? {
                    Some(pb::CoordinatorMessage { kind: Some(kind) }) => {
                        if let pb::coordinator_message::Kind::Welcome(welcome) = &kind {
                            if self.worker_id != welcome.worker_id {
                                self.worker_id = welcome.worker_id.clone();
                                worker_id::save(&self.config.scratch_dir, &self.worker_id);
                            }
                            let every = Duration::from_millis(u64::from(welcome.heartbeat_interval_ms.max(50)));
                            heartbeat = tokio::time::interval(every);
                            tracing::info!(worker_id = %self.worker_id, "registered with the coordinator");
                        }
                        for event in self.handle(kind) {
                            let event = self.outbox.push(event);
                            outbox.send(send(pb::worker_message::Kind::TaskEvent(event))).await.map_err(|e| e.to_string())?;
                        }
                    }
                    Some(_) => {}
                    None => return Ok(()),
                },
                Some(event) = events_rx.recv() => {
                    let event = self.record(event);
                    outbox.send(send(pb::worker_message::Kind::TaskEvent(event))).await.map_err(|e| e.to_string())?;
                }
                _ = heartbeat.tick() => {
                    let beat = pb::Heartbeat {
                        time_ms: 0,
                        running_task_ids: self.running.keys().chain(self.waiting.keys()).cloned().collect(),
                        running_complete: true,
                    };
                    outbox.send(send(pb::worker_message::Kind::Heartbeat(beat))).await.map_err(|e| e.to_string())?;
                }
            }
        }
    }

    /// Takes a rank's event: a finished or failed rank no longer runs, and
    /// the event is numbered and kept in the outbox until acknowledged.
    fn record(&mut self, event: pb::TaskEvent) -> pb::TaskEvent {
        if matches!(event.kind, Some(pb::task_event::Kind::Finished(_) | pb::task_event::Kind::Failed(_))) {
            self.running.remove(&event.task_id);
            self.waiting.remove(&event.task_id);
        }
        self.outbox.push(event)
    }

    /// Acts on one coordinator message; returns events to send at once.
    fn handle(&mut self, kind: pb::coordinator_message::Kind) -> Vec<pb::TaskEvent> {
        use pb::coordinator_message::Kind;
        match kind {
            Kind::Welcome(_) => Vec::new(),
            Kind::Assign(task) if !task.rendezvous_json.is_empty() => {
                let json = task.rendezvous_json.clone();
                self.start(task, json);
                Vec::new()
            }
            Kind::Assign(task) => self.offer_part(task),
            Kind::Rendezvous(record) => {
                let Some(waiting) = self.waiting.remove(&record.task_id) else { return Vec::new() };
                match with_listen(&record.rendezvous_json, &waiting.listen) {
                    Ok(json) => {
                        self.start(waiting.task, json);
                        Vec::new()
                    }
                    Err(reason) => vec![failed(&waiting.task, reason)],
                }
            }
            Kind::Acked(acked) => {
                self.outbox.ack(&acked.task_id, acked.sequence);
                Vec::new()
            }
            Kind::Cancel(cancel) => {
                self.waiting.remove(&cancel.task_id);
                if let Some((_, stop)) = self.running.remove(&cancel.task_id) {
                    tracing::info!(task_id = %cancel.task_id, reason = %cancel.reason, "cancelling rank");
                    let _ = stop.send(Stop::Kill(cancel.reason));
                }
                Vec::new()
            }
        }
    }

    /// For a rank that needs a rendezvous, by the spec's `resources.backend`:
    /// for the TCP ring (CPU, or `backend: tcp` on GPUs), reserves a port for
    /// its listener and reports it; for NCCL, rank 0 creates the group's unique
    /// id (on a blocking thread; NCCL's bootstrap root then lives in this
    /// agent) and reports it, while the other ranks only wait for the record.
    fn offer_part(&mut self, task: pb::AssignTask) -> Vec<pb::TaskEvent> {
        let nccl = match uses_nccl(&task) {
            Ok(nccl) => nccl,
            Err(reason) => return vec![failed(&task, reason)],
        };
        if nccl {
            let (task_id, rank) = (task.task_id.clone(), task.rank);
            self.waiting.insert(task_id.clone(), Waiting { task, listen: String::new() });
            if rank == 0 {
                let events = self.events_tx.clone();
                tokio::task::spawn_blocking(move || {
                    let kind = match nccl_unique_id() {
                        Ok(hex) => pb::task_event::Kind::RendezvousReady(hex),
                        Err(reason) => pb::task_event::Kind::Failed(reason),
                    };
                    let _ = events.blocking_send(pb::TaskEvent {
                        task_id,
                        rank,
                        sequence: 0,
                        kind: Some(kind),
                        ..Default::default()
                    });
                });
            }
            return Vec::new();
        }
        // The port is free now; the trainer binds it once the record arrives.
        let port = match std::net::TcpListener::bind("0.0.0.0:0").and_then(|l| l.local_addr()) {
            Ok(addr) => addr.port(),
            Err(e) => return vec![failed(&task, format!("no free port for the ring listener: {e}"))],
        };
        let part = format!("{}:{port}", self.config.advertise_host);
        let event = pb::TaskEvent {
            task_id: task.task_id.clone(),
            rank: task.rank,
            sequence: 0,
            kind: Some(pb::task_event::Kind::RendezvousReady(part)),
            ..Default::default()
        };
        self.waiting.insert(task.task_id.clone(), Waiting { task, listen: format!("0.0.0.0:{port}") });
        vec![event]
    }

    fn start(&mut self, task: pb::AssignTask, rendezvous_json: String) {
        let (cancel, cancelled) = oneshot::channel();
        let launch = RankLaunch {
            worker_bin: self.config.worker_bin.clone(),
            scratch: self.config.scratch_dir.join(task.task_id.replace('/', "-")),
            threads: self.config.rank_threads,
            rendezvous_json,
            task,
            roots: self.config.roots.clone(),
        };
        tracing::info!(task_id = %launch.task.task_id, rank = launch.task.rank, stage = launch.task.stage, "starting rank");
        self.running.insert(launch.task.task_id.clone(), (launch.task.rank, cancel));
        while self.ranks.try_join_next().is_some() {}
        self.ranks.spawn(trainer::run_rank(launch, self.events_tx.clone(), cancelled));
    }
}

fn failed(task: &pb::AssignTask, reason: String) -> pb::TaskEvent {
    pb::TaskEvent {
        task_id: task.task_id.clone(),
        rank: task.rank,
        sequence: 0,
        kind: Some(pb::task_event::Kind::Failed(reason)),
        ..Default::default()
    }
}

/// The record with this rank's local listen address filled in.
fn with_listen(json: &str, listen: &str) -> Result<String, String> {
    let mut record: Rendezvous = serde_json::from_str(json).map_err(|e| format!("rendezvous record: {e}"))?;
    if let BackendRendezvous::Tcp { listen: slot, .. } = &mut record.backend {
        *slot = Some(listen.to_owned());
    }
    serde_json::to_string(&record).map_err(|e| format!("rendezvous record: {e}"))
}

/// Resolves on Ctrl-C or SIGTERM (what Kubernetes sends before it kills a pod).
pub async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the agent");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(coordinator: &str, scratch_dir: PathBuf) -> AgentConfig {
        AgentConfig {
            coordinator: coordinator.into(),
            ca_cert: Some(b"-----BEGIN CERTIFICATE-----".to_vec()),
            token: "s3cret-worker-token".into(),
            hostname: "host".into(),
            devices: Vec::new(),
            cpu_cores: 1,
            rank_threads: 1,
            worker_bin: PathBuf::from("scop-worker"),
            scratch_dir,
            advertise_host: "127.0.0.1".into(),
            roots: None,
        }
    }

    #[tokio::test]
    async fn rank_events_reach_the_outbox_file_while_no_coordinator_answers() {
        // A port nothing listens on: every connection attempt is refused, so
        // the agent spends the test between sessions, backing off.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let config = config(&format!("http://{closed}"), scratch.path().to_owned());
        let endpoint = scop_connect::endpoint(&config.coordinator, None).unwrap();
        let bearer = Bearer::new(Some(&config.token)).unwrap();
        let (events_tx, events_rx) = mpsc::channel(16);
        let agent = Agent::new(config, events_tx.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(async move {
            serve(agent, events_rx, &endpoint, bearer, async {
                let _ = stopped.await;
            })
            .await;
        });

        // A rank finishes while the agent is cut off from the coordinator.
        let finished = pb::TaskEvent {
            task_id: "job-1/knockoff/1/rank-0".into(),
            rank: 0,
            kind: Some(pb::task_event::Kind::Finished(pb::TaskFinished::default())),
            ..Default::default()
        };
        events_tx.send(finished).await.unwrap();
        // The event must be on disk before anything else happens: poll the
        // outbox files (the deadline only bounds a failing run).
        let outbox_dir = scratch.path().join("outbox");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while outbox::Outbox::open(&outbox_dir).unacknowledged().is_empty()
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The agent is killed now: only what its outbox file holds survives.
        let _ = stop.send(());
        serving.await.unwrap();
        let kept = outbox::Outbox::open(&outbox_dir).unacknowledged();
        assert_eq!(kept.len(), 1, "the finished event is kept for the next agent: {kept:?}");
        assert_eq!(kept[0].task_id, "job-1/knockoff/1/rank-0");
        assert_eq!(kept[0].sequence, 1);
        assert!(matches!(kept[0].kind, Some(pb::task_event::Kind::Finished(_))));
    }

    #[test]
    fn debug_of_the_config_never_shows_the_token() {
        let config = config("http://127.0.0.1:7071", PathBuf::from("scratch"));
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret-worker-token"), "{shown}");
        assert!(
            shown.contains("token: \"<redacted>\"") && shown.contains("http://127.0.0.1:7071"),
            "{shown}"
        );
    }
}
