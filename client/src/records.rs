//! What `-o json` and `-o yaml` print: plain records made from the `scop.v1`
//! messages, with states and stages by name. Their field names are part of
//! `scopctl`'s interface; they only grow.

use std::collections::BTreeMap;

use scop_core::stage::Stage;
use scop_proto::v1 as pb;
use serde::{Deserialize, Serialize};

/// The name of a job state, as the CLI prints and accepts it.
pub fn state_name(state: pb::JobState) -> &'static str {
    match state {
        pb::JobState::Unspecified => "unknown",
        pb::JobState::Queued => "queued",
        pb::JobState::Running => "running",
        pb::JobState::Succeeded => "succeeded",
        pb::JobState::Failed => "failed",
        pb::JobState::Cancelled => "cancelled",
    }
}

/// The name of a stage; `None` for no stage.
pub fn stage_name(stage: pb::Stage) -> Option<&'static str> {
    stage.domain().map(Stage::as_str)
}

/// A job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: String,
    /// The spec's `name`, if it has one.
    pub name: Option<String>,
    pub state: String,
    /// The stage running now, or the last one that ran.
    pub stage: Option<String>,
    pub attempt: u32,
    pub priority: i32,
    pub labels: BTreeMap<String, String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// Why it failed or was cancelled.
    pub error: Option<String>,
    pub request_id: Option<String>,
    pub last_sequence: u64,
    /// The user who submitted it; empty for jobs from before users existed.
    #[serde(default)]
    pub owner: String,
    /// Why a queued job waits, when no registered capacity can hold it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_reason: Option<String>,
    /// Empty in listings (summaries); `get job` has it.
    pub spec_yaml: String,
    /// For a branch of a sweep: the sweep job and the branch's candidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
    /// For a sweep, in `get job`: every candidate and how its branch went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidates: Option<Vec<crate::sweep::CandidateRecord>>,
}

impl From<&pb::Job> for JobRecord {
    fn from(job: &pb::Job) -> Self {
        let name = Some(job.name.clone())
            .filter(|n| !n.is_empty())
            .or_else(|| scop_core::spec::JobSpec::from_yaml(&job.spec_yaml).ok().and_then(|s| s.name));
        JobRecord {
            id: job.id.clone(),
            name,
            state: state_name(job.state()).to_owned(),
            stage: stage_name(job.stage()).map(str::to_owned),
            attempt: job.attempt,
            priority: job.priority,
            labels: job.labels.clone().into_iter().collect(),
            created_at_ms: job.created_at_ms,
            updated_at_ms: job.updated_at_ms,
            error: Some(job.error.clone()).filter(|e| !e.is_empty()),
            request_id: Some(job.request_id.clone()).filter(|r| !r.is_empty()),
            last_sequence: job.last_sequence,
            owner: job.owner.clone(),
            queued_reason: Some(job.queued_reason.clone()).filter(|r| !r.is_empty()),
            spec_yaml: job.spec_yaml.clone(),
            parent_id: Some(job.parent_id.clone()).filter(|p| !p.is_empty()),
            candidate: Some(job.candidate.clone()).filter(|c| !c.is_empty()),
            candidates: None,
        }
    }
}

/// `scopctl whoami`: the caller and its limits (`None`: unlimited).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WhoamiRecord {
    pub user: String,
    pub role: String,
    pub max_queued_jobs: Option<u32>,
    pub max_running_jobs: Option<u32>,
    pub max_rank_slots: Option<u32>,
    pub max_priority: Option<i32>,
}

impl From<&pb::WhoAmIResponse> for WhoamiRecord {
    fn from(me: &pb::WhoAmIResponse) -> Self {
        let limit = |n: u32| Some(n).filter(|n| *n > 0);
        WhoamiRecord {
            user: me.user.clone(),
            role: me.role.clone(),
            max_queued_jobs: limit(me.max_queued_jobs),
            max_running_jobs: limit(me.max_running_jobs),
            max_rank_slots: limit(me.max_rank_slots),
            max_priority: Some(me.max_priority).filter(|p| *p < i32::MAX),
        }
    }
}

/// A pruning plan, with per-unit kept fractions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRecord {
    pub job_id: String,
    pub policy: String,
    /// The `prune.criterion` the channels were scored by (`scop` for plans
    /// stored before criteria existed).
    pub criterion: String,
    pub rate: f64,
    pub statistics_epoch: u32,
    pub decided_at_ms: i64,
    pub units: Vec<PlanUnitRecord>,
    pub channels_before: u64,
    pub channels_after: u64,
    pub params_before: u64,
    pub params_after: u64,
    pub flops_before: u64,
    pub flops_after: u64,
    pub input_size: u32,
    /// `scatter`, `keep` or `group`; empty when the coordinator did not record it.
    pub residual: String,
    /// Pruned widths are multiples of this (1: not rounded; 0: not recorded).
    pub round_to: u32,
    /// With `residual: group`: each residual stream pruned as one group.
    pub groups: Vec<PlanGroupRecord>,
}

/// One residual stream of a plan, pruned as a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanGroupRecord {
    /// The conv that writes the stream.
    pub writer: String,
    pub channels_before: u32,
    pub channels_after: u32,
    /// The units that add into the stream.
    pub members: Vec<String>,
}

/// One unit of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanUnitRecord {
    pub unit: String,
    pub channels_before: u32,
    pub channels_after: u32,
    /// `channels_after / channels_before`, in [0, 1].
    pub kept: f64,
    pub score_min: f64,
    /// Absent for plans decided before the median was recorded.
    pub score_median: Option<f64>,
    pub score_mean: f64,
    pub score_max: f64,
    pub kept_score_min: f64,
    pub pruned_score_max: Option<f64>,
}

impl PlanRecord {
    /// Where the scores came from, for a sentence: `the knockoff statistics of
    /// epoch 20` (SCOP), `the l1 scores` (any other criterion).
    pub fn scored_by(&self) -> String {
        if self.criterion == "scop" {
            format!("the knockoff statistics of epoch {}", self.statistics_epoch)
        } else {
            format!("the {} scores", self.criterion)
        }
    }
}

impl From<&pb::Plan> for PlanRecord {
    fn from(plan: &pb::Plan) -> Self {
        let units = plan
            .units
            .iter()
            .map(|u| {
                let score = u.score.unwrap_or_default();
                PlanUnitRecord {
                    unit: u.unit.clone(),
                    channels_before: u.channels_before,
                    channels_after: u.channels_after,
                    kept: f64::from(u.channels_after) / f64::from(u.channels_before.max(1)),
                    score_min: score.min,
                    score_median: score.median,
                    score_mean: score.mean,
                    score_max: score.max,
                    kept_score_min: score.kept_min,
                    pruned_score_max: score.pruned_max,
                }
            })
            .collect();
        PlanRecord {
            job_id: plan.job_id.clone(),
            policy: plan.policy.clone(),
            criterion: if plan.criterion.is_empty() { "scop".to_owned() } else { plan.criterion.clone() },
            rate: plan.rate,
            statistics_epoch: plan.statistics_epoch,
            decided_at_ms: plan.decided_at_ms,
            units,
            channels_before: plan.channels_before,
            channels_after: plan.channels_after,
            params_before: plan.params_before,
            params_after: plan.params_after,
            flops_before: plan.flops_before,
            flops_after: plan.flops_after,
            input_size: plan.input_size,
            residual: plan.residual.clone(),
            round_to: plan.round_to,
            groups: plan
                .groups
                .iter()
                .map(|g| PlanGroupRecord {
                    writer: g.writer.clone(),
                    channels_before: g.channels_before,
                    channels_after: g.channels_after,
                    members: g.members.clone(),
                })
                .collect(),
        }
    }
}

/// A worker agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerRecord {
    pub id: String,
    pub hostname: String,
    pub state: String,
    pub agent_version: String,
    /// `kind:index name` of every device, e.g. `cuda:0 NVIDIA H200`, or `cpu:0` for a CPU slot.
    pub devices: Vec<String>,
    pub cpu_cores: u32,
    pub slots_total: u32,
    pub slots_busy: u32,
    pub slots_free: u32,
    /// An admin drained it: no new ranks go to it.
    pub drained: bool,
    pub last_seen_ms: i64,
}

impl From<&pb::Worker> for WorkerRecord {
    fn from(worker: &pb::Worker) -> Self {
        let state = match worker.state() {
            pb::WorkerState::Unspecified => "unknown",
            pb::WorkerState::Connected => "connected",
            pb::WorkerState::Disconnected => "disconnected",
            pb::WorkerState::Lost => "lost",
        };
        WorkerRecord {
            id: worker.id.clone(),
            hostname: worker.hostname.clone(),
            state: state.to_owned(),
            agent_version: worker.agent_version.clone(),
            devices: worker.devices.iter().map(device_label).collect(),
            cpu_cores: worker.cpu_cores,
            slots_total: worker.slots_total,
            slots_busy: worker.slots_busy,
            slots_free: worker.slots_free,
            drained: worker.drained,
            last_seen_ms: worker.last_seen_ms,
        }
    }
}

/// One file of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    pub kind: String,
    /// Relative to the job's directory; what `--download` fetches.
    pub path: String,
    pub size_bytes: u64,
    pub stage: Option<String>,
    /// Where the coordinator keeps it (readable where that directory is shared).
    pub location: String,
}

/// A job's files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactsRecord {
    pub job_id: String,
    pub job_dir: String,
    pub artifacts: Vec<ArtifactRecord>,
}

impl ArtifactsRecord {
    pub fn new(job_id: &str, listed: &pb::ListArtifactsResponse) -> Self {
        let artifacts = listed
            .artifacts
            .iter()
            .map(|a| ArtifactRecord {
                kind: a.kind.clone(),
                path: a.path.clone(),
                size_bytes: a.size_bytes,
                stage: stage_name(a.stage()).map(str::to_owned),
                location: location(&listed.job_dir, &a.path),
            })
            .collect();
        ArtifactsRecord { job_id: job_id.to_owned(), job_dir: listed.job_dir.clone(), artifacts }
    }
}

/// `job_dir/path`, unless `path` is already absolute.
fn location(job_dir: &str, path: &str) -> String {
    if path.starts_with('/') || job_dir.is_empty() {
        path.to_owned()
    } else {
        format!("{}/{path}", job_dir.trim_end_matches('/'))
    }
}

/// One event as a JSON object, for `watch -o json`: `sequence`, `time_ms`,
/// `kind` (the oneof case in snake_case, e.g. `stage_finished`), then the
/// case's fields with states and stages by name.
pub fn event_json(event: &pb::JobEvent) -> serde_json::Value {
    use pb::job_event::Kind;
    use serde_json::json;
    let stage = |s: pb::Stage| stage_name(s);
    let (kind, fields) = match &event.kind {
        None => ("unknown", json!({})),
        Some(Kind::StateChanged(c)) => (
            "state_changed",
            json!({ "from": state_name(c.from()), "to": state_name(c.to()), "stage": stage(c.stage()), "reason": c.reason }),
        ),
        Some(Kind::StageStarted(s)) => (
            "stage_started",
            json!({ "stage": stage(s.stage()), "attempt": s.attempt, "world_size": s.world_size }),
        ),
        Some(Kind::StageFinished(f)) => (
            "stage_finished",
            json!({ "stage": stage(f.stage()), "attempt": f.attempt, "seconds": f.seconds,
                    "metrics": f.metrics.iter().collect::<BTreeMap<_, _>>() }),
        ),
        Some(Kind::Progress(p)) => (
            "progress",
            json!({ "stage": stage(p.stage()), "epoch": p.epoch, "epochs": p.epochs, "step": p.step, "steps": p.steps,
                    "loss": p.loss, "accuracy": p.accuracy, "samples_per_second": p.samples_per_second,
                    "eta_seconds": p.eta_seconds }),
        ),
        Some(Kind::Evaluated(e)) => (
            "evaluated",
            json!({ "stage": stage(e.stage()), "epoch": e.epoch, "loss": e.loss, "top1": e.top1, "top5": e.top5 }),
        ),
        Some(Kind::StatisticsReceived(s)) => {
            ("statistics_received", json!({ "stage": stage(s.stage()), "epoch": s.epoch, "units": s.units }))
        }
        Some(Kind::PlanDecided(p)) => (
            "plan_decided",
            json!({ "units": p.units, "channels_before": p.channels_before, "channels_after": p.channels_after }),
        ),
        Some(Kind::ArtifactsReady(a)) => (
            "artifacts_ready",
            json!({ "stage": stage(a.stage()),
                    "artifacts": a.artifacts.iter().map(|f| json!({ "kind": f.kind, "path": f.path, "size_bytes": f.size_bytes })).collect::<Vec<_>>() }),
        ),
        Some(Kind::Error(e)) => (
            "error",
            json!({ "stage": stage(e.stage()), "attempt": e.attempt, "message": e.message, "retrying": e.retrying }),
        ),
        Some(Kind::Notice(n)) => {
            ("notice", json!({ "stage": stage(n.stage()), "attempt": n.attempt, "message": n.message }))
        }
    };
    let mut object =
        json!({ "type": "event", "sequence": event.sequence, "time_ms": event.time_ms, "kind": kind });
    if let (Some(object), serde_json::Value::Object(fields)) = (object.as_object_mut(), fields) {
        object.extend(fields);
    }
    object
}

/// `cuda:0 NVIDIA H200`; a CPU slot, whose name only repeats its kind, is `cpu:0`.
fn device_label(d: &pb::Device) -> String {
    if d.name.is_empty() || d.name == d.kind {
        format!("{}:{}", d.kind, d.index)
    } else {
        format!("{}:{} {}", d.kind, d.index, d.name)
    }
}
