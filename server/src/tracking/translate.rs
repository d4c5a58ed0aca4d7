//! What a job's run holds, worked out from the job, its events and its plan:
//! the spec as flattened parameters, per-epoch metrics per stage, the plan's
//! totals, the final figures, the tags and the JSON report. Pure: no I/O.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use crate::domain::{EventKind, Job, JobEvent, JobState, Plan, Stage};

/// Longest parameter value sent; MLflow servers refuse longer ones (older
/// releases at 500 characters), so a longer value is cut and marked.
pub const PARAM_CHARS: usize = 500;

/// One metric point.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub key: String,
    pub value: f64,
    pub timestamp_ms: i64,
    pub step: i64,
}

/// Metrics, parameters and tags to log in one go.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    pub metrics: Vec<Metric>,
    pub params: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty() && self.params.is_empty() && self.tags.is_empty()
    }

    /// Adds a point, unless its value is not finite (JSON has no NaN).
    pub fn metric(&mut self, key: String, value: f64, timestamp_ms: i64, step: i64) {
        if value.is_finite() {
            self.metrics.push(Metric { key, value, timestamp_ms, step });
        }
    }

    pub fn tag(&mut self, key: &str, value: impl Into<String>) {
        self.tags.push((key.to_owned(), value.into()));
    }
}

/// What an event asks for beyond its metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// The plan was decided: log its totals.
    PlanDecided,
    /// The job ended: end the run with this state.
    Ended(JobState),
}

/// Turns a job's events, in order, into metric points. Training throughput
/// arrives many times an epoch; it is averaged per epoch and logged with the
/// epoch's evaluation, so every per-epoch series has one point per epoch.
#[derive(Debug, Default)]
pub struct Translator {
    /// (stage, epoch) → (sum of samples/s, sum of training loss, reports).
    window: HashMap<(Stage, u32), (f64, f64, u32)>,
}

impl Translator {
    /// Adds `event`'s points to `batch`.
    pub fn add(&mut self, event: &JobEvent, batch: &mut Batch) -> Option<Follow> {
        let at = event.time_ms;
        match &event.kind {
            EventKind::Progress(p) => {
                let slot = self.window.entry((p.stage, p.epoch)).or_default();
                *slot = (slot.0 + p.samples_per_second, slot.1 + p.loss, slot.2 + 1);
                None
            }
            EventKind::Evaluated { stage, epoch, loss, top1, top5 } => {
                let step = i64::from(*epoch);
                batch.metric(format!("{stage}/loss"), *loss, at, step);
                batch.metric(format!("{stage}/top1"), *top1, at, step);
                batch.metric(format!("{stage}/top5"), *top5, at, step);
                if let Some((speed, loss, n)) = self.window.remove(&(*stage, *epoch)) {
                    let n = f64::from(n.max(1));
                    batch.metric(format!("{stage}/samples_per_second"), speed / n, at, step);
                    batch.metric(format!("{stage}/train_loss"), loss / n, at, step);
                }
                None
            }
            EventKind::StageFinished { stage, attempt, seconds, metrics } => {
                batch.metric(format!("{stage}/seconds"), *seconds, at, i64::from(*attempt));
                if *stage == Stage::Export {
                    for (key, value) in metrics.iter().filter(|(k, _)| k.as_str() != "seconds") {
                        batch.metric(format!("final/{key}"), *value, at, 0);
                    }
                }
                None
            }
            EventKind::StateChanged { to, .. } => {
                batch.tag("scop.state", state_tag(*to));
                to.is_terminal().then_some(Follow::Ended(*to))
            }
            EventKind::PlanDecided { .. } => Some(Follow::PlanDecided),
            EventKind::StageStarted { .. }
            | EventKind::ScoreStatisticsReceived { .. }
            | EventKind::ArtifactsReady { .. }
            | EventKind::Error { .. }
            | EventKind::Notice { .. } => None,
        }
    }
}

/// The `scop.state` tag: the state, with its stage while running.
pub fn state_tag(state: JobState) -> String {
    match state {
        JobState::Running(stage) => format!("running:{stage}"),
        other => other.name().to_owned(),
    }
}

/// MLflow's run status for a job's terminal state.
pub fn run_status(state: JobState) -> &'static str {
    match state {
        JobState::Succeeded => "FINISHED",
        JobState::Failed => "FAILED",
        JobState::Cancelled => "KILLED",
        JobState::Queued | JobState::Running(_) => "RUNNING",
    }
}

/// The plan's size before and after, as metrics.
pub fn plan_metrics(plan: &Plan, batch: &mut Batch) {
    let at = plan.decided_at_ms;
    batch.metric("plan/channels_before".into(), plan.channels_before() as f64, at, 0);
    batch.metric("plan/channels_after".into(), plan.channels_after() as f64, at, 0);
    batch.metric("plan/rate".into(), plan.rate, at, 0);
    if let Some(totals) = &plan.totals {
        for (key, value) in [
            ("params_before", totals.params_before),
            ("params_after", totals.params_after),
            ("flops_before", totals.flops_before),
            ("flops_after", totals.flops_after),
        ] {
            batch.metric(format!("plan/{key}"), value as f64, at, 0);
        }
    }
}

/// The tags a run is created with.
pub fn job_tags(job: &Job) -> Vec<(String, String)> {
    let mut tags = vec![
        ("scop.job_id".to_owned(), job.id.clone()),
        ("scop.owner".to_owned(), job.owner.clone()),
        ("scop.state".to_owned(), state_tag(job.state)),
        ("mlflow.user".to_owned(), job.owner.clone()),
        ("mlflow.source.name".to_owned(), "scopd".to_owned()),
    ];
    if let Some(sweep) = &job.parent_id {
        // A sweep's branch: which sweep, which candidate (the run nests under
        // the sweep's through `mlflow.parentRunId` when that run exists).
        tags.push(("scop.sweep".to_owned(), sweep.clone()));
        tags.push(("scop.candidate".to_owned(), job.candidate.clone()));
    }
    tags.extend(job.labels.iter().map(|(k, v)| (format!("scop.label.{k}"), v.clone())));
    tags
}

/// The spec as parameters: every field, defaults included, under its dotted
/// path (`finetune.lr`); lists as JSON; absent optional fields left out.
pub fn spec_params(spec_yaml: &str) -> Vec<(String, String)> {
    // The stored spec validated at submission; a spec of an older version that
    // no longer parses is still logged as it was written.
    let value = match scop_core::spec::JobSpec::from_yaml(spec_yaml) {
        Ok(spec) => serde_json::to_value(&spec).unwrap_or(Value::Null),
        Err(_) => serde_norway::from_str::<Value>(spec_yaml).unwrap_or(Value::Null),
    };
    let mut params = BTreeMap::new();
    flatten("", &value, &mut params);
    params.into_iter().collect()
}

fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    let text = match value {
        Value::Object(fields) => {
            for (key, inner) in fields {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                flatten(&path, inner, out);
            }
            return;
        }
        Value::Null => return,
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if !prefix.is_empty() {
        out.insert(prefix.to_owned(), cut(text));
    }
}

fn cut(text: String) -> String {
    if text.chars().count() <= PARAM_CHARS {
        return text;
    }
    let mut kept: String = text.chars().take(PARAM_CHARS - 1).collect();
    kept.push('…');
    kept
}

/// The job's report: its outcome, each stage's time and figures, every
/// evaluation and the plan's totals, from its whole event log.
pub fn report(job: &Job, events: &[JobEvent], plan: Option<&Plan>) -> Value {
    let mut stages = serde_json::Map::new();
    let mut evaluations = Vec::new();
    for event in events {
        match &event.kind {
            EventKind::StageFinished { stage, attempt, seconds, metrics } => {
                stages.insert(
                    stage.to_string(),
                    json!({ "attempt": attempt, "seconds": seconds, "metrics": metrics }),
                );
            }
            EventKind::Evaluated { stage, epoch, loss, top1, top5 } => evaluations.push(json!({
                "stage": stage, "epoch": epoch, "loss": loss, "top1": top1, "top5": top5,
            })),
            _ => {}
        }
    }
    json!({
        "job_id": job.id,
        "name": job.name,
        "owner": job.owner,
        "state": job.state.name(),
        "error": job.error,
        "labels": job.labels,
        "created_at_ms": job.created_at_ms,
        "updated_at_ms": job.updated_at_ms,
        "stages": stages,
        "evaluations": evaluations,
        "plan": plan.map(|p| json!({
            "policy": p.policy,
            "rate": p.rate,
            "channels_before": p.channels_before(),
            "channels_after": p.channels_after(),
            "totals": p.totals,
        })),
    })
}

#[cfg(test)]
mod tests;
