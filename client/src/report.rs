//! `scopctl report`: one self-contained HTML file (inline CSS and SVG, no
//! scripts, nothing fetched) with the summary table, the loss and accuracy
//! curves per stage, the channels kept per unit and the β distribution per
//! unit, from the job's events, plan, score statistics and artifacts.

mod charts;

use std::fmt::Write as _;
use std::path::Path;

use scop_proto::v1 as pb;

pub use charts::Curves;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::format::{bytes, millions, percent, utc};
use crate::records::{stage_name, state_name};
use crate::summary::JobSummary;

/// Everything a report is made from.
#[derive(Debug, Clone, Default)]
pub struct ReportData {
    pub job: pb::Job,
    pub events: Vec<pb::JobEvent>,
    /// `None` before the decide stage.
    pub plan: Option<pb::Plan>,
    /// The latest knockoff epoch's; `None` before the knockoff stage sent any.
    pub statistics: Option<pb::ScoreStatisticsResponse>,
    pub artifacts: Option<pb::ListArtifactsResponse>,
    /// For a sweep: every candidate and how its branch went.
    pub candidates: Option<Vec<crate::sweep::CandidateRecord>>,
}

/// `Ok(None)` for NOT_FOUND: the job simply has not got that far.
fn optional<T>(result: Result<T>) -> Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(Error::NotFound(_)) => Ok(None),
        Err(error) => Err(error),
    }
}

impl ReportData {
    /// Fetches what the job has so far (it need not have ended).
    pub async fn fetch(client: &Client, job_id: &str) -> Result<ReportData> {
        let (job, events) = client.events(job_id).await?;
        let candidates = crate::sweep::candidates(client, &job).await?;
        Ok(ReportData {
            candidates,
            job,
            events,
            plan: optional(client.plan(job_id).await)?,
            statistics: optional(client.score_statistics(job_id, 0).await)?,
            artifacts: optional(client.artifacts(job_id).await)?,
        })
    }

    /// Each training stage's curves, in the order the stages ran.
    pub fn curves(&self) -> Vec<Curves> {
        use pb::job_event::Kind;
        let mut all: Vec<Curves> = Vec::new();
        let mut of = |stage: pb::Stage| -> usize {
            let name = stage_name(stage).unwrap_or("?");
            match all.iter().position(|c| c.stage == name) {
                Some(i) => i,
                None => {
                    all.push(Curves { stage: name.to_owned(), ..Curves::default() });
                    all.len() - 1
                }
            }
        };
        let mut points = Vec::new();
        for event in &self.events {
            match &event.kind {
                Some(Kind::Progress(p)) if p.steps > 0 => {
                    let x = f64::from(p.epoch.saturating_sub(1)) + p.step as f64 / p.steps as f64;
                    points.push((of(p.stage()), true, (x, p.loss, p.accuracy)));
                }
                Some(Kind::Evaluated(e)) => {
                    points.push((of(e.stage()), false, (f64::from(e.epoch), e.loss, e.top1)))
                }
                _ => {}
            }
        }
        for (i, train, point) in points {
            if train { all[i].train.push(point) } else { all[i].test.push(point) }
        }
        all
    }
}

/// Writes the report of `job_id` to `out`.
pub async fn write(client: &Client, job_id: &str, out: &Path) -> Result<()> {
    let data = ReportData::fetch(client, job_id).await?;
    let html = render(&data, crate::format::now_ms())?;
    std::fs::write(out, html).map_err(Error::io(out.display()))
}

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:sans-serif;margin:24px auto;max-width:1180px;color:#222;background:#fafafa}\
h1{font-size:24px;margin-bottom:4px}h2{font-size:19px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}\
h3{font-size:15px;margin:16px 0 6px}.meta{color:#555;margin-top:0}\
table{border-collapse:collapse;margin:8px 0;background:#fff}th,td{border:1px solid #d6d6d6;padding:5px 10px;text-align:right}\
th{background:#eef1f5}td:first-child,th:first-child{text-align:left}\
td.path,th.path{text-align:left}td.path{font-family:monospace}\
.row{display:flex;flex-wrap:wrap;gap:12px}.chart{background:#fff;border:1px solid #e2e2e2}\
.note{color:#666;font-size:13px}\
.legend span{display:inline-block;width:22px;height:4px;margin:0 6px 3px 14px;vertical-align:middle}footer{margin-top:40px;color:#888;font-size:12px}";

/// The whole page.
pub fn render(data: &ReportData, now_ms: i64) -> Result<String> {
    let job = &data.job;
    let spec = scop_core::spec::JobSpec::from_yaml(&job.spec_yaml).ok();
    let name = spec.as_ref().and_then(|s| s.name.clone()).unwrap_or_else(|| job.id.clone());
    let summary = crate::summary::from_events(job, &data.events);
    let mut html = String::new();
    let _ = writeln!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>SCOP report: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>",
        escape(&name)
    );
    let _ = writeln!(
        html,
        "<h1>SCOP report: {}</h1>\n<p class=\"meta\">job {} &middot; {} &middot; {} on {} &middot; submitted {}</p>",
        escape(&name),
        escape(&job.id),
        state_name(job.state()),
        escape(&summary.network),
        escape(&summary.dataset),
        utc(job.created_at_ms)
    );
    if !job.error.is_empty() {
        let _ = writeln!(html, "<p><strong>{}:</strong> {}</p>", state_name(job.state()), escape(&job.error));
    }

    html.push_str("<h2>Summary</h2>\n");
    if data.candidates.is_some() {
        // A sweep prunes nothing itself: its branches do (the candidates below).
        let _ = writeln!(
            html,
            "<p>dense network: top-1 {}, top-5 {}; {} candidates, each pruned, finetuned and exported as its own job.</p>",
            summary.dense.top1.map_or_else(|| "-".to_owned(), percent),
            summary.dense.top5.map_or_else(|| "-".to_owned(), percent),
            data.candidates.as_ref().map_or(0, Vec::len)
        );
    } else {
        html.push_str(&summary_table(&summary));
    }
    let _ = writeln!(html, "<p>time per stage: {}</p>", escape(&summary.stage_times()));
    if let Some(plan) = &data.plan {
        let _ = writeln!(
            html,
            "<p>plan: {} policy at rate {}, from {}; {} of {} channels kept ({}).</p>",
            escape(&plan.policy),
            plan.rate,
            escape(&crate::records::PlanRecord::from(plan).scored_by()),
            plan.channels_after,
            plan.channels_before,
            percent(plan.channels_after as f64 / plan.channels_before.max(1) as f64)
        );
    }

    if let Some(candidates) = &data.candidates {
        html.push_str(&candidates_section(candidates)?);
    }

    html.push_str("<h2>Loss and accuracy per stage</h2>\n");
    let _ = writeln!(
        html,
        "<p class=\"legend\"><span style=\"background:{}\"></span>training, mean over each logging window of rank 0 \
         <span style=\"background:{}\"></span>test split, after each epoch (epoch 0: before the stage trained)</p>",
        charts::TRAIN_CSS,
        charts::TEST_CSS
    );
    let curves = data.curves();
    if curves.is_empty() {
        html.push_str("<p class=\"note\">No training progress yet.</p>\n");
    }
    for stage in &curves {
        let (loss, accuracy) = charts::curves(stage)?;
        let _ = writeln!(
            html,
            "<h3>{}</h3>\n<div class=\"row\"><div class=\"chart\">{loss}</div><div class=\"chart\">{accuracy}</div></div>",
            escape(&stage.stage)
        );
    }

    html.push_str("<h2>Channels kept per unit</h2>\n");
    match &data.plan {
        Some(plan) => {
            let units: Vec<(String, u32, u32)> =
                plan.units.iter().map(|u| (u.unit.clone(), u.channels_before, u.channels_after)).collect();
            let _ = writeln!(html, "<div class=\"chart\">{}</div>", charts::channels_kept(&units)?);
        }
        None => html.push_str("<p class=\"note\">No plan yet: it is decided after the knockoff stage.</p>\n"),
    }

    html.push_str("<h2>Distribution of β per unit</h2>\n");
    match &data.statistics {
        Some(stats) => {
            let units: Vec<(String, Vec<f32>)> =
                stats.units.iter().map(|u| (u.unit.clone(), u.beta.clone())).collect();
            let _ = writeln!(
                html,
                "<div class=\"chart\">{}</div>\n<p class=\"note\">β of knockoff epoch {}: a channel whose β is low let its knockoff features win, so it is a candidate for pruning (score |γ|·(2β−1)).</p>",
                charts::beta_distribution(&units)?,
                stats.epoch
            );
        }
        None => {
            html.push_str("<p class=\"note\">No score statistics yet: the knockoff stage sends them.</p>\n")
        }
    }

    html.push_str("<h2>Artifacts</h2>\n");
    html.push_str(&artifacts_table(&job.id, data.artifacts.as_ref()));
    let _ = writeln!(html, "<footer>Made by scopctl report on {}.</footer>\n</body>\n</html>", utc(now_ms));
    Ok(html)
}

fn summary_table(summary: &JobSummary) -> String {
    let show = |value: Option<f64>, f: fn(f64) -> String| value.map_or_else(|| "-".to_owned(), f);
    let ratio = |after: Option<f64>, before: Option<f64>| match (after, before) {
        (Some(a), Some(b)) if b > 0.0 => format!("{} ({:.2}x)", millions(a), a / b),
        (Some(a), _) => millions(a),
        _ => "-".to_owned(),
    };
    let mut html = String::from(
        "<table class=\"summary\">\n<tr><th>model</th><th>network</th><th>dataset</th><th>top-1</th><th>top-5</th><th>prune rate</th><th>params</th><th>FLOPs</th></tr>\n",
    );
    let rows = [
        (
            "dense".to_owned(),
            show(summary.dense.top1, percent),
            show(summary.dense.top5, percent),
            "-".to_owned(),
            show(summary.dense.params, millions),
            show(summary.dense.flops, millions),
        ),
        (
            summary.pruned_label(),
            show(summary.pruned.top1, percent),
            show(summary.pruned.top5, percent),
            show(summary.prune_rate, |r| format!("{:.0} %", r * 100.0)),
            ratio(summary.pruned.params, summary.dense.params),
            ratio(summary.pruned.flops, summary.dense.flops),
        ),
    ];
    for (model, top1, top5, rate, params, flops) in rows {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{top1}</td><td>{top5}</td><td>{rate}</td><td>{params}</td><td>{flops}</td></tr>",
            escape(&model),
            escape(&summary.network),
            escape(&summary.dataset)
        );
    }
    html.push_str("</table>\n");
    html
}

/// A sweep's candidates: the table, then top-1 against FLOPs per criterion
/// (and residual mode, where the candidates differ in it).
fn candidates_section(rows: &[crate::sweep::CandidateRecord]) -> Result<String> {
    let mut html = String::from(
        "<h2>Candidates</h2>\n<table>\n<tr><th>candidate</th><th>criterion</th><th>target</th><th>residual</th><th>state</th><th>params</th><th>FLOPs</th><th>CPU latency</th><th>top-1 before finetune</th><th>top-1</th><th>Pareto</th></tr>\n",
    );
    let frontier = crate::sweep::pareto(rows);
    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    for r in rows {
        let on_front = frontier.iter().any(|f| f.candidate == r.candidate);
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.candidate),
            escape(&r.criterion),
            escape(&r.target),
            escape(&r.residual),
            escape(&r.state),
            dash(r.params.map(|n| millions(n as f64))),
            dash(r.flops.map(|n| millions(n as f64))),
            dash(r.latency_ms.map(|ms| format!("{ms:.2} ms"))),
            dash(r.top1_before_finetune.map(percent)),
            dash(r.top1.map(percent)),
            if on_front { "&#9733;" } else { "" }
        );
    }
    html.push_str("</table>\n");
    for r in rows.iter().filter(|r| r.error.is_some()) {
        let _ = writeln!(
            html,
            "<p class=\"note\">{} {}: {}</p>",
            escape(&r.candidate),
            escape(&r.state),
            escape(r.error.as_deref().unwrap_or(""))
        );
    }
    // One series per criterion, and per residual mode where the candidates differ in it.
    let mixed = rows.iter().any(|r| r.residual != rows[0].residual);
    let points: Vec<charts::SweepPoint> = rows
        .iter()
        .filter_map(|r| {
            Some(charts::SweepPoint {
                series: if mixed { format!("{} ({})", r.criterion, r.residual) } else { r.criterion.clone() },
                mflops: r.flops? as f64 / 1e6,
                top1: r.top1? * 100.0,
            })
        })
        .collect();
    if points.is_empty() {
        html.push_str("<p class=\"note\">No candidate has finished yet.</p>\n");
        return Ok(html);
    }
    let dense = rows.iter().find_map(|r| Some((r.dense_flops? as f64 / 1e6, r.top1_dense? * 100.0)));
    let _ = writeln!(
        html,
        "<div class=\"chart\">{}</div>\n<p class=\"note\">&#9733;: on the Pareto frontier (no other candidate has fewer or as many FLOPs and a higher top-1). CPU latency: median single-image forward of the exported TorchScript module. <code>scopctl artifacts ID --candidate NAME</code> lists a candidate's files.</p>",
        charts::pareto(&points, dense)?
    );
    Ok(html)
}

fn artifacts_table(job_id: &str, listed: Option<&pb::ListArtifactsResponse>) -> String {
    let Some(listed) = listed.filter(|l| !l.artifacts.is_empty()) else {
        return "<p class=\"note\">No artifacts yet: the export stage writes them.</p>\n".to_owned();
    };
    let mut html = String::from(
        "<table>\n<tr><th>kind</th><th class=\"path\">path</th><th>size</th><th>stage</th></tr>\n",
    );
    for a in &listed.artifacts {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td class=\"path\">{}</td><td>{}</td><td>{}</td></tr>",
            escape(&a.kind),
            escape(&a.path),
            bytes(a.size_bytes),
            stage_name(a.stage()).unwrap_or("-")
        );
    }
    let _ = writeln!(
        html,
        "</table>\n<p class=\"note\">in {} (or <code>scopctl artifacts {} --download DIR</code>)</p>",
        escape(&listed.job_dir),
        escape(job_id)
    );
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::CandidateRecord;

    fn finished(name: &str, residual: &str, flops: u64, top1: f64) -> CandidateRecord {
        CandidateRecord {
            candidate: name.into(),
            job_id: Some(format!("job-{name}")),
            state: "succeeded".into(),
            criterion: "scop".into(),
            target: "flops 0.5".into(),
            residual: residual.into(),
            params: Some(100),
            flops: Some(flops),
            dense_params: Some(200),
            dense_flops: Some(400),
            latency_ms: Some(1.0),
            top1_dense: Some(0.9),
            top1_before_finetune: Some(0.5),
            top1: Some(top1),
            error: None,
        }
    }

    #[test]
    fn candidates_that_differ_in_residual_mode_get_a_series_each() {
        let mixed = candidates_section(&[
            finished("a", "scatter", 100, 0.90),
            finished("b", "group", 100, 0.89),
            finished("c", "group", 200, 0.91),
        ])
        .unwrap();
        assert!(mixed.contains("<td>scatter</td>") && mixed.contains("<td>group</td>"), "{mixed}");
        assert!(mixed.contains("scop (scatter)") && mixed.contains("scop (group)"), "{mixed}");

        let alike =
            candidates_section(&[finished("a", "group", 100, 0.9), finished("b", "group", 200, 0.91)])
                .unwrap();
        assert!(!alike.contains("scop (group)"), "{alike}");
    }
}
