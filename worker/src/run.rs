//! `scop-worker run JOB.yaml`: every stage of a job, one after the other, ending
//! with the summary table. At world size 1 the stages run in this process; at
//! world size N each training stage runs as N rank processes started by
//! [`crate::launch::Launcher`], and decide runs here between knockoff and finetune.

use std::path::PathBuf;
use std::time::Instant;

use scop_core::spec::JobSpec;
use scop_core::stage::Stage;

use crate::events::{ConsoleAndJsonl, Event, EventSink, format_duration};
use crate::launch::Launcher;
use crate::models::count_params;
use crate::rank::run_stage;
use crate::report::{ModelFigures, RunSummary};
use crate::stages::context::device_for;
use crate::stages::export::StageMetrics;
use crate::stages::parallel::Single;
use crate::stages::{JobDir, StageContext, decide, weights};

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
    Launch(#[from] crate::launch::Error),
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

/// Runs the whole job; returns the figures of the summary table.
pub fn run_job(spec: &JobSpec, options: &RunOptions) -> Result<RunSummary> {
    let mut spec = spec.clone();
    if let Some(dir) = &options.output {
        spec.output.dir = dir.clone();
    }
    if let Some(world) = options.world_size {
        spec.resources.world_size = world;
    }
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
        let spec_file = write_rank_spec(&spec)?;
        let threads = Launcher::threads_per_rank(spec.resources.threads, world);
        let mut launcher = Launcher::new(spec_file, dir.clone(), world, spec.resources.device, threads)
            .with_resources(&spec.resources);
        launcher.resume = options.resume;
        tracing::info!(output = %dir.display(), world, threads, "running job on local ranks");
        Runner::Ranks(launcher)
    };

    let mut times = Vec::new();
    for &stage in spec.stages().stages() {
        let started = Instant::now();
        if stage.runs_on_workers() {
            runner.run(stage, &spec, options.resume, &mut sink)?;
        } else {
            decide_plan(&spec, &mut sink)?;
        }
        times.push((stage.as_str().to_owned(), started.elapsed().as_secs_f64()));
    }
    summarize(&spec, times)
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

/// Builds, writes and prints the summary table from the stages' files.
fn summarize(spec: &JobSpec, times: Vec<(String, f64)>) -> Result<RunSummary> {
    let layout = JobDir::new(spec.output.dir.clone());
    let knockoff: StageMetrics =
        layout.read_stage_metrics(spec.scoring_stage()).map_err(crate::stages::Error::from)?;
    let finetuned: StageMetrics =
        layout.read_stage_metrics(Stage::Finetune).map_err(crate::stages::Error::from)?;
    let dense_desc = weights::dense_desc(spec)?;
    let input = {
        let mut single = Single;
        let mut quiet = crate::events::Recorder::default();
        StageContext::new(spec, tch::Device::Cpu, &mut single, &mut quiet, false).input_size() as u32
    };
    let pruned_desc = weights::read_arch(&layout.arch(Stage::Finetune))?;
    let (_, dense_vs) = weights::build(&dense_desc, tch::Device::Cpu, 0)?;
    let summary = RunSummary {
        network: spec.model.arch.clone(),
        dataset: dataset_name(spec),
        prune_rate: spec.prune.rate,
        dense: ModelFigures {
            top1: knockoff.before.top1,
            top5: knockoff.before.top5,
            params: count_params(&dense_vs),
            flops: dense_desc.cost(input).flops,
        },
        pruned: ModelFigures {
            top1: finetuned.after.top1,
            top5: finetuned.after.top5,
            params: pruned_desc.params(),
            flops: pruned_desc.cost(input).flops,
        },
        stage_seconds: times,
    };
    let path = layout.summary();
    std::fs::write(&path, serde_json::to_vec_pretty(&summary).expect("summary serialises"))
        .map_err(crate::stages::error::io(&path))?;
    println!("{}", summary.render());
    println!("artifacts: {}", layout.export_dir().display());
    println!("total: {}", format_duration(summary.stage_seconds.iter().map(|(_, s)| s).sum::<f64>()));
    Ok(summary)
}

/// A short dataset name for reports: the data folder's name.
fn dataset_name(spec: &JobSpec) -> String {
    spec.data.root.file_name().map_or_else(|| "data".to_owned(), |n| n.to_string_lossy().into_owned())
}
