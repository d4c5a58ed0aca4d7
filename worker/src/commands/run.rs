//! `scop-worker run JOB.yaml`: every stage of a job, one after the other, ending
//! with the summary table. At world size 1 the stages run in this process; at
//! world size N each training stage runs as N rank processes started by
//! [`crate::commands::launch::Launcher`], and decide runs here between knockoff and finetune.

use std::path::PathBuf;
use std::time::Instant;

use scop_core::spec::JobSpec;
use scop_core::stage::{Stage, StagePlan};

use scop_core::summary::JobSummary;

use crate::commands::launch::Launcher;
use crate::commands::rank::run_stage;
use crate::events::{ConsoleAndJsonl, Event, EventSink};
use crate::stages::context::device_for;
use crate::stages::parallel::Single;
use crate::stages::{JobDir, StageContext, decide};

/// How to run a job locally.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Replaces the spec's `output.dir`.
    pub output: Option<PathBuf>,
    /// Continue each stage from its latest checkpoint instead of starting over.
    pub resume: bool,
    /// Replaces the spec's `resources.world_size`.
    pub world_size: Option<u32>,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Stage(#[from] crate::stages::Error),
    #[error(transparent)]
    Launch(#[from] crate::commands::launch::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where the training stages run.
enum Runner {
    /// In this process, as the only rank.
    InProcess { device: tch::Device },
    /// As rank processes.
    Ranks(Launcher),
}

impl Runner {
    fn run(&self, stage: Stage, spec: &JobSpec, resume: bool, sink: &mut dyn EventSink) -> Result<()> {
        match self {
            Runner::InProcess { device } => {
                let started = Instant::now();
                run_stage(stage, spec, *device, &mut Single, sink, resume, None)?;
                sink.emit(&Event::StageFinished {
                    stage: stage.as_str().to_owned(),
                    seconds: started.elapsed().as_secs_f64(),
                });
                Ok(())
            }
            // The ranks emit their own StageFinished; rank 0's is relayed.
            Runner::Ranks(launcher) => Ok(launcher.run_stage(stage, sink)?),
        }
    }
}

/// Runs the whole job; returns the figures of the summary table. A sweep
/// goes to [`run_sweep`] instead.
pub fn run_job(spec: &JobSpec, options: &RunOptions) -> Result<JobSummary> {
    let spec = with_options(spec, options);
    if spec.is_sweep() {
        return Err(Error::Stage(crate::stages::Error::Input(format!(
            "the spec is a sweep of {} candidates: run it with run_sweep, which runs the candidates \
             one after the other",
            spec.sweep.len()
        ))));
    }
    let times = run_line(&spec, spec.stages().stages(), options)?;
    summarize(&spec, times)
}

/// One candidate of a local sweep, as its branch ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BranchOutcome {
    pub candidate: String,
    /// The branch's output directory.
    pub dir: PathBuf,
    /// `None` when the branch failed.
    pub summary: Option<JobSummary>,
    /// From the export's model card: top-1 of the pruned network before it
    /// was finetuned, and the CPU latency of one image.
    pub top1_before_finetune: Option<f64>,
    pub latency_ms: Option<f64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// Runs a sweep locally: pretrain and knockoff once in `<output>`, then every
/// candidate's `score? → decide → finetune → export` in
/// `<output>/branches/<candidate>/`, starting from the shared stages'
/// outputs. A failed branch is reported and the next one runs. Prints the
/// candidates table and writes it to `<output>/sweep.json`.
pub fn run_sweep(spec: &JobSpec, options: &RunOptions) -> Result<Vec<BranchOutcome>> {
    let spec = with_options(spec, options);
    let shared = spec.stages().shared_with_branches();
    run_line(&spec, &shared, options)?;
    let root = JobDir::new(spec.output.dir.clone());
    let mut outcomes = Vec::new();
    for name in spec.candidates().into_iter().filter_map(|c| c.name) {
        let Some(mut branch) = spec.candidate_spec(&name) else { continue };
        branch.output.dir = root.root().join("branches").join(&name);
        println!("\n== candidate {name} ({}) ==", branch.output.dir.display());
        let layout = JobDir::new(branch.output.dir.clone());
        let run = || -> Result<(JobSummary, std::collections::BTreeMap<String, f64>)> {
            root.share_outputs(&layout, &shared).map_err(crate::stages::Error::from)?;
            let times = run_line(&branch, StagePlan::branch(&branch).stages(), options)?;
            let summary = summarize(&branch, times)?;
            Ok((summary, layout.read_export_figures().map_err(crate::stages::Error::from)?.metrics))
        };
        let mut outcome = BranchOutcome {
            candidate: name.clone(),
            dir: branch.output.dir.clone(),
            summary: None,
            top1_before_finetune: None,
            latency_ms: None,
            error: None,
        };
        match run() {
            Ok((summary, metrics)) => {
                outcome.summary = Some(summary);
                outcome.top1_before_finetune = metrics.get("top1_pruned_before_finetune").copied();
                outcome.latency_ms = metrics.get("latency_ms").copied();
            }
            Err(error) => {
                eprintln!("candidate {name} failed: {error}");
                outcome.error = Some(error.to_string());
            }
        }
        outcomes.push(outcome);
    }
    let path = root.root().join("sweep.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&outcomes).expect("outcomes serialise"))
        .map_err(crate::stages::error::io(&path))?;
    println!("\n{}", sweep_table(&outcomes));
    if outcomes.iter().all(|o| o.summary.is_none()) {
        return Err(Error::Stage(crate::stages::Error::Input(
            "every candidate of the sweep failed".to_owned(),
        )));
    }
    Ok(outcomes)
}

/// The spec with the command line's replacements.
fn with_options(spec: &JobSpec, options: &RunOptions) -> JobSpec {
    let mut spec = spec.clone();
    if let Some(dir) = &options.output {
        spec.output.dir = dir.clone();
    }
    if let Some(world) = options.world_size {
        spec.resources.world_size = world;
    }
    spec
}

/// Runs `stages`, in order; returns each one's seconds.
fn run_line(spec: &JobSpec, stages: &[Stage], options: &RunOptions) -> Result<Vec<(Stage, f64)>> {
    let world = spec.resources.world_size.max(1) as usize;
    let dir = spec.output.dir.clone();
    std::fs::create_dir_all(&dir).map_err(crate::stages::error::io(&dir))?;
    let log = JobDir::new(&dir).metrics_log();
    let mut sink = ConsoleAndJsonl::new(&log).map_err(crate::stages::error::io(&log))?;
    // One rank runs in this process, unless it must go through NCCL (`backend: nccl`).
    let runner = if world == 1 && !spec.resources.uses_nccl() {
        // Ctrl-C ends the running stage after a checkpoint, so --resume continues from it.
        crate::interrupt::install();
        let threads = match spec.resources.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get() as i32),
            n => n as i32,
        };
        tch::set_num_threads(threads);
        let device = device_for(spec.resources.device, 0)?;
        tracing::info!(output = %dir.display(), ?device, threads, "running job");
        Runner::InProcess { device }
    } else {
        let spec_file = write_rank_spec(spec)?;
        let threads = Launcher::threads_per_rank(spec.resources.threads, world);
        let mut launcher = Launcher::new(spec_file, dir.clone(), world, spec.resources.device, threads)
            .with_resources(&spec.resources);
        launcher.resume = options.resume;
        tracing::info!(output = %dir.display(), world, threads, "running job on local ranks");
        Runner::Ranks(launcher)
    };

    let mut times = Vec::new();
    for &stage in stages {
        let started = Instant::now();
        if stage.runs_on_workers() {
            runner.run(stage, spec, options.resume, &mut sink)?;
        } else {
            decide_plan(spec, &mut sink)?;
        }
        times.push((stage, started.elapsed().as_secs_f64()));
    }
    Ok(times)
}

/// The candidates of a local sweep, one row each.
fn sweep_table(outcomes: &[BranchOutcome]) -> String {
    use scop_core::summary::{millions, percent};
    // As wide as the longest name (candidate names run to 64 characters).
    let w = outcomes.iter().map(|o| o.candidate.chars().count()).chain([20]).max().unwrap_or(20);
    let mut lines = vec![format!(
        "{:<w$} {:>10} {:>10} {:>12} {:>16} {:>10}  {}",
        "CANDIDATE", "PARAMS", "FLOPS", "CPU LATENCY", "TOP-1 BEFORE FT", "TOP-1", "OUTPUT"
    )];
    for o in outcomes {
        let cell = |v: Option<f64>, f: fn(f64) -> String| v.map_or_else(|| "-".to_owned(), f);
        let line = match &o.summary {
            Some(s) => format!(
                "{:<w$} {:>10} {:>10} {:>12} {:>16} {:>10}  {}",
                o.candidate,
                cell(s.pruned.params, millions),
                cell(s.pruned.flops, millions),
                cell(o.latency_ms, |ms| format!("{ms:.2} ms")),
                cell(o.top1_before_finetune, percent),
                cell(s.pruned.top1, percent),
                o.dir.display()
            ),
            None => format!("{:<w$} failed: {}", o.candidate, o.error.as_deref().unwrap_or("")),
        };
        lines.push(line);
    }
    lines.join("\n")
}

/// The decide step, here in the launching process: writes `plan.json`.
fn decide_plan(spec: &JobSpec, sink: &mut dyn EventSink) -> Result<()> {
    let mut single = Single;
    let ctx = StageContext::new(spec, tch::Device::Cpu, &mut single, sink, false);
    let plan = decide::run(&ctx)?;
    ctx.sink.emit(&Event::PlanDecided {
        policy: format!("{:?}", spec.prune.policy).to_lowercase(),
        params_before: plan.summary.params_before,
        params_after: plan.summary.params_after,
        flops_before: plan.summary.flops_before,
        flops_after: plan.summary.flops_after,
    });
    Ok(())
}

/// The spec as the ranks read it: every path absolute, written into the output directory.
fn write_rank_spec(spec: &JobSpec) -> Result<PathBuf> {
    let mut spec = spec.clone();
    let cwd = std::env::current_dir().map_err(crate::stages::error::io(std::path::Path::new(".")))?;
    spec.resolve_paths(&cwd);
    let path = JobDir::new(&spec.output.dir).rank_spec();
    let text = serde_json::to_string_pretty(&spec).expect("the spec serialises");
    std::fs::write(&path, text).map_err(crate::stages::error::io(&path))?;
    Ok(path)
}

/// Writes and prints the summary table: the one `scopctl` shows for a
/// coordinator job, from the same figures (the export's model card).
fn summarize(spec: &JobSpec, times: Vec<(Stage, f64)>) -> Result<JobSummary> {
    let layout = JobDir::new(spec.output.dir.clone());
    let mut summary = JobSummary::for_spec(spec);
    for (stage, seconds) in times {
        summary.stage_finished(stage.as_str(), seconds);
    }
    let figures = layout.read_export_figures().map_err(crate::stages::Error::from)?;
    summary.apply(Stage::Export, &figures.metrics());
    let path = layout.summary();
    std::fs::write(&path, serde_json::to_vec_pretty(&summary).expect("summary serialises"))
        .map_err(crate::stages::error::io(&path))?;
    println!("{}", summary.render());
    println!("artifacts: {}", layout.export_dir().display());
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use scop_core::summary::{Figures, JobSummary};

    use super::*;

    #[test]
    fn the_sweep_table_stays_aligned_with_long_candidate_names() {
        let outcome = |name: &str| BranchOutcome {
            candidate: name.to_owned(),
            dir: PathBuf::from("out"),
            summary: Some(JobSummary {
                pruned: Figures {
                    params: Some(120_000.0),
                    flops: Some(13_590_000.0),
                    top1: Some(0.9095),
                    ..Figures::default()
                },
                ..JobSummary::default()
            }),
            top1_before_finetune: Some(0.6217),
            latency_ms: Some(0.75),
            error: None,
        };
        let table =
            sweep_table(&[outcome("scop-0.45-scatter"), outcome("scop-flops-0.562-group-with-a-long-name")]);
        // Every row ends its PARAMS column where the header does.
        let lines: Vec<&str> = table.lines().collect();
        let end = lines[0].find("PARAMS").unwrap() + "PARAMS".len();
        for line in &lines[1..] {
            assert_eq!(&line[end - 6..end], "0.12 M", "{table}");
        }
    }
}
