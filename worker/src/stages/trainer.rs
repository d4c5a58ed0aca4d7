//! The epoch loop every training stage shares: batches, steps, progress,
//! checkpoints, resume, evaluation and the non-finite-loss guard.
//!
//! A stage supplies the step (what one batch does to the model) and the
//! trainer does the rest. Resuming from the latest checkpoint restores the
//! variables, the optimiser state, the schedule position and the place in the
//! data order, so the stage continues exactly where it stopped.

use std::time::Instant;

use tch::nn::VarStore;
use tch::{Device, Tensor};

use super::context::StageContext;
use super::error::{InStage, Result};
use crate::checkpoint::{self, CheckpointState};
use crate::data::{Batch, Loader};
use crate::events::Event;
use crate::models::ResNet;
use crate::train::metrics::{Summary, Tally};
use crate::train::optim::Optimizer;
use crate::train::schedule::LrSchedule;

/// What one training step reports back to the loop.
#[derive(Debug)]
pub struct StepResult {
    /// Mean loss of the batch.
    pub loss: f64,
    /// Logits and labels of the real samples, for the running accuracy.
    pub logits: Tensor,
    pub labels: Tensor,
}

/// What a stage plugs into the loop.
pub trait StageHooks {
    /// One optimiser step on `batch` with learning rate `lr`; `global_step` counts from 0.
    fn step(
        &mut self,
        ctx: &mut StageContext<'_>,
        batch: &Batch,
        lr: f64,
        global_step: u64,
    ) -> Result<StepResult>;

    /// The optimiser whose state goes into checkpoints.
    fn optimizer(&mut self) -> &mut Optimizer;

    /// The model being trained, for evaluation.
    fn model(&self) -> &ResNet;

    /// Called after each epoch's training, before evaluation; `epoch` counts from 1.
    fn epoch_end(&mut self, _ctx: &mut StageContext<'_>, _epoch: u32) -> Result<()> {
        Ok(())
    }
}

/// The fixed parameters of one stage's loop.
#[derive(Debug)]
pub struct LoopConfig {
    pub stage: &'static str,
    pub epochs: u32,
    pub schedule: LrSchedule,
    pub checkpoint_every_steps: u64,
}

impl LoopConfig {
    /// The loop of a supervised stage (pretrain, finetune) as its training section describes it.
    pub fn supervised(stage: &'static str, spec: &scop_core::spec::TrainSpec, steps_per_epoch: u64) -> Self {
        Self {
            stage,
            epochs: spec.epochs,
            schedule: LrSchedule::new(
                spec.lr,
                spec.schedule,
                spec.warmup_epochs,
                steps_per_epoch,
                spec.epochs,
            ),
            checkpoint_every_steps: spec.checkpoint_every_steps,
        }
    }
}

/// Where the loop starts: fresh, or from a checkpoint.
#[derive(Debug, Clone, Copy, Default)]
struct Position {
    epoch: u32,
    batch: u64,
    global_step: u64,
}

/// Runs `step` over every remaining batch of every epoch; evaluates after each epoch.
/// Returns the last evaluation.
pub fn run_epochs(
    ctx: &mut StageContext<'_>,
    cfg: &LoopConfig,
    vs: &VarStore,
    train: &Loader,
    test: &Loader,
    hooks: &mut dyn StageHooks,
) -> Result<Summary> {
    let stage = cfg.stage;
    let steps_per_epoch = train.batches_per_epoch() as u64;
    let mut pos = resume(ctx, stage, vs, hooks.optimizer())?;
    // Broadcast from rank 0 at the start; compared once per epoch, after the BN
    // statistics are synchronised.
    let everything: Vec<Tensor> = sorted_variables(vs).into_iter().map(|(_, t)| t).collect();
    if pos.global_step == 0 {
        ctx.replicas.broadcast_from_root(&everything).in_stage(stage)?;
    }
    ctx.sink.emit(&Event::StageStarted { stage: stage.to_owned(), epochs: cfg.epochs, steps_per_epoch });

    let total_steps = steps_per_epoch * u64::from(cfg.epochs);
    let log_every = ctx.spec.output.log_every_steps;
    let started = Instant::now();
    let steps_at_start = pos.global_step;
    let mut last = Summary::default();
    while pos.epoch < cfg.epochs {
        let mut window = Tally::default();
        let mut window_steps = 0u64;
        let mut window_start = Instant::now();
        for batch in train.epoch(u64::from(pos.epoch), pos.batch as usize)? {
            let batch = batch?;
            let lr = cfg.schedule.lr_at(pos.global_step);
            let result = hooks.step(ctx, &batch, lr, pos.global_step)?;
            if !result.loss.is_finite() {
                return Err(super::Error::NonFiniteLoss {
                    stage: stage.to_owned(),
                    epoch: pos.epoch + 1,
                    step: pos.batch + 1,
                    value: result.loss,
                });
            }
            window.add(result.loss, &result.logits, &result.labels);
            window_steps += 1;
            pos.batch += 1;
            pos.global_step += 1;

            // A stop asked for by a signal: one rank decides alone; a group agrees on it
            // at the next progress report, whose sums are exchanged anyway, so every rank
            // stops after the same step without another collective per step.
            let mut stop = ctx.replicas.world() == 1 && crate::interrupt::requested();
            if pos.batch % log_every == 0 || pos.batch == steps_per_epoch {
                // Taken before the metrics are summed, so that sum is not counted as step time.
                let seconds = window_start.elapsed().as_secs_f64().max(1e-9);
                let allreduce = ctx.replicas.take_allreduce_seconds();
                let steps_in_window = window_steps.max(1) as f64;
                let asked = f64::from(u8::from(crate::interrupt::requested()));
                let mut sums = [window.samples as f64, window.loss_sum, window.top1 as f64, asked];
                ctx.replicas.sum_scalars(&mut sums).in_stage(stage)?;
                stop |= sums[3] > 0.0;
                let done = (pos.global_step - steps_at_start) as f64;
                let per_step = started.elapsed().as_secs_f64() / done.max(1.0);
                ctx.sink.emit(&Event::Progress {
                    stage: stage.to_owned(),
                    epoch: pos.epoch + 1,
                    epochs: cfg.epochs,
                    step: pos.batch,
                    steps: steps_per_epoch,
                    loss: sums[1] / sums[0].max(1.0),
                    accuracy: sums[2] / sums[0].max(1.0),
                    samples_per_second: sums[0] / seconds,
                    eta_seconds: per_step * (total_steps - pos.global_step) as f64,
                    lr,
                    step_seconds: seconds / steps_in_window,
                    allreduce_seconds: allreduce / steps_in_window,
                });
                window = Tally::default();
                window_steps = 0;
                window_start = Instant::now();
            }
            if stop {
                save(ctx, stage, vs, hooks.optimizer(), pos)?;
                return Err(super::Error::Interrupted {
                    stage: stage.to_owned(),
                    epoch: pos.epoch + 1,
                    step: pos.batch,
                });
            }
            if cfg.checkpoint_every_steps > 0
                && pos.global_step % cfg.checkpoint_every_steps == 0
                && pos.batch < steps_per_epoch
            {
                save(ctx, stage, vs, hooks.optimizer(), pos)?;
            }
        }
        pos.epoch += 1;
        pos.batch = 0;
        sync_bn_statistics(ctx, stage, vs)?;
        ctx.replicas.check_in_sync(&everything).in_stage(stage)?;
        hooks.epoch_end(ctx, pos.epoch)?;
        last = evaluate(ctx, stage, hooks.model(), test)?;
        ctx.sink.emit(&Event::Evaluated {
            stage: stage.to_owned(),
            epoch: pos.epoch,
            loss: last.loss,
            top1: last.top1,
            top5: last.top5,
        });
        save(ctx, stage, vs, hooks.optimizer(), pos)?;
    }
    // No epoch ran here (none asked for, or resumed after the last one): the
    // summary is still the model's, not zeros.
    if pos.global_step == steps_at_start && pos.epoch >= cfg.epochs {
        last = evaluate(ctx, stage, hooks.model(), test)?;
    }
    Ok(last)
}

/// Accuracy and loss on `loader` in eval mode, summed over ranks, with every BN
/// folded into its conv (the same logits, one pass over each activation fewer).
pub fn evaluate(ctx: &mut StageContext<'_>, stage: &str, model: &ResNet, loader: &Loader) -> Result<Summary> {
    let folded = model.fold_batch_norm()?;
    let mut tally = Tally::default();
    for batch in loader.epoch(0, 0)? {
        let batch = batch?;
        let (loss, logits) = tch::no_grad(|| -> Result<(f64, Tensor)> {
            let images = batch.images.to_device(ctx.device);
            let labels = batch.labels.to_device(ctx.device);
            let logits = folded.f_forward(&images)?;
            let loss = cross_entropy(&logits, &labels, 0.0).in_stage(stage)?;
            Ok((loss.f_double_value(&[]).in_stage(stage)?, logits))
        })?;
        tally.add(loss, &logits, &batch.labels.to_device(ctx.device));
    }
    let mut sums = [tally.samples as f64, tally.loss_sum, tally.top1 as f64, tally.top5 as f64];
    ctx.replicas.sum_scalars(&mut sums).in_stage(stage)?;
    let n = sums[0].max(1.0);
    Ok(Summary { samples: sums[0] as u64, loss: sums[1] / n, top1: sums[2] / n, top5: sums[3] / n })
}

/// Gives every rank rank 0's BN running statistics.
///
/// Training normalises with each rank's own batch statistics; the running ones
/// serve only evaluation and the saved model, which is rank 0's. PyTorch DDP
/// keeps them as rank 0's too (`broadcast_buffers`, at every forward). Doing it
/// before each evaluation is enough for the same result, and makes the accuracy
/// a group reports, over all its shards, that of the model it saves.
pub fn sync_bn_statistics(ctx: &mut StageContext<'_>, stage: &str, vs: &VarStore) -> Result<()> {
    // The replicas decide whether there is anything to exchange (a one-rank NCCL
    // group still goes through NCCL).
    let buffers: Vec<Tensor> =
        sorted_variables(vs).into_iter().filter(|(n, _)| is_bn_buffer(n)).map(|(_, t)| t).collect();
    ctx.replicas.broadcast_from_root(&buffers).in_stage(stage)
}

/// Whether a variable is a BN running statistic rather than a parameter.
pub fn is_bn_buffer(name: &str) -> bool {
    name.ends_with(".running_mean")
        || name.ends_with(".running_var")
        || name.ends_with(".num_batches_tracked")
}

/// The VarStore's variables sorted by name, so every rank walks them in the same order.
pub fn sorted_variables(vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

fn save(
    ctx: &mut StageContext<'_>,
    stage: &str,
    vs: &VarStore,
    opt: &Optimizer,
    pos: Position,
) -> Result<()> {
    // Replicas are identical, so rank 0 writes for everyone.
    if ctx.replicas.rank() != 0 {
        return Ok(());
    }
    let mut tensors: Vec<(String, Tensor)> =
        sorted_variables(vs).into_iter().map(|(n, t)| (format!("model.{n}"), t)).collect();
    tensors.extend(opt.state());
    let state = CheckpointState {
        stage: stage.to_owned(),
        epoch: pos.epoch,
        batch: pos.batch,
        global_step: pos.global_step,
        seed: ctx.spec.seed,
        extra: serde_json::json!({ "optimizer_steps": opt.steps() }),
    };
    let keep = usize::try_from(ctx.spec.checkpoint.keep).unwrap_or(usize::MAX);
    let path = checkpoint::save(&ctx.layout.checkpoints(stage), &state, &tensors, keep)?;
    ctx.sink.emit(&Event::CheckpointWritten { stage: stage.to_owned(), path });
    Ok(())
}

/// Restores the latest checkpoint of `stage`, if resuming and one exists.
fn resume(ctx: &mut StageContext<'_>, stage: &str, vs: &VarStore, opt: &mut Optimizer) -> Result<Position> {
    if !ctx.resume {
        return Ok(Position::default());
    }
    let Some(restored) = checkpoint::restore(&ctx.layout.checkpoints(stage), stage)? else {
        return Ok(Position::default());
    };
    let checkpoint::Restored { dir, state, tensors, skipped } = restored;
    if !skipped.is_empty() {
        tracing::warn!(stage, checkpoint = %dir.display(), ?skipped, "damaged checkpoints skipped");
        ctx.sink.emit(&Event::CheckpointFallback { stage: stage.to_owned(), restored: dir.clone(), skipped });
    }
    if state.stage != stage || state.seed != ctx.spec.seed {
        return Err(super::Error::Input(format!(
            "{}: written by stage {} with seed {}, cannot resume stage {stage} with seed {}",
            dir.display(),
            state.stage,
            state.seed,
            ctx.spec.seed
        )));
    }
    let by_name: std::collections::HashMap<&str, &Tensor> =
        tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    tch::no_grad(|| -> Result<()> {
        for (name, mut var) in sorted_variables(vs) {
            let key = format!("model.{name}");
            let Some(saved) = by_name.get(key.as_str()) else {
                return Err(super::Error::Input(format!("{}: checkpoint lacks {key}", dir.display())));
            };
            if saved.size() != var.size() {
                return Err(super::Error::Input(format!(
                    "{}: {key} has shape {:?}, the model has {:?}",
                    dir.display(),
                    saved.size(),
                    var.size()
                )));
            }
            var.f_copy_(saved).in_stage(stage)?;
        }
        Ok(())
    })?;
    let optimizer_steps =
        state.extra.get("optimizer_steps").and_then(|v| v.as_u64()).unwrap_or(state.global_step);
    opt.load_state(&tensors, optimizer_steps)
        .map_err(|e| super::Error::Input(format!("{}: {e}", dir.display())))?;
    tracing::info!(stage, checkpoint = %dir.display(), epoch = state.epoch, batch = state.batch, "resuming");
    Ok(Position { epoch: state.epoch, batch: state.batch, global_step: state.global_step })
}

/// Mean cross-entropy of `logits` against `labels`, with optional label smoothing.
pub fn cross_entropy(
    logits: &Tensor,
    labels: &Tensor,
    label_smoothing: f64,
) -> Result<Tensor, tch::TchError> {
    logits.f_cross_entropy_loss::<Tensor>(labels, None, tch::Reduction::Mean, -100, label_smoothing)
}

/// Moves a batch to the stage's device.
pub fn to_device(batch: &Batch, device: Device) -> (Tensor, Tensor) {
    (batch.images.to_device(device), batch.labels.to_device(device))
}
