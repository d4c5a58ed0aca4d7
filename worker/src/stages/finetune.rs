//! The finetune stage: prune the network physically by the plan, recalibrate
//! its BN statistics, report the accuracy before finetuning, then train every
//! weight of the smaller network.

use scop_core::plan::Plan;
use scop_core::stage::Stage;

use super::context::StageContext;
use super::error::Result;
use super::export::StageMetrics;
use super::supervised::{Supervised, apply_amp};
use super::trainer::{LoopConfig, evaluate, run_epochs, sync_bn_statistics, to_device};
use super::weights;
use crate::data::Loader;
use crate::events::Event;
use crate::models::ResNet;
use crate::prune::apply_plan;
use crate::train::metrics::Summary;

const STAGE: &str = Stage::Finetune.as_str();

/// What finetuning measured.
#[derive(Debug, Clone, Copy)]
pub struct FinetuneReport {
    /// The pruned network after BN recalibration, before any training.
    pub before: Summary,
    pub after: Summary,
}

/// Prunes the scoring stage's weights (knockoff's, or score's for a criterion
/// other than SCOP) by `plan` and finetunes them; leaves the
/// result in `finetune/model.safetensors` with its (pruned) `arch.json`.
pub fn run(ctx: &mut StageContext<'_>, plan: &Plan) -> Result<FinetuneReport> {
    let spec = ctx.spec.finetune.clone();
    let desc = weights::dense_desc(ctx.spec)?;
    let scored = ctx.layout.model(ctx.spec.scoring_stage());
    let (dense, dense_vs) = weights::load(&desc, &scored, ctx.device)?;
    let (mut model, vs) = apply_plan(&dense, &dense_vs, plan)?;
    drop((dense, dense_vs));
    apply_amp(STAGE, &spec, &mut model, ctx.device);
    ctx.set_memory_format(STAGE, &mut model, &vs, spec.batch_size)?;

    let train = ctx.train_loader(spec.batch_size)?;
    let test = ctx.test_loader(spec.batch_size.max(256))?;
    if !ctx.resume || crate::checkpoint::latest(&ctx.layout.checkpoints(STAGE))?.is_none() {
        recalibrate_bn(ctx, &model, &train, spec.bn_recalibration_batches)?;
    }
    sync_bn_statistics(ctx, STAGE, &vs)?;
    let before = evaluate(ctx, STAGE, &model, &test)?;
    ctx.sink.emit(&Event::Evaluated {
        stage: STAGE.to_owned(),
        epoch: 0,
        loss: before.loss,
        top1: before.top1,
        top5: before.top5,
    });
    let cfg = LoopConfig::supervised(STAGE, &spec, train.batches_per_epoch() as u64);
    let mut hooks = Supervised::new(STAGE, &spec, &model, &vs);
    let after = run_epochs(ctx, &cfg, &vs, &train, &test, &mut hooks)?;
    if ctx.replicas.rank() == 0 {
        weights::save(&vs, model.desc(), &ctx.layout.model(STAGE), &ctx.layout.arch(STAGE))?;
        StageMetrics { before, after }.write(&ctx.layout.stage_metrics(STAGE))?;
    }
    Ok(FinetuneReport { before, after })
}

/// Forward passes in training mode without gradients, so the BN running
/// statistics describe the pruned network's activations (the reference does
/// this before finetuning). Uses the first `batches` batches of epoch 0.
pub fn recalibrate_bn(
    ctx: &mut StageContext<'_>,
    model: &ResNet,
    loader: &Loader,
    batches: u32,
) -> Result<()> {
    tch::no_grad(|| -> Result<()> {
        for batch in loader.epoch(0, 0)?.take(batches as usize) {
            let batch = batch?;
            let (images, _) = to_device(&batch, ctx.device);
            let _ = model.f_forward_t(&images, true)?;
        }
        Ok(())
    })?;
    // Each rank recalibrates on its own shard; the caller then gives every rank
    // rank 0's statistics, as after every epoch.
    Ok(())
}
