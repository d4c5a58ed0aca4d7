//! A scenario's row: what the job's events say happened (outcome, restarts,
//! steps recomputed, wall time lost, anything lost), checked against what
//! the scenario must guarantee, and the table of all rows.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::cluster::Cluster;
use super::job::{Job, global_step};

/// What a scenario must end in.
#[derive(Debug, Clone)]
pub struct Expect {
    /// "succeeded", or "failed" for a permanent fault.
    pub outcome: &'static str,
    /// For a failure: a word its one-line reason must contain.
    pub reason_contains: Option<&'static str>,
    /// Steps a retry may recompute (per retry).
    pub max_recomputed: u64,
    /// The longest the job may go without any event.
    pub max_silence: Duration,
    /// The agents (by index) the fault may make the coordinator declare
    /// lost; any other worker declared lost was a healthy one.
    pub may_lose: &'static [usize],
}

#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: String,
    pub outcome: String,
    pub restarts: u32,
    pub recomputed: u64,
    pub wall_ms: i64,
    pub lost: String,
    /// What the scenario did and saw, beyond the columns.
    pub notes: Vec<String>,
    /// Broken guarantees; empty when the row passes.
    pub failures: Vec<String>,
}

impl Row {
    /// A row for a scenario that could not run to its end.
    pub fn error(scenario: &str, error: &anyhow::Error) -> Row {
        Row {
            scenario: scenario.to_owned(),
            outcome: "ERROR".into(),
            restarts: 0,
            recomputed: 0,
            wall_ms: 0,
            lost: "?".into(),
            notes: Vec::new(),
            failures: vec![format!("{error:#}")],
        }
    }

    /// Reads the ended `job` and checks it against `expect`.
    pub fn check(scenario: &str, cluster: &Cluster, job: &Job, result: &Value, expect: &Expect) -> Row {
        let events = job.events();
        let mut failures = Vec::new();
        let state = result["job"]["state"].as_str().unwrap_or("unknown").to_owned();
        let reason = result["job"]["error"].as_str().unwrap_or("").to_owned();
        let outcome = if reason.is_empty() {
            state.to_uppercase()
        } else {
            format!("{}: {reason}", state.to_uppercase())
        };
        if state != expect.outcome {
            failures.push(format!("ended {state}, expected {}", expect.outcome));
        }
        if let Some(word) = expect.reason_contains
            && !reason.contains(word)
        {
            failures.push(format!("the reason does not say {word:?}"));
        }
        if reason.contains('\n') {
            failures.push("the failure reason is more than one line".into());
        }

        let (restarts, per_retry) = recomputation(&events);
        let recomputed: u64 = per_retry.iter().sum();
        if let Some(worst) = per_retry.iter().max()
            && *worst > expect.max_recomputed
        {
            failures.push(format!("a retry recomputed {worst} steps, more than {}", expect.max_recomputed));
        }

        let (silence, between) = longest_silence(&events);
        if silence > expect.max_silence {
            failures.push(format!(
                "the job went {:.1} s without any event (limit {:.0} s)",
                silence.as_secs_f64(),
                expect.max_silence.as_secs_f64()
            ));
        }
        let ids = cluster.worker_ids();
        let faulted: Vec<&str> = expect.may_lose.iter().filter_map(|&i| ids.get(i)?.as_deref()).collect();
        let declared_lost = cluster.lost_workers();
        // Only the suite's own agents count: an impostor's stream is ended
        // on purpose, and a disconnected worker is declared lost in time.
        let healthy_lost: Vec<String> = declared_lost
            .iter()
            .filter(|id| !faulted.contains(&id.as_str()))
            .filter_map(|id| {
                let index = ids.iter().position(|known| known.as_deref() == Some(id.as_str()))?;
                Some(format!("{id} (agent {index})"))
            })
            .collect();
        if !healthy_lost.is_empty() {
            failures.push(format!("healthy workers declared lost: {}", healthy_lost.join(", ")));
        }
        let end_ms = events.last().and_then(|e| e["time_ms"].as_i64()).unwrap_or(job.submitted_ms);
        let mut lost = Vec::new();
        lost.extend(sequence_gaps(&events));
        if state == "succeeded" {
            lost.extend(final_epoch_problems(cluster, job));
            lost.extend(missing_artifacts(result));
        }
        if !lost.is_empty() {
            failures.push(format!("lost: {}", lost.join("; ")));
        }
        Row {
            scenario: scenario.to_owned(),
            outcome,
            restarts,
            recomputed,
            wall_ms: end_ms - job.submitted_ms,
            lost: if lost.is_empty() { "nothing".into() } else { lost.join("; ") },
            notes: vec![format!(
                "longest silence {:.1} s ({between}); workers declared lost: {}",
                silence.as_secs_f64(),
                if declared_lost.is_empty() { "none".to_owned() } else { declared_lost.join(", ") }
            )],
            failures,
        }
    }

    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Retries (stage attempts after the first) and, per retry, the steps it
/// trained again: the last step the failed attempt reported minus the step
/// the retry resumed from (the one before its first report).
fn recomputation(events: &[Value]) -> (u32, Vec<u64>) {
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    let mut awaiting: BTreeMap<String, u64> = BTreeMap::new();
    let mut retries = 0;
    let mut per_retry = Vec::new();
    for event in events {
        let stage = event["stage"].as_str().unwrap_or("").to_owned();
        match event["kind"].as_str() {
            Some("stage_started") if event["attempt"].as_u64().unwrap_or(1) > 1 => {
                retries += 1;
                awaiting.insert(stage.clone(), last.remove(&stage).unwrap_or(0));
            }
            Some("progress") => {
                let step = global_step(event);
                if let Some(reached) = awaiting.remove(&stage) {
                    per_retry.push(reached.saturating_sub(step.saturating_sub(1)));
                }
                last.insert(stage, step);
            }
            _ => {}
        }
    }
    (retries, per_retry)
}

/// The longest time between two consecutive events, and after which event.
fn longest_silence(events: &[Value]) -> (Duration, String) {
    let longest = events
        .windows(2)
        .map(|w| {
            (w[1]["time_ms"].as_i64().unwrap_or(0) - w[0]["time_ms"].as_i64().unwrap_or(0), &w[0], &w[1])
        })
        .max_by_key(|(gap, _, _)| *gap);
    match longest {
        Some((gap, before, after)) => (
            Duration::from_millis(u64::try_from(gap).unwrap_or(0)),
            format!("{} {} → {} {}", before["kind"], before["stage"], after["kind"], after["stage"]),
        ),
        None => (Duration::ZERO, String::new()),
    }
}

fn sequence_gaps(events: &[Value]) -> Vec<String> {
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["sequence"].as_u64()).collect();
    let mut gaps = Vec::new();
    if seqs.first().is_some_and(|&s| s != 1) {
        gaps.push("job events before the first one followed".into());
    }
    for w in seqs.windows(2) {
        if w[1] != w[0] + 1 {
            gaps.push(format!("job events {}..{}", w[0] + 1, w[1] - 1));
        }
    }
    gaps
}

/// The plan must come from the final knockoff epoch.
fn final_epoch_problems(cluster: &Cluster, job: &Job) -> Vec<String> {
    let out = cluster.scopctl(&["plan", &job.id, "-o", "json"]).output();
    let plan: Option<Value> = out.ok().and_then(|o| serde_json::from_slice(&o.stdout).ok());
    let epoch = plan.as_ref().and_then(|p| p["statistics_epoch"].as_u64());
    let want = u64::from(job.spec.knockoff.epochs);
    match epoch {
        Some(e) if e == want => Vec::new(),
        Some(e) => vec![format!("the plan was decided from knockoff epoch {e}, not the final {want}")],
        None => vec!["no plan to read the statistics epoch from".into()],
    }
}

/// Every artifact the job lists exists with its size.
fn missing_artifacts(result: &Value) -> Vec<String> {
    let list = result["artifacts"]["artifacts"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return vec!["no artifacts".into()];
    }
    list.iter()
        .filter_map(|a| {
            let location = a["location"].as_str()?;
            let size = a["size_bytes"].as_u64()?;
            let on_disk = std::fs::metadata(location).map(|m| m.len()).ok();
            (on_disk != Some(size)).then(|| format!("artifact {location}"))
        })
        .collect()
}

/// Prints the table, then each row's notes and broken guarantees.
pub fn print(rows: &[Row], baseline_ms: Option<i64>) {
    let lost_time = |row: &Row| match baseline_ms {
        _ if row.outcome == "ERROR" => "?".to_owned(),
        Some(base) => format!("{:+.1} s", (row.wall_ms - base) as f64 / 1000.0),
        None => format!("{:.1} s (total)", row.wall_ms as f64 / 1000.0),
    };
    let short = |s: &str| {
        if s.chars().count() > 60 {
            format!("{}…", s.chars().take(59).collect::<String>())
        } else {
            s.to_owned()
        }
    };
    let header =
        ["scenario", "outcome", "restarts", "steps recomputed", "wall time lost", "anything lost", "check"];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.scenario.clone(),
                short(&r.outcome),
                r.restarts.to_string(),
                r.recomputed.to_string(),
                lost_time(r),
                short(&r.lost),
                if r.passed() { "ok".into() } else { "FAIL".into() },
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        println!("| {} |", padded.join(" | "));
    };
    println!();
    line(&header.map(str::to_owned));
    println!("|{}|", widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("|"));
    for row in &cells {
        line(row);
    }
    println!();
    for row in rows {
        for note in &row.notes {
            println!("  {}: {note}", row.scenario);
        }
        for failure in &row.failures {
            println!("  {}: FAILED CHECK: {failure}", row.scenario);
        }
    }
}
