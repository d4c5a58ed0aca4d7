//! Conversions between `scop.v1` messages and the coordinator's domain types.
//! The only place that knows both.

use scop_proto::v1 as pb;

use crate::domain::{
    Artifact, Device, EventKind, Job, JobEvent, JobState, Plan, Stage, StateKind, UnitStatistics, Worker,
    WorkerCommand, WorkerHello, WorkerState,
};

pub fn stage(stage: Stage) -> pb::Stage {
    pb::Stage::from(stage)
}

/// A scheduler command as the message on the worker's stream.
pub fn command(command: WorkerCommand) -> pb::CoordinatorMessage {
    use pb::coordinator_message::Kind;
    let json = |record: &scop_core::rendezvous::Rendezvous| serde_json::to_string(record).unwrap_or_default();
    let kind = match command {
        WorkerCommand::Assign(a) => Kind::Assign(pb::AssignTask {
            task_id: a.task_id,
            job_id: a.job_id,
            stage: stage(a.stage) as i32,
            spec_yaml: a.spec_yaml,
            rank: a.rank,
            world_size: a.world_size,
            rendezvous_json: a.rendezvous.as_ref().map(json).unwrap_or_default(),
            resume: a.resume_from.is_some(),
            attempt: a.attempt,
            checkpoint_dir: a.checkpoint_dir.display().to_string(),
            device: Some(pb::Device {
                kind: match a.device {
                    scop_core::spec::DeviceKind::Cpu => "cpu".into(),
                    scop_core::spec::DeviceKind::Cuda => "cuda".into(),
                },
                index: a.device_index,
                name: String::new(),
                memory_bytes: 0,
            }),
            plan_json: a.plan.map(|plan| plan.to_json()).unwrap_or_default(),
        }),
        WorkerCommand::Rendezvous { task_id, record } => {
            Kind::Rendezvous(pb::RendezvousRecord { task_id, rendezvous_json: json(&record) })
        }
        WorkerCommand::Cancel { task_id, reason } => Kind::Cancel(pb::CancelTask { task_id, reason }),
    };
    pb::CoordinatorMessage { kind: Some(kind) }
}

fn stage_or_unspecified(value: Option<Stage>) -> i32 {
    value.map_or(pb::Stage::Unspecified, stage) as i32
}

pub fn job_state(state: JobState) -> pb::JobState {
    match state {
        JobState::Queued => pb::JobState::Queued,
        JobState::Running(_) => pb::JobState::Running,
        JobState::Succeeded => pb::JobState::Succeeded,
        JobState::Failed => pb::JobState::Failed,
        JobState::Cancelled => pb::JobState::Cancelled,
    }
}

/// A `ListJobs` state filter; `None` for "any state".
pub fn state_filter(state: pb::JobState) -> Option<StateKind> {
    match state {
        pb::JobState::Unspecified => None,
        pb::JobState::Queued => Some(StateKind::Queued),
        pb::JobState::Running => Some(StateKind::Running),
        pb::JobState::Succeeded => Some(StateKind::Succeeded),
        pb::JobState::Failed => Some(StateKind::Failed),
        pb::JobState::Cancelled => Some(StateKind::Cancelled),
    }
}

pub fn job(job: Job) -> pb::Job {
    pb::Job {
        id: job.id,
        state: job_state(job.state) as i32,
        stage: stage_or_unspecified(job.stage),
        spec_yaml: job.spec_yaml,
        labels: job.labels.into_iter().collect(),
        priority: job.priority,
        created_at_ms: job.created_at_ms,
        updated_at_ms: job.updated_at_ms,
        error: job.error.unwrap_or_default(),
        request_id: job.request_id.unwrap_or_default(),
        attempt: job.attempt,
        last_sequence: job.last_sequence,
        owner: job.owner,
        queued_reason: String::new(),
        name: job.name,
        parent_id: job.parent_id.unwrap_or_default(),
        candidate: job.candidate,
    }
}

fn artifact(artifact: Artifact) -> pb::Artifact {
    pb::Artifact {
        kind: artifact.kind,
        path: artifact.path,
        size_bytes: artifact.size_bytes,
        stage: pb::Stage::Unspecified as i32,
    }
}

/// A listed artifact, with the stage that wrote it.
pub fn listed_artifact(written_by: Stage, artifact: Artifact) -> pb::Artifact {
    pb::Artifact {
        kind: artifact.kind,
        path: artifact.path,
        size_bytes: artifact.size_bytes,
        stage: stage(written_by) as i32,
    }
}

/// One epoch's score statistics.
pub fn statistics(job_id: String, epoch: u32, units: Vec<UnitStatistics>) -> pb::ScoreStatisticsResponse {
    pb::ScoreStatisticsResponse {
        job_id,
        epoch,
        units: units
            .into_iter()
            .map(|u| pb::UnitStatistics {
                unit: u.unit,
                beta: u.beta,
                gamma_abs: u.gamma_abs,
                score: u.score,
            })
            .collect(),
    }
}

/// An artifact a rank reported.
pub fn artifact_from_pb(artifact: pb::Artifact) -> Artifact {
    Artifact { kind: artifact.kind, path: artifact.path, size_bytes: artifact.size_bytes }
}

pub fn event(event: JobEvent) -> pb::JobEvent {
    use pb::job_event::Kind;
    let kind = match event.kind {
        EventKind::StateChanged { from, to, reason } => Kind::StateChanged(pb::StateChanged {
            from: from.map_or(pb::JobState::Unspecified, job_state) as i32,
            to: job_state(to) as i32,
            stage: stage_or_unspecified(match to {
                JobState::Running(s) => Some(s),
                JobState::Queued | JobState::Succeeded | JobState::Failed | JobState::Cancelled => None,
            }),
            reason: reason.unwrap_or_default(),
        }),
        EventKind::StageStarted { stage: s, attempt, world_size } => {
            Kind::StageStarted(pb::StageStarted { stage: stage(s) as i32, attempt, world_size })
        }
        EventKind::StageFinished { stage: s, attempt, seconds, metrics } => {
            Kind::StageFinished(pb::StageFinished {
                stage: stage(s) as i32,
                seconds,
                attempt,
                metrics: metrics.into_iter().collect(),
            })
        }
        EventKind::Progress(p) => Kind::Progress(pb::Progress {
            stage: stage(p.stage) as i32,
            epoch: p.epoch,
            epochs: p.epochs,
            step: p.step,
            steps: p.steps,
            loss: p.loss,
            accuracy: p.accuracy,
            samples_per_second: p.samples_per_second,
            eta_seconds: p.eta_seconds,
        }),
        EventKind::ScoreStatisticsReceived { stage: s, epoch, units } => {
            Kind::StatisticsReceived(pb::ScoreStatisticsReceived { stage: stage(s) as i32, epoch, units })
        }
        EventKind::PlanDecided { units, channels_before, channels_after } => {
            Kind::PlanDecided(pb::PlanDecided { units, channels_before, channels_after })
        }
        EventKind::ArtifactsReady { stage: s, artifacts } => Kind::ArtifactsReady(pb::ArtifactsReady {
            stage: stage(s) as i32,
            artifacts: artifacts.into_iter().map(artifact).collect(),
        }),
        EventKind::Error { stage: s, attempt, message, retrying } => {
            Kind::Error(pb::JobError { stage: stage_or_unspecified(s), attempt, message, retrying })
        }
        EventKind::Evaluated { stage: s, epoch, loss, top1, top5 } => {
            Kind::Evaluated(pb::Evaluated { stage: stage(s) as i32, epoch, loss, top1, top5 })
        }
        EventKind::Notice { stage: s, attempt, message } => {
            Kind::Notice(pb::JobNotice { stage: stage(s) as i32, attempt, message })
        }
    };
    pb::JobEvent { job_id: event.job_id, sequence: event.sequence, time_ms: event.time_ms, kind: Some(kind) }
}

pub fn plan(plan: Plan) -> pb::Plan {
    let (channels_before, channels_after) = (plan.channels_before(), plan.channels_after());
    let totals = plan.totals.unwrap_or_default();
    pb::Plan {
        job_id: plan.job_id,
        decided_at_ms: plan.decided_at_ms,
        policy: plan.policy,
        criterion: plan.criterion,
        rate: plan.rate,
        statistics_epoch: plan.statistics_epoch,
        units: plan
            .units
            .into_iter()
            .map(|u| pb::PlanUnit {
                unit: u.unit,
                channels_before: u.channels_before,
                channels_after: u.channels_after,
                score: Some(pb::ScoreSummary {
                    min: u.score.min,
                    mean: u.score.mean,
                    max: u.score.max,
                    kept_min: u.score.kept_min,
                    pruned_max: u.score.pruned_max,
                    median: u.score.median,
                }),
            })
            .collect(),
        channels_before,
        channels_after,
        params_before: totals.params_before,
        params_after: totals.params_after,
        flops_before: totals.flops_before,
        flops_after: totals.flops_after,
        input_size: totals.input_size,
        groups: plan
            .groups
            .into_iter()
            .map(|g| pb::PlanGroup {
                writer: g.writer,
                channels_before: g.channels_before,
                channels_after: g.channels_after,
                members: g.members,
            })
            .collect(),
        residual: plan.residual,
        round_to: plan.round_to,
    }
}

pub fn worker(worker: Worker) -> pb::Worker {
    let (slots_total, slots_free) = (worker.slots_total(), worker.slots_free());
    let state = match worker.state {
        WorkerState::Connected => pb::WorkerState::Connected,
        WorkerState::Disconnected => pb::WorkerState::Disconnected,
        WorkerState::Lost => pb::WorkerState::Lost,
    };
    pb::Worker {
        id: worker.id,
        hostname: worker.hostname,
        agent_version: worker.agent_version,
        state: state as i32,
        devices: worker
            .devices
            .into_iter()
            .map(|d| pb::Device { kind: d.kind, index: d.index, name: d.name, memory_bytes: d.memory_bytes })
            .collect(),
        cpu_cores: worker.cpu_cores,
        slots_total,
        slots_busy: worker.slots_busy,
        slots_free,
        connected_at_ms: worker.connected_at_ms,
        last_seen_ms: worker.last_seen_ms,
        drained: worker.drained,
    }
}

pub fn hello(hello: pb::Hello) -> WorkerHello {
    WorkerHello {
        worker_id: Some(hello.worker_id).filter(|id| !id.is_empty()),
        hostname: hello.hostname,
        agent_version: hello.agent_version,
        devices: hello
            .devices
            .into_iter()
            .map(|d| Device { kind: d.kind, index: d.index, name: d.name, memory_bytes: d.memory_bytes })
            .collect(),
        cpu_cores: hello.cpu_cores,
    }
}
