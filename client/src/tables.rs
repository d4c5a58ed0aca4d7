//! The table forms of `get jobs`, `get job`, `plan`, `workers` and
//! `artifacts`, made from the same records `-o json` prints.

use crate::format::{age, bytes, millions, now_ms, percent, render, table};
use crate::records::{ArtifactsRecord, JobRecord, PlanRecord, WhoamiRecord, WorkerRecord};

/// `get jobs`: one row per job, newest first.
pub fn jobs(jobs: &[JobRecord]) -> String {
    if jobs.is_empty() {
        return "no jobs".to_owned();
    }
    let now = now_ms();
    let mut t = table(["ID", "NAME", "OWNER", "STATE", "STAGE", "ATTEMPT", "PRIORITY", "AGE", "LABELS"]);
    for job in jobs {
        let labels: Vec<String> = job.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        t.add_row([
            job.id.clone(),
            job.name.clone().unwrap_or_else(|| "-".into()),
            if job.owner.is_empty() { "-".into() } else { job.owner.clone() },
            job.state.clone(),
            job.stage.clone().unwrap_or_else(|| "-".into()),
            job.attempt.to_string(),
            job.priority.to_string(),
            age(job.created_at_ms, now),
            if labels.is_empty() { "-".into() } else { labels.join(",") },
        ]);
    }
    render(&t)
}

/// `whoami`: the user, its role and its limits.
pub fn whoami(me: &WhoamiRecord) -> String {
    let limit = |n: Option<String>| n.unwrap_or_else(|| "unlimited".into());
    [
        format!("user:              {}", me.user),
        format!("role:              {}", me.role),
        format!("max queued jobs:   {}", limit(me.max_queued_jobs.map(|n| n.to_string()))),
        format!("max running jobs:  {}", limit(me.max_running_jobs.map(|n| n.to_string()))),
        format!("max rank slots:    {}", limit(me.max_rank_slots.map(|n| n.to_string()))),
        format!("max priority:      {}", limit(me.max_priority.map(|n| n.to_string()))),
    ]
    .join("\n")
}

/// `get job ID`: the fields one per line, then the spec.
pub fn job(job: &JobRecord) -> String {
    let now = now_ms();
    let labels: Vec<String> = job.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut lines = vec![
        format!("id:          {}", job.id),
        format!("name:        {}", job.name.as_deref().unwrap_or("-")),
        format!("owner:       {}", if job.owner.is_empty() { "-" } else { &job.owner }),
        format!("state:       {}", job.state),
        format!("stage:       {}", job.stage.as_deref().unwrap_or("-")),
        format!("attempt:     {}", job.attempt),
        format!("priority:    {}", job.priority),
        format!("labels:      {}", if labels.is_empty() { "-".into() } else { labels.join(", ") }),
        format!("created:     {} ago", age(job.created_at_ms, now)),
        format!("updated:     {} ago", age(job.updated_at_ms, now)),
        format!("events:      {}", job.last_sequence),
    ];
    if let Some(error) = &job.error {
        lines.push(format!("error:       {error}"));
    }
    if let Some(request_id) = &job.request_id {
        lines.push(format!("request id:  {request_id}"));
    }
    if let Some(reason) = &job.queued_reason {
        lines.push(format!("waiting:     {reason}"));
    }
    if let (Some(parent), Some(candidate)) = (&job.parent_id, &job.candidate) {
        lines.push(format!("sweep:       {parent} (candidate {candidate})"));
    }
    lines.push("spec:".into());
    lines.extend(job.spec_yaml.lines().map(|l| format!("  {l}")));
    if let Some(candidates) = &job.candidates {
        lines.push(String::new());
        lines.push("candidates:".into());
        lines.push(crate::sweep::table_of(candidates));
    }
    lines.join("\n")
}

/// `plan ID`: per unit before → after, kept %, scores; then the totals.
pub fn plan(plan: &PlanRecord) -> String {
    let mut t = table(["UNIT", "CHANNELS", "KEPT", "SCORE MIN", "MEDIAN", "MAX", "KEPT MIN", "PRUNED MAX"]);
    let score = |v: f64| format!("{v:.4}");
    for u in &plan.units {
        t.add_row([
            u.unit.clone(),
            format!("{:>4} -> {:<4}", u.channels_before, u.channels_after),
            format!("{:.1} %", u.kept * 100.0),
            score(u.score_min),
            u.score_median.map_or_else(|| "-".into(), score),
            score(u.score_max),
            score(u.kept_score_min),
            u.pruned_score_max.map_or_else(|| "-".into(), score),
        ]);
    }
    let change = |before: u64, after: u64| {
        if before == 0 {
            return "not recorded".to_owned();
        }
        format!(
            "{} -> {} ({} kept, {:.2}x smaller)",
            millions(before as f64),
            millions(after as f64),
            percent(after as f64 / before as f64),
            before as f64 / after.max(1) as f64
        )
    };
    let mut groups = String::new();
    if !plan.groups.is_empty() {
        let mut g = table(["RESIDUAL STREAM", "CHANNELS", "KEPT", "MEMBERS"]);
        for group in &plan.groups {
            g.add_row([
                group.writer.clone(),
                format!("{:>4} -> {:<4}", group.channels_before, group.channels_after),
                percent(f64::from(group.channels_after) / f64::from(group.channels_before.max(1))),
                group.members.join(", "),
            ]);
        }
        groups = format!("\n\n{}", render(&g));
    }
    let mut how = Vec::new();
    if !plan.residual.is_empty() {
        how.push(format!("residual {}", plan.residual));
    }
    if plan.round_to > 1 {
        how.push(format!("widths rounded to multiples of {}", plan.round_to));
    }
    let how = if how.is_empty() { String::new() } else { format!(" ({})", how.join(", ")) };
    format!(
        "{}{groups}\n\npolicy {} at rate {}{how}, from {}\nchannels {} -> {} ({} kept)\nparams   {}\nFLOPs    {} at {}x{}",
        render(&t),
        plan.policy,
        plan.rate,
        plan.scored_by(),
        plan.channels_before,
        plan.channels_after,
        percent(plan.channels_after as f64 / plan.channels_before.max(1) as f64),
        change(plan.params_before, plan.params_after),
        change(plan.flops_before, plan.flops_after),
        plan.input_size,
        plan.input_size
    )
}

/// `workers`: one row per agent.
pub fn workers(workers: &[WorkerRecord]) -> String {
    if workers.is_empty() {
        return "no workers".to_owned();
    }
    let now = now_ms();
    let mut t =
        table(["ID", "HOST", "STATE", "SLOTS BUSY/TOTAL", "DEVICES", "CORES", "VERSION", "LAST SEEN"]);
    for w in workers {
        t.add_row([
            w.id.clone(),
            w.hostname.clone(),
            if w.drained { format!("{}, drained", w.state) } else { w.state.clone() },
            format!("{}/{}", w.slots_busy, w.slots_total),
            w.devices.join(", "),
            w.cpu_cores.to_string(),
            w.agent_version.clone(),
            format!("{} ago", age(w.last_seen_ms, now)),
        ]);
    }
    render(&t)
}

/// `artifacts ID`: one row per file, with where it lives.
pub fn artifacts(listed: &ArtifactsRecord) -> String {
    if listed.artifacts.is_empty() {
        return format!("job {} has no artifacts yet", listed.job_id);
    }
    let mut t = table(["KIND", "PATH", "SIZE", "STAGE"]);
    for a in &listed.artifacts {
        t.add_row([a.kind.clone(), a.path.clone(), bytes(a.size_bytes), a.stage.clone().unwrap_or_default()]);
    }
    format!("{}\nin {} (fetch with --download DIR)", render(&t), listed.job_dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::PlanGroupRecord;

    #[test]
    fn a_grouped_plan_lists_its_residual_streams_and_rounding() {
        let plan = PlanRecord {
            job_id: "j".into(),
            policy: "layer".into(),
            rate: 0.5,
            statistics_epoch: 2,
            decided_at_ms: 0,
            units: Vec::new(),
            channels_before: 64,
            channels_after: 32,
            params_before: 0,
            params_after: 0,
            flops_before: 0,
            flops_after: 0,
            input_size: 32,
            criterion: "scop".into(),
            residual: "group".into(),
            round_to: 8,
            groups: vec![PlanGroupRecord {
                writer: "conv1".into(),
                channels_before: 16,
                channels_after: 8,
                members: vec!["layer1.0.conv2".into(), "layer1.1.conv2".into()],
            }],
        };
        let shown = super::plan(&plan);
        assert!(shown.contains("RESIDUAL STREAM"), "{shown}");
        let row = shown.lines().find(|l| l.contains("conv1")).unwrap();
        assert!(row.contains("16 -> 8") && row.contains("layer1.0.conv2, layer1.1.conv2"), "{row}");
        assert!(shown.contains("(residual group, widths rounded to multiples of 8)"), "{shown}");
        let scattered = PlanRecord { residual: "scatter".into(), round_to: 1, groups: Vec::new(), ..plan };
        let shown = super::plan(&scattered);
        assert!(!shown.contains("RESIDUAL STREAM") && shown.contains("(residual scatter)"), "{shown}");
    }
}
