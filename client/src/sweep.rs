//! A sweep's result: one row per candidate (its branch job's state, the
//! pruned network's size, measured CPU latency and top-1 before and after
//! finetune), for `get job`, `report` and `artifacts --candidate`.

use scop_core::job_dir::CARD_FILE;
use scop_core::spec::{JobSpec, PolicyKind};
use scop_core::stage::Stage;
use scop_core::summary::ExportFigures;
use scop_proto::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::format::{millions, percent, render, table};
use crate::records::state_name;

/// One candidate of a sweep and how its branch went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateRecord {
    pub candidate: String,
    /// The branch job; `None` while the sweep has not forked its branches.
    pub job_id: Option<String>,
    pub state: String,
    pub criterion: String,
    /// `layer 0.45`, or `flops 0.5` / `params 0.5` for a global target.
    pub target: String,
    /// Its `prune.residual`: `scatter`, `keep` or `group`.
    pub residual: String,
    pub params: Option<u64>,
    pub flops: Option<u64>,
    pub dense_params: Option<u64>,
    pub dense_flops: Option<u64>,
    /// Median milliseconds of one single-image forward of the export on the CPU.
    pub latency_ms: Option<f64>,
    pub top1_dense: Option<f64>,
    pub top1_before_finetune: Option<f64>,
    pub top1: Option<f64>,
    /// Why the branch failed or was cancelled.
    pub error: Option<String>,
}

/// The candidates of `sweep`, in the spec's order, with what their branches
/// have so far; `None` when the job is no sweep.
pub async fn candidates(client: &Client, sweep: &pb::Job) -> Result<Option<Vec<CandidateRecord>>> {
    let Ok(spec) = JobSpec::from_yaml(&sweep.spec_yaml) else { return Ok(None) };
    if !spec.is_sweep() {
        return Ok(None);
    }
    let branches = client.branches(&sweep.id).await?;
    let mut rows = Vec::with_capacity(spec.sweep.len());
    for candidate in spec.candidates() {
        let name = candidate.name.clone().unwrap_or_default();
        let target = match candidate.policy {
            Some(PolicyKind::Global) => {
                let what = match candidate.target {
                    Some(scop_core::spec::GlobalTarget::Params) => "params",
                    _ => "flops",
                };
                format!("{what} {}", candidate.rate)
            }
            _ => format!("layer {}", candidate.rate),
        };
        let mut row = CandidateRecord {
            candidate: name.clone(),
            job_id: None,
            state: "not forked".into(),
            criterion: candidate.criterion.map(|c| c.as_str().to_owned()).unwrap_or_default(),
            target,
            residual: candidate.residual.map(|r| r.as_str().to_owned()).unwrap_or_default(),
            params: None,
            flops: None,
            dense_params: None,
            dense_flops: None,
            latency_ms: None,
            top1_dense: None,
            top1_before_finetune: None,
            top1: None,
            error: None,
        };
        if let Some(branch) = branches.iter().find(|b| b.candidate == name) {
            row.job_id = Some(branch.id.clone());
            row.state = state_name(branch.state()).to_owned();
            row.error = Some(branch.error.clone()).filter(|e| !e.is_empty());
            if branch.state() == pb::JobState::Succeeded {
                fill_from_card(client, &branch.id, &mut row).await?;
            }
        }
        rows.push(row);
    }
    Ok(Some(rows))
}

/// The figures of a finished branch, from its export's model card.
async fn fill_from_card(client: &Client, job_id: &str, row: &mut CandidateRecord) -> Result<()> {
    let path = format!("{}/{CARD_FILE}", Stage::Export.as_str());
    let bytes = client.read_artifact(job_id, &path).await?;
    let card: ExportFigures = serde_json::from_slice(&bytes)
        .map_err(|e| Error::InvalidArgument(format!("{path} of job {job_id} is not a model card: {e}")))?;
    let metric = |key: &str| card.metrics.get(key).copied();
    row.params = Some(card.params);
    row.flops = Some(card.flops);
    row.dense_params = Some(card.dense_params);
    row.dense_flops = Some(card.dense_flops);
    row.latency_ms = metric("latency_ms");
    row.top1_dense = metric("top1_dense");
    row.top1_before_finetune = metric("top1_pruned_before_finetune");
    row.top1 = metric("top1_pruned");
    Ok(())
}

/// The branch job of candidate `name` of sweep `sweep_id`; the error lists the
/// candidates there are.
pub async fn branch_of(client: &Client, sweep_id: &str, name: &str) -> Result<String> {
    let branches = client.branches(sweep_id).await?;
    if let Some(branch) = branches.iter().find(|b| b.candidate == name) {
        return Ok(branch.id.clone());
    }
    let names: Vec<&str> = branches.iter().map(|b| b.candidate.as_str()).collect();
    Err(Error::InvalidArgument(if names.is_empty() {
        format!(
            "--candidate {name}: job {sweep_id} has no branches (it is no sweep, or has not forked them yet)"
        )
    } else {
        format!("--candidate {name}: job {sweep_id} has no such candidate; it has {}", names.join(", "))
    }))
}

/// The candidates as a table: one row each, in the spec's order.
pub fn table_of(rows: &[CandidateRecord]) -> String {
    let mut t = table([
        "CANDIDATE",
        "CRITERION",
        "TARGET",
        "RESIDUAL",
        "STATE",
        "PARAMS",
        "FLOPS",
        "CPU LATENCY",
        "TOP-1 BEFORE FT",
        "TOP-1",
        "JOB",
    ]);
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    for row in rows {
        t.add_row([
            row.candidate.clone(),
            row.criterion.clone(),
            row.target.clone(),
            row.residual.clone(),
            row.state.clone(),
            or_dash(row.params.map(|n| millions(n as f64))),
            or_dash(row.flops.map(|n| millions(n as f64))),
            or_dash(row.latency_ms.map(|ms| format!("{ms:.2} ms"))),
            or_dash(row.top1_before_finetune.map(percent)),
            or_dash(row.top1.map(percent)),
            or_dash(row.job_id.clone()),
        ]);
    }
    let mut text = render(&t);
    for row in rows.iter().filter(|r| r.error.is_some()) {
        text.push_str(&format!("\n{} {}: {}", row.candidate, row.state, row.error.as_deref().unwrap_or("")));
    }
    text
}

/// The candidates on the accuracy/FLOPs frontier: no other finished candidate
/// has fewer or equal FLOPs and a higher top-1, or fewer FLOPs and the same.
pub fn pareto(rows: &[CandidateRecord]) -> Vec<&CandidateRecord> {
    let done: Vec<(&CandidateRecord, u64, f64)> =
        rows.iter().filter_map(|r| Some((r, r.flops?, r.top1?))).collect();
    done.iter()
        .filter(|(_, flops, top1)| {
            !done.iter().any(|(_, f, t)| (f <= flops && t > top1) || (f < flops && t >= top1))
        })
        .map(|(r, _, _)| *r)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, flops: u64, top1: f64) -> CandidateRecord {
        CandidateRecord {
            candidate: name.into(),
            job_id: Some(format!("job-{name}")),
            state: "succeeded".into(),
            criterion: "scop".into(),
            target: "layer 0.45".into(),
            residual: "scatter".into(),
            params: Some(100),
            flops: Some(flops),
            dense_params: Some(200),
            dense_flops: Some(400),
            latency_ms: Some(1.5),
            top1_dense: Some(0.92),
            top1_before_finetune: Some(0.5),
            top1: Some(top1),
            error: None,
        }
    }

    #[test]
    fn the_frontier_keeps_only_candidates_nothing_beats() {
        let rows = vec![
            row("a", 100, 0.90),
            row("b", 200, 0.92),
            row("c", 200, 0.91),  // beaten by b (same FLOPs, better)
            row("d", 300, 0.915), // beaten by b (fewer FLOPs, better)
            row("e", 50, 0.80),
            CandidateRecord { top1: None, ..row("f", 10, 0.0) }, // not finished: not on it
        ];
        let names: Vec<&str> = pareto(&rows).into_iter().map(|r| r.candidate.as_str()).collect();
        assert_eq!(names, ["a", "b", "e"]);
    }

    #[test]
    fn the_table_has_a_row_per_candidate_and_says_why_a_branch_failed() {
        let failed = CandidateRecord {
            state: "failed".into(),
            top1: None,
            flops: None,
            error: Some("stage finetune failed 1 times; last: out of memory".into()),
            ..row("l1-0.7", 0, 0.0)
        };
        let text = table_of(&[row("scop-0.45", 12_000_000, 0.9095), failed]);
        assert!(text.contains("scop-0.45") && text.contains("90.95 %") && text.contains("12.00 M"), "{text}");
        assert!(text.contains("1.50 ms"), "{text}");
        assert!(text.contains("l1-0.7 failed: stage finetune failed 1 times; last: out of memory"), "{text}");
    }
}
