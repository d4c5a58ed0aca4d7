//! The internal `WorkerService`: one `Connect` stream per worker agent.
//!
//! Hello registers the worker and is answered with Welcome; heartbeats keep it
//! alive; task events of known tasks are recorded (progress, checkpoints,
//! score statistics), and what moves a job on (a rank's finish or failure,
//! rendezvous parts, ranks still alive after a reconnect) is forwarded to the
//! scheduler, which sends assignments back through [`WorkerLinks`].

use std::time::Duration;

use scop_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::convert;
use crate::domain::{EventKind, Progress, UnitStatistics, WorkerCommand};
use crate::error::{Error, Result};
use crate::liveness::Heard;
use crate::metrics::Metrics;
use crate::scheduler::links::CommandSink;
use crate::scheduler::{RankReport, Wake, WorkerLinks};
use crate::shutdown::Shutdown;
use crate::store::{Applied, Store, TaskEffect};

/// How long a new stream may take to send its Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Coordinator messages buffered per worker.
const OUTBOX: usize = 32;

/// The handler of the worker port.
#[derive(Debug, Clone)]
pub struct WorkerApi {
    link: Link,
    shutdown: Shutdown,
    heartbeat_interval_ms: u32,
}

/// What a worker session talks to besides its stream.
#[derive(Debug, Clone)]
pub struct Link {
    pub store: Store,
    /// Where the scheduler finds each worker's stream.
    pub links: WorkerLinks,
    /// Rank reports that move jobs on, for the scheduler.
    pub reports: mpsc::Sender<RankReport>,
    pub metrics: std::sync::Arc<Metrics>,
    /// Told when a worker's stream attaches or ends.
    pub scheduler: Wake,
    /// When each worker was last heard from (the sweep writes it to the store).
    pub heard: Heard,
}

impl WorkerApi {
    pub fn new(link: Link, shutdown: Shutdown, heartbeat_interval_ms: u32) -> Self {
        Self { link, shutdown, heartbeat_interval_ms }
    }
}

#[tonic::async_trait]
impl pb::worker_service_server::WorkerService for WorkerApi {
    type ConnectStream = ReceiverStream<Result<pb::CoordinatorMessage, Status>>;

    async fn connect(
        &self,
        request: Request<Streaming<pb::WorkerMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no Hello within 10 s of connecting"))??;
        let hello = match first {
            Some(pb::WorkerMessage { kind: Some(pb::worker_message::Kind::Hello(hello)) }) => hello,
            _ => return Err(invalid("kind", "the first message on a stream must be Hello").into()),
        };
        check_hello(&hello)?;
        let running: Vec<String> = hello.running.iter().map(|r| r.task_id.clone()).collect();
        let worker = self.link.store.register_worker(convert::hello(hello)).await?;
        tracing::info!(worker_id = %worker.id, hostname = %worker.hostname, slots = worker.slots_total(), "worker connected");
        let (outbox, receiver) = mpsc::channel(OUTBOX);
        let welcome =
            pb::Welcome { worker_id: worker.id.clone(), heartbeat_interval_ms: self.heartbeat_interval_ms };
        outbox
            .send(Ok(pb::CoordinatorMessage { kind: Some(pb::coordinator_message::Kind::Welcome(welcome)) }))
            .await
            .map_err(|_| Status::cancelled("the worker left before Welcome"))?;
        let generation = self.link.links.attach(&worker.id, std::sync::Arc::new(StreamSink(outbox.clone())));
        self.link.scheduler.wake();
        if !running.is_empty() {
            let _ = self.link.reports.send(RankReport::Alive { task_ids: running }).await;
        }
        tokio::spawn(session(
            self.link.clone(),
            worker.id,
            generation,
            inbound,
            outbox,
            self.shutdown.clone(),
        ));
        Ok(Response::new(ReceiverStream::new(receiver)))
    }
}

/// A worker stream's sending half as the scheduler sees it: its commands are
/// converted to `scop.v1` here, at the edge.
#[derive(Debug)]
struct StreamSink(mpsc::Sender<Result<pb::CoordinatorMessage, Status>>);

impl CommandSink for StreamSink {
    fn offer(&self, command: WorkerCommand) -> bool {
        self.0.try_send(Ok(convert::command(command))).is_ok()
    }
}

fn invalid(field: &str, message: &str) -> Error {
    Error::InvalidArgument { field: format!("hello.{field}"), message: message.to_owned() }
}

fn check_hello(hello: &pb::Hello) -> Result<()> {
    if hello.hostname.is_empty() {
        return Err(invalid("hostname", "must not be empty"));
    }
    if hello.devices.is_empty() {
        return Err(invalid("devices", "must list at least one device (a CPU slot counts)"));
    }
    for (i, device) in hello.devices.iter().enumerate() {
        if device.kind != "cpu" && device.kind != "cuda" {
            return Err(Error::InvalidArgument {
                field: format!("hello.devices[{i}].kind"),
                message: format!("must be \"cpu\" or \"cuda\", got {:?}", device.kind),
            });
        }
    }
    Ok(())
}

/// Reads a worker's messages until its stream ends or the coordinator shuts down.
async fn session(
    link: Link,
    worker_id: String,
    generation: u64,
    mut inbound: Streaming<pb::WorkerMessage>,
    outbox: mpsc::Sender<Result<pb::CoordinatorMessage, Status>>,
    mut shutdown: Shutdown,
) {
    loop {
        let message = tokio::select! {
            message = inbound.message() => message,
            () = shutdown.wait() => {
                let _ = outbox.send(Err(Status::unavailable("the coordinator is shutting down; reconnect"))).await;
                break;
            }
        };
        let kind = match message {
            Ok(Some(pb::WorkerMessage { kind: Some(kind) })) => kind,
            Ok(Some(pb::WorkerMessage { kind: None })) => continue,
            Ok(None) => break,
            Err(status) => {
                tracing::warn!(%worker_id, %status, "worker stream broke");
                break;
            }
        };
        // Alive from the moment its message arrived until it has been handled,
        // however long the store or the scheduler makes that take.
        let _busy = link.heard.busy(&worker_id);
        let handled = match kind {
            pb::worker_message::Kind::Heartbeat(beat) => {
                if beat.running_complete {
                    let report =
                        RankReport::Running { worker_id: worker_id.clone(), task_ids: beat.running_task_ids };
                    if link.reports.send(report).await.is_err() {
                        tracing::warn!("the scheduler has stopped; heartbeat not reconciled");
                    }
                }
                Ok(())
            }
            pb::worker_message::Kind::Hello(_) => {
                tracing::warn!(%worker_id, "ignoring a second Hello on one stream");
                Ok(())
            }
            pb::worker_message::Kind::TaskEvent(event) => {
                match record_task_event(&link, &worker_id, event, &outbox).await {
                    Err(Error::AttemptNotFound(task_id)) => {
                        tracing::warn!(%worker_id, %task_id, "event for an unknown task dropped");
                        Ok(())
                    }
                    Err(gap @ Error::EventGap { .. }) => {
                        tracing::warn!(%worker_id, error = %gap, "ending the stream to have the events sent again");
                        let _ = outbox.send(Err(gap.into())).await;
                        break;
                    }
                    Err(denied @ Error::NotPlacedHere { .. }) => {
                        // The token is valid but the worker speaks for a rank it
                        // does not run: refuse, record who tried, and end the stream.
                        if let Error::NotPlacedHere { worker_id, task_id, placed_on } = &denied {
                            tracing::warn!(%worker_id, %task_id, %placed_on, "report for a rank placed elsewhere refused");
                            let user = format!("worker {worker_id}");
                            let detail = format!("report for a rank placed on {placed_on} refused");
                            if let Err(error) =
                                link.store.audit(&user, "report_refused", task_id, detail).await
                            {
                                tracing::warn!(%worker_id, %error, "refused report not written to the audit log");
                            }
                        }
                        let _ = outbox.send(Err(denied.into())).await;
                        break;
                    }
                    other => other,
                }
            }
        };
        if let Err(error) = handled {
            tracing::warn!(%worker_id, %error, "worker message not recorded");
        }
    }
    // A stream replaced by the worker's reconnect leaves the new one's liveness alone.
    if link.links.detach(&worker_id, generation) {
        link.heard.forget(&worker_id);
        if let Err(error) = link.store.disconnect_worker(&worker_id).await {
            tracing::warn!(%worker_id, %error, "could not mark the worker disconnected");
        }
    }
    link.scheduler.wake();
    tracing::info!(%worker_id, "worker disconnected");
}

/// Stores what a rank reported about its task (a numbered event exactly
/// once), forwards to the scheduler what it acts on, and acknowledges a
/// numbered event once it is applied. A numbered event after a gap (an
/// earlier one failed to apply) is refused with UNAVAILABLE, which ends the
/// stream: the agent reconnects and sends again from its oldest unacknowledged event.
async fn record_task_event(
    link: &Link,
    worker_id: &str,
    event: pb::TaskEvent,
    outbox: &mpsc::Sender<Result<pb::CoordinatorMessage, Status>>,
) -> Result<()> {
    use pb::task_event::Kind;
    let store = &link.store;
    let sequence = event.sequence;
    let ack = |task_id: String| {
        if sequence > 0 {
            // Cumulative: a full outbox only delays it until the next event's ack.
            let acked = pb::EventsAcked { task_id, sequence };
            let message = pb::CoordinatorMessage { kind: Some(pb::coordinator_message::Kind::Acked(acked)) };
            let _ = outbox.try_send(Ok(message));
        }
    };
    let (attempt, rank) = match store.attempt_for_task(&event.task_id).await {
        Ok(found) => found,
        Err(Error::AttemptNotFound(task_id)) => {
            // Never applicable: acknowledged, so the agent stops sending it.
            ack(task_id.clone());
            return Err(Error::AttemptNotFound(task_id));
        }
        Err(error) => return Err(error),
    };
    // Only the worker a rank is placed on speaks for it.
    let placed_on = attempt.ranks.iter().find(|r| r.rank == rank).map(|r| r.worker_id.as_str());
    if placed_on != Some(worker_id) {
        return Err(Error::NotPlacedHere {
            worker_id: worker_id.to_owned(),
            task_id: event.task_id,
            placed_on: placed_on.unwrap_or("no worker").to_owned(),
        });
    }
    let task_id = event.task_id.clone();
    let mut report = None;
    let effect = match event.kind {
        Some(Kind::Progress(p)) if rank == 0 => {
            // The ETA is the trainer's, carried as it is.
            let progress = Progress {
                stage: attempt.stage,
                epoch: p.epoch,
                epochs: p.epochs,
                step: p.step,
                steps: p.steps,
                loss: p.loss,
                accuracy: p.accuracy,
                samples_per_second: p.samples_per_second,
                eta_seconds: p.eta_seconds,
            };
            link.metrics.observe_progress(&attempt.job_id, &progress, p.step_seconds, p.allreduce_seconds);
            TaskEffect::Event { job_id: attempt.job_id.clone(), kind: EventKind::Progress(progress) }
        }
        Some(Kind::Evaluated(e)) if rank == 0 => {
            let kind = EventKind::Evaluated {
                stage: attempt.stage,
                epoch: e.epoch,
                loss: e.loss,
                top1: e.top1,
                top5: e.top5,
            };
            TaskEffect::Event { job_id: attempt.job_id.clone(), kind }
        }
        Some(Kind::Statistics(stats)) => {
            let units = stats
                .units
                .into_iter()
                .map(|u| UnitStatistics {
                    unit: u.unit,
                    beta: u.beta,
                    gamma_abs: u.gamma_abs,
                    score: u.score,
                })
                .collect();
            TaskEffect::Statistics {
                job_id: attempt.job_id.clone(),
                attempt_id: attempt.id.clone(),
                stage: attempt.stage,
                epoch: stats.epoch,
                units,
            }
        }
        Some(Kind::CheckpointWritten(path)) => {
            TaskEffect::Checkpoint { attempt_id: attempt.id.clone(), path }
        }
        Some(Kind::RendezvousReady(part)) => {
            report = Some(RankReport::RendezvousPart { task_id: task_id.clone(), part });
            TaskEffect::Counted
        }
        Some(Kind::Finished(finished)) => {
            tracing::info!(%task_id, rank, "rank finished");
            let metrics = finished.metrics.into_iter().collect();
            let artifacts = finished.artifacts.into_iter().map(convert::artifact_from_pb).collect();
            report = Some(RankReport::Finished { task_id: task_id.clone(), metrics, artifacts });
            TaskEffect::Counted
        }
        Some(Kind::Failed(reason)) => {
            let permanent = event.permanent;
            tracing::warn!(%task_id, rank, %reason, permanent, "rank failed");
            report = Some(RankReport::Failed { task_id: task_id.clone(), reason, permanent });
            TaskEffect::Counted
        }
        Some(Kind::CheckpointFallback(message)) if rank == 0 => {
            tracing::warn!(%task_id, %message, "a rank skipped damaged checkpoints");
            let kind = EventKind::Notice { stage: attempt.stage, attempt: attempt.number, message };
            TaskEffect::Event { job_id: attempt.job_id.clone(), kind }
        }
        Some(Kind::Progress(_) | Kind::Evaluated(_) | Kind::CheckpointFallback(_)) | None => {
            TaskEffect::Counted
        }
    };
    match store.apply_task_event(&task_id, sequence, effect).await? {
        Applied::Now(_) => {
            if let Some(report) = report
                && link.reports.send(report).await.is_err()
            {
                tracing::warn!("the scheduler has stopped; rank report dropped");
            }
        }
        Applied::Repeat => tracing::debug!(%task_id, sequence, "repeated task event skipped"),
        Applied::Gap { expected } => {
            return Err(Error::EventGap { task_id, expected, got: sequence });
        }
    }
    ack(task_id);
    Ok(())
}
