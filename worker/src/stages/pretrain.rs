//! The optional pretrain stage: ordinary training of the dense network from
//! scratch (or from `model.init_from`), so a job can start without a checkpoint.

use scop_core::stage::Stage;

use super::context::StageContext;
use super::error::{Error, Result};
use super::supervised::{Supervised, apply_amp};
use super::trainer::{LoopConfig, run_epochs};
use super::weights;
use crate::train::metrics::Summary;

const STAGE: &str = Stage::Pretrain.as_str();

/// Trains the dense model and leaves it in `pretrain/model.safetensors`.
pub fn run(ctx: &mut StageContext<'_>) -> Result<Summary> {
    let spec =
        ctx.spec.pretrain.clone().ok_or_else(|| Error::Input("the spec has no pretrain section".into()))?;
    let desc = weights::dense_desc(ctx.spec)?;
    let (mut model, vs) = match &ctx.spec.model.init_from {
        Some(path) => weights::load(&desc, path, ctx.device)?,
        None => weights::build(&desc, ctx.device, ctx.spec.seed)?,
    };
    apply_amp(STAGE, &spec, &mut model, ctx.device);
    ctx.set_memory_format(STAGE, &mut model, &vs, spec.batch_size)?;
    let train = ctx.train_loader(spec.batch_size)?;
    let test = ctx.test_loader(spec.batch_size.max(256))?;
    let cfg = LoopConfig::supervised(STAGE, &spec, train.batches_per_epoch() as u64);
    let mut hooks = Supervised::new(STAGE, &spec, &model, &vs);
    let summary = run_epochs(ctx, &cfg, &vs, &train, &test, &mut hooks)?;
    if ctx.replicas.rank() == 0 {
        weights::save(&vs, &desc, &ctx.layout.model(STAGE), &ctx.layout.arch(STAGE))?;
    }
    Ok(summary)
}
