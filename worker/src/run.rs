//! `scop-worker run JOB.yaml`: every stage of a job, one after the other, in
//! this process, ending with the summary table.

use std::path::PathBuf;
use std::time::Instant;

use scop_core::spec::JobSpec;

use crate::events::{ConsoleAndJsonl, Event, format_duration};
use crate::models::count_params;
use crate::report::{ModelFigures, RunSummary};
use crate::stages::context::device_for;
use crate::stages::parallel::Single;
use crate::stages::{Result, StageContext, decide, export, finetune, knockoff, pretrain, weights};

/// How to run a job locally.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Replaces the spec's `output.dir`.
    pub output: Option<PathBuf>,
    /// Continue each stage from its latest checkpoint instead of starting over.
    pub resume: bool,
}

/// Runs the whole job; returns the figures of the summary table.
pub fn run_job(spec: &JobSpec, options: &RunOptions) -> Result<RunSummary> {
    let mut spec = spec.clone();
    if let Some(dir) = &options.output {
        spec.output.dir = dir.clone();
    }
    let threads = match spec.resources.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get() as i32),
        n => n as i32,
    };
    tch::set_num_threads(threads);
    let dir = spec.output.dir.clone();
    std::fs::create_dir_all(&dir).map_err(crate::stages::error::io(&dir))?;
    let log = dir.join("metrics.jsonl");
    let mut sink = ConsoleAndJsonl::new(&log).map_err(crate::stages::error::io(&log))?;
    let device = device_for(spec.resources.device, 0)?;
    let mut replicas = Single;
    let mut ctx = StageContext::new(&spec, device, &mut replicas, &mut sink, options.resume);
    tracing::info!(output = %dir.display(), ?device, threads, "running job");

    let mut times = Vec::new();
    let mut timed =
        |name: &str, started: Instant| times.push((name.to_owned(), started.elapsed().as_secs_f64()));

    if spec.pretrain.is_some() {
        let t = Instant::now();
        pretrain::run(&mut ctx)?;
        timed("pretrain", t);
    }
    let t = Instant::now();
    let knockoff = knockoff::run(&mut ctx)?;
    timed("knockoff", t);

    let t = Instant::now();
    let plan = decide::run(&ctx)?;
    timed("decide", t);
    ctx.sink.emit(&Event::PlanDecided {
        policy: format!("{:?}", spec.prune.policy).to_lowercase(),
        params_before: plan.summary.params_before,
        params_after: plan.summary.params_after,
        flops_before: plan.summary.flops_before,
        flops_after: plan.summary.flops_after,
    });

    let t = Instant::now();
    let finetuned = finetune::run(&mut ctx, &plan)?;
    timed("finetune", t);

    let t = Instant::now();
    let exported = export::run(&mut ctx)?;
    timed("export", t);

    let dense_desc = weights::dense_desc(&spec)?;
    let input = ctx.input_size() as u32;
    let pruned_desc = weights::read_arch(&ctx.layout.arch("finetune"))?;
    let (_, dense_vs) = weights::build(&dense_desc, tch::Device::Cpu, 0)?;
    let summary = RunSummary {
        network: spec.model.arch.clone(),
        dataset: dataset_name(&spec),
        prune_rate: spec.prune.rate,
        dense: ModelFigures {
            top1: knockoff.dense.top1,
            top5: knockoff.dense.top5,
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
    let path = dir.join("summary.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&summary).expect("summary serialises"))
        .map_err(crate::stages::error::io(&path))?;
    println!("{}", summary.render());
    println!("artifacts: {}", exported.dir.display());
    println!("total: {}", format_duration(summary.stage_seconds.iter().map(|(_, s)| s).sum::<f64>()));
    Ok(summary)
}

/// A short dataset name for reports: the data folder's name.
fn dataset_name(spec: &JobSpec) -> String {
    spec.data.root.file_name().map_or_else(|| "data".to_owned(), |n| n.to_string_lossy().into_owned())
}
