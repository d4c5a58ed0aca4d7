//! The export stage: the finetuned network as safetensors + `arch.json`,
//! TorchScript and a model card carrying the evaluated metrics and the
//! preprocessing a user must apply to raw images.

use std::path::PathBuf;

use scop_core::stage::Stage;
use serde::{Deserialize, Serialize};

use super::context::StageContext;
use super::error::{Result, io};
use super::weights;
use crate::data::{Dataset, ModelInput, Split};
use crate::export::{ExportPaths, ModelCard, export};
use crate::train::metrics::Summary;

/// Evaluations a stage leaves in `<stage>/metrics.json` for the export and the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StageMetrics {
    /// Before the stage trained (the dense baseline for knockoff; the pruned,
    /// recalibrated network for finetune).
    pub before: Summary,
    pub after: Summary,
}

impl StageMetrics {
    pub fn write(&self, path: &std::path::Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        super::error::write_atomic(path, &serde_json::to_vec_pretty(self).expect("metrics serialise"))
    }
}

/// Where the export went.
#[derive(Debug, Clone)]
pub struct ExportReport {
    pub dir: PathBuf,
    pub paths: ExportPaths,
}

/// Exports `finetune/`'s network into `export/` and completes its model card.
pub fn run(ctx: &mut StageContext<'_>) -> Result<ExportReport> {
    let layout = ctx.layout.clone();
    let desc = weights::read_arch(&layout.arch(Stage::Finetune))?;
    let (model, vs) = weights::load(&desc, &layout.model(Stage::Finetune), tch::Device::Cpu)?;
    let plan = ctx.plan()?;
    let input_size = ctx.input_size() as u32;
    let dir = layout.export_dir();
    let paths = export(&dir, &model, &vs, Some(&plan), input_size)?;

    // The scoring stage (knockoff or score) evaluated the dense network first.
    let knockoff: StageMetrics = layout.read_stage_metrics(ctx.spec.scoring_stage())?;
    let finetune: StageMetrics = layout.read_stage_metrics(Stage::Finetune)?;
    let mut card = ModelCard::read(&paths.card)?;
    for (key, value) in [
        ("top1_dense", knockoff.before.top1),
        ("top5_dense", knockoff.before.top5),
        ("top1_pruned_before_finetune", finetune.before.top1),
        ("top1_pruned", finetune.after.top1),
        ("top5_pruned", finetune.after.top5),
        ("loss_pruned", finetune.after.loss),
    ] {
        card.metrics.insert(key.to_owned(), value);
    }
    let input = ModelInput {
        size: ctx.input_size(),
        channels: Some(desc.in_channels as usize),
        num_classes: desc.num_classes as usize,
    };
    card.preprocessing = Some(Dataset::from_spec(&ctx.spec.data, Split::Test, input)?.preprocessing());
    let shape = [1, i64::from(desc.in_channels), i64::from(input_size), i64::from(input_size)];
    card.metrics.insert(LATENCY_METRIC.to_owned(), cpu_latency_ms(&paths.torchscript, shape)?);
    card.write(&paths.card)?;
    Ok(ExportReport { dir, paths })
}

/// The model card's measured latency: milliseconds per single-image forward of
/// the exported TorchScript module on the CPU, the median of [`LATENCY_RUNS`]
/// after [`LATENCY_WARMUP`] untimed ones, with the rank's intra-op threads.
pub const LATENCY_METRIC: &str = "latency_ms";
const LATENCY_WARMUP: usize = 3;
const LATENCY_RUNS: usize = 15;

fn cpu_latency_ms(torchscript: &std::path::Path, shape: [i64; 4]) -> Result<f64> {
    use super::error::InStage;
    let module =
        tch::CModule::load_on_device(torchscript, tch::Device::Cpu).in_stage(Stage::Export.as_str())?;
    let input = tch::Tensor::zeros(shape, (tch::Kind::Float, tch::Device::Cpu));
    let _no_grad = tch::no_grad_guard();
    let mut times = Vec::with_capacity(LATENCY_RUNS);
    for run in 0..LATENCY_WARMUP + LATENCY_RUNS {
        let started = std::time::Instant::now();
        let out = module.forward_ts(&[&input]).in_stage(Stage::Export.as_str())?;
        // Reading one value waits for the whole forward.
        let _ = out.double_value(&[0, 0]);
        if run >= LATENCY_WARMUP {
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}
