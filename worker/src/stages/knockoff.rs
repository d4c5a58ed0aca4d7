//! The knockoff stage: learn each filter's control coefficient β against
//! knockoff data, with every other variable frozen.
//!
//! Each step feeds `[real; knockoff]` through the network with its units in
//! knockoff mode, takes cross-entropy on the real half (or on both halves with
//! the knockoffs' labels), averages β's gradients over ranks, steps Adam and
//! clamps β to [0, 1]. After every epoch rank 0's β and |γ| are emitted as the
//! score statistics and appended to `knockoff/statistics.jsonl`.

use std::io::Write;

use scop_core::spec::{KnockoffLoss, KnockoffSpec, Schedule};
use scop_core::stage::Stage;
use scop_core::stats::{ScoreStatistics, UnitStatistics};
use tch::Tensor;
use tch::nn::VarStore;

use super::context::StageContext;
use super::error::{InStage, Result, io};
use super::export::StageMetrics;
use super::knockoff_source::Knockoffs;
use super::trainer::{LoopConfig, StageHooks, StepResult, cross_entropy, evaluate, run_epochs, to_device};
use super::weights;
use crate::data::Batch;
use crate::events::Event;
use crate::models::{ResNet, freeze_all_but_kfscale, is_kfscale};
use crate::train::metrics::Summary;
use crate::train::optim::{Optimizer, Rule};
use crate::train::schedule::LrSchedule;

const STAGE: &str = Stage::Knockoff.as_str();

/// What the knockoff stage measured.
#[derive(Debug, Clone, Copy)]
pub struct KnockoffReport {
    /// The dense network it started from: the baseline of the job.
    pub dense: Summary,
    /// After the stage, in eval mode (plain conv + BN, with the BN statistics it saw).
    pub after: Summary,
}

/// Loads the dense weights to score (the pretrain stage's, else `model.init_from`),
/// evaluates them as the job's baseline, trains β, and leaves the weights in
/// `knockoff/model.safetensors` and the statistics in `knockoff/statistics.jsonl`.
pub fn run(ctx: &mut StageContext<'_>) -> Result<KnockoffReport> {
    let desc = weights::dense_desc(ctx.spec)?;
    let source = weights::dense_source(ctx.spec, &ctx.layout, STAGE)?;
    let (mut model, vs) = weights::load(&desc, &source, ctx.device)?;
    // A knockoff step runs the batch [real; knockoff]: twice the loader's batch.
    ctx.set_memory_format(STAGE, &mut model, &vs, 2 * ctx.spec.knockoff.batch_size)?;
    let test = ctx.test_loader(ctx.spec.knockoff.batch_size.max(256))?;
    let dense = evaluate(ctx, STAGE, &model, &test)?;
    ctx.sink.emit(&Event::Evaluated {
        stage: STAGE.to_owned(),
        epoch: 0,
        loss: dense.loss,
        top1: dense.top1,
        top5: dense.top5,
    });
    let after = train(ctx, &mut model, &vs)?;
    if ctx.replicas.rank() == 0 {
        weights::save(&vs, &desc, &ctx.layout.model(STAGE), &ctx.layout.arch(STAGE))?;
        StageMetrics { before: dense, after }.write(&ctx.layout.stage_metrics(STAGE))?;
    }
    Ok(KnockoffReport { dense, after })
}

/// Trains β of `model` (already loaded with the weights to score) for the spec's
/// epochs; returns the last evaluation. `model` is switched to knockoff mode.
pub fn train(ctx: &mut StageContext<'_>, model: &mut ResNet, vs: &VarStore) -> Result<Summary> {
    let spec = ctx.spec.knockoff.clone();
    let train_loader = ctx.train_loader(spec.batch_size)?;
    let test_loader = ctx.test_loader(spec.batch_size.max(256))?;
    let steps_per_epoch = train_loader.batches_per_epoch() as u64;
    let cfg = LoopConfig {
        stage: STAGE,
        epochs: spec.epochs,
        schedule: LrSchedule::new(spec.lr, Schedule::Constant, 0.0, steps_per_epoch, spec.epochs),
        checkpoint_every_steps: spec.checkpoint_every_steps,
    };
    let epochs = spec.epochs;
    let mut hooks = KnockoffHooks::new(spec, model, vs, ctx.device)?;
    if ctx.replicas.rank() == 0 && !ctx.resume {
        // A fresh stage starts a fresh history.
        let path = ctx.layout.statistics();
        if path.exists() {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    let summary = run_epochs(ctx, &cfg, vs, &train_loader, &test_loader, &mut hooks)?;
    if ctx.replicas.rank() == 0 && epochs > 0 && hooks.reported < epochs {
        // Resumed from the checkpoint written after the final epoch: this
        // attempt trained nothing, yet the coordinator decides only from the
        // statistics of the attempt that succeeds. They are the restored
        // model's (the checkpoint was written after they were taken), already
        // in statistics.jsonl, so they are only reported again.
        ctx.sink.emit(&Event::Statistics(statistics(hooks.model, epochs)?));
    }
    Ok(summary)
}

/// The knockoff step and its score statistics, as hooks of the shared epoch loop.
pub struct KnockoffHooks<'m> {
    spec: KnockoffSpec,
    knockoffs: Knockoffs,
    model: &'m mut ResNet,
    optimizer: Optimizer,
    trainable: Vec<Tensor>,
    /// The last epoch whose statistics this run reported (0: none).
    reported: u32,
}

impl<'m> KnockoffHooks<'m> {
    /// Switches `model` to knockoff mode, freezes everything but β and sets up
    /// Adam over β and the spec's knockoff source.
    pub fn new(
        spec: KnockoffSpec,
        model: &'m mut ResNet,
        vs: &VarStore,
        device: tch::Device,
    ) -> Result<Self> {
        model.enable_knockoff(&vs.root())?;
        freeze_all_but_kfscale(vs);
        let mut betas: Vec<(String, Tensor)> =
            vs.variables().into_iter().filter(|(n, _)| is_kfscale(n)).collect();
        betas.sort_by(|a, b| a.0.cmp(&b.0));
        let trainable: Vec<Tensor> = betas.iter().map(|(_, t)| t.shallow_clone()).collect();
        let rule = Rule::Adam { beta1: spec.betas.0, beta2: spec.betas.1, eps: 1e-8, weight_decay: 0.0 };
        let optimizer = Optimizer::new(rule, betas.into_iter().map(|(n, t)| (n, t, false)).collect());
        Ok(Self {
            knockoffs: Knockoffs::from_spec(&spec.source, device)?,
            spec,
            model,
            optimizer,
            trainable,
            reported: 0,
        })
    }
}

/// Mixes the job seed and the step into the seed of that step's knockoffs.
fn step_seed(seed: u64, global_step: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ global_step.wrapping_add(0x6B6F_636B_6F66_6673)
}

impl StageHooks for KnockoffHooks<'_> {
    fn step(
        &mut self,
        ctx: &mut StageContext<'_>,
        batch: &Batch,
        lr: f64,
        global_step: u64,
    ) -> Result<StepResult> {
        let (images, labels) = to_device(batch, ctx.device);
        let b = images.size()[0];
        let knock = self.knockoffs.make(&images, &labels, step_seed(ctx.spec.seed, global_step))?;
        let input = Tensor::f_cat(&[&images, &knock.images], 0).in_stage(STAGE)?;
        self.optimizer.zero_grad();
        let logits = self.model.f_forward_t(&input, true)?;
        let real = logits.f_narrow(0, 0, b).in_stage(STAGE)?;
        let loss = match self.spec.loss {
            KnockoffLoss::Real => cross_entropy(&real, &labels, 0.0),
            KnockoffLoss::Both => {
                let all = Tensor::f_cat(&[&labels, &knock.labels], 0).in_stage(STAGE)?;
                cross_entropy(&logits, &all, 0.0)
            }
        }
        .in_stage(STAGE)?;
        loss.f_backward().in_stage(STAGE)?;
        let grads: Vec<Tensor> = self.trainable.iter().map(Tensor::grad).collect();
        ctx.replicas.average_gradients(&grads).in_stage(STAGE)?;
        self.optimizer.step(lr).in_stage(STAGE)?;
        self.model.clamp_kfscale()?;
        Ok(StepResult { loss: loss.f_double_value(&[]).in_stage(STAGE)?, logits: real.detach(), labels })
    }

    fn epoch_end(&mut self, ctx: &mut StageContext<'_>, epoch: u32) -> Result<()> {
        self.reported = epoch;
        if ctx.replicas.rank() != 0 {
            return Ok(());
        }
        let stats = statistics(self.model, epoch)?;
        let path = ctx.layout.statistics();
        let dir = ctx.layout.stage_dir(STAGE);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let line = serde_json::to_string(&stats).expect("statistics serialise");
        let mut file =
            std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(io(&path))?;
        writeln!(file, "{line}").map_err(io(&path))?;
        ctx.sink.emit(&Event::Statistics(stats));
        Ok(())
    }

    fn optimizer(&mut self) -> &mut Optimizer {
        &mut self.optimizer
    }

    fn model(&self) -> &ResNet {
        self.model
    }
}

/// The model's current β and |γ| per unit.
pub fn statistics(model: &ResNet, epoch: u32) -> Result<ScoreStatistics> {
    let units = model
        .knockoff_state()?
        .into_iter()
        .map(|u| UnitStatistics::scop(u.name, u.beta, u.gamma_abs))
        .collect();
    Ok(ScoreStatistics { epoch, units })
}

/// The last line of `statistics.jsonl`: the statistics the plan is decided from.
pub use scop_core::job_dir::read_last_statistics;
