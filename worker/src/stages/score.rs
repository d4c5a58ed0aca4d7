//! The score stage: for a `prune.criterion` other than `scop`, score every
//! channel of the dense network by that criterion (`crate::criteria`), in place
//! of the knockoff stage.
//!
//! It loads the dense weights (the pretrain stage's, else `model.init_from`),
//! evaluates them as the job's baseline, computes the scores (for `taylor`
//! after a pass over `prune.taylor_batches` training batches per rank, the
//! gradients averaged over ranks), and on rank 0 emits them as the score
//! statistics of epoch 1, appends them to `score/statistics.jsonl` and leaves
//! the weights it scored in `score/model.safetensors` for finetune, as the
//! knockoff stage does.

use std::io::Write;

use scop_core::spec::Criterion;
use scop_core::stage::Stage;
use scop_core::stats::{ScoreStatistics, UnitStatistics};
use tch::Tensor;
use tch::nn::VarStore;

use super::context::StageContext;
use super::error::{InStage, Result, io};
use super::export::StageMetrics;
use super::parallel::Replicas;
use super::trainer::{cross_entropy, evaluate, to_device};
use super::weights;
use crate::criteria;
use crate::events::Event;
use crate::models::ResNet;
use crate::train::metrics::Summary;

const STAGE: &str = Stage::Score.as_str();

/// The epoch the score stage's statistics carry: it takes them once.
pub const SCORE_EPOCH: u32 = 1;

/// What the score stage measured.
#[derive(Debug, Clone)]
pub struct ScoreReport {
    /// The dense network it scored: the baseline of the job.
    pub dense: Summary,
    pub statistics: ScoreStatistics,
}

/// Scores the dense weights by the spec's criterion; see the module's doc.
pub fn run(ctx: &mut StageContext<'_>) -> Result<ScoreReport> {
    let criterion = ctx.spec.prune.criterion;
    if criterion.needs_knockoff() {
        return Err(super::Error::Input(format!(
            "prune.criterion: {} is scored by the knockoff stage, not the score stage",
            criterion.as_str()
        )));
    }
    let desc = weights::dense_desc(ctx.spec)?;
    let source = weights::dense_source(ctx.spec, &ctx.layout, STAGE)?;
    let (model, vs) = weights::load(&desc, &source, ctx.device)?;
    let test = ctx.test_loader(ctx.spec.finetune.batch_size.max(256))?;
    let dense = evaluate(ctx, STAGE, &model, &test)?;
    ctx.sink.emit(&Event::Evaluated {
        stage: STAGE.to_owned(),
        epoch: 0,
        loss: dense.loss,
        top1: dense.top1,
        top5: dense.top5,
    });
    let statistics = statistics(ctx, &model, &vs)?;
    if ctx.replicas.rank() == 0 {
        let dir = ctx.layout.stage_dir(STAGE);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        // One line: a retried stage replaces what an earlier attempt wrote.
        let path = ctx.layout.statistics_of(Stage::Score);
        let line = serde_json::to_string(&statistics).expect("statistics serialise");
        let mut file = std::fs::File::create(&path).map_err(io(&path))?;
        writeln!(file, "{line}").map_err(io(&path))?;
        ctx.sink.emit(&Event::Statistics(statistics.clone()));
        weights::save(&vs, &desc, &ctx.layout.model(STAGE), &ctx.layout.arch(STAGE))?;
        StageMetrics { before: dense, after: dense }.write(&ctx.layout.stage_metrics(STAGE))?;
    }
    Ok(ScoreReport { dense, statistics })
}

/// Every unit's scores by the spec's criterion, with |γ| beside them.
pub fn statistics(ctx: &mut StageContext<'_>, model: &ResNet, vs: &VarStore) -> Result<ScoreStatistics> {
    let criterion = ctx.spec.prune.criterion;
    let scores = if criterion == Criterion::Taylor {
        let prune = &ctx.spec.prune;
        let loader = ctx.train_loader(prune.taylor_batch_size)?;
        let device = ctx.device;
        let batches = loader.epoch(0, 0)?.take(prune.taylor_batches as usize).map(|batch| {
            let batch = batch?;
            Ok(to_device(&batch, device))
        });
        taylor(model, vs, batches, ctx.replicas)?
    } else {
        criteria::weight_scores(criterion, model, ctx.spec.seed)?.ok_or_else(|| {
            super::Error::Input(format!("prune.criterion: {} has no score stage", criterion.as_str()))
        })?
    };
    let mut units = Vec::with_capacity(scores.len());
    for ((name, score), unit) in scores.into_iter().zip(model.units()) {
        let gamma_abs = criteria::bn_gamma(&unit.layer().bn.weight, &name)?;
        units.push(UnitStatistics::scored(name, score, gamma_abs));
    }
    Ok(ScoreStatistics { epoch: SCORE_EPOCH, units })
}

/// First-order Taylor scores `|Σ W_c · G_c|` of every unit, `G` the gradient of
/// the mean cross-entropy averaged over `batches` (in eval mode, so BN uses its
/// running statistics and nothing in `vs` changes) and then over ranks.
pub fn taylor(
    model: &ResNet,
    vs: &VarStore,
    batches: impl Iterator<Item = Result<(Tensor, Tensor)>>,
    replicas: &mut dyn Replicas,
) -> Result<criteria::UnitScores> {
    for var in vs.trainable_variables() {
        let mut grad = var.grad();
        if grad.defined() {
            let _ = grad.f_zero_().in_stage(STAGE)?;
        }
    }
    let mut seen = 0u32;
    for batch in batches {
        let (images, labels) = batch?;
        let logits = model.f_forward_t(&images, false)?;
        let loss = cross_entropy(&logits, &labels, 0.0).in_stage(STAGE)?;
        loss.f_backward().in_stage(STAGE)?;
        seen += 1;
    }
    if seen == 0 {
        return Err(super::Error::Input(
            "prune.criterion: taylor needs at least one training batch on every rank; \
             lower prune.taylor_batch_size or add training data"
                .into(),
        ));
    }
    let weights: Vec<&Tensor> = model.units().map(|u| &u.layer().weight).collect();
    let grads: Vec<Tensor> = weights
        .iter()
        .map(|w| w.grad().f_div_scalar(f64::from(seen)))
        .collect::<std::result::Result<_, _>>()
        .in_stage(STAGE)?;
    replicas.average_gradients(&grads).in_stage(STAGE)?;
    model
        .units()
        .zip(weights.iter().zip(&grads))
        .map(|(unit, (w, g))| Ok((unit.name().to_owned(), criteria::taylor(w, g, unit.name())?)))
        .collect()
}
