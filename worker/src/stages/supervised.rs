//! Ordinary supervised training, shared by `pretrain` and `finetune`: SGD (or
//! Adam) on every weight, cross-entropy with optional label smoothing, optional
//! gradient clipping, gradients averaged over ranks.

use scop_core::spec::{Amp, OptimizerKind, TrainSpec};
use tch::nn::VarStore;
use tch::{Device, Tensor};

use super::context::StageContext;
use super::error::{InStage, Result};
use super::trainer::{StageHooks, StepResult, cross_entropy, to_device};
use crate::data::Batch;
use crate::models::ResNet;
use crate::train::optim::{Optimizer, Rule};

/// The optimiser a training section asks for, over the VarStore's trainable
/// variables. One-dimensional parameters (BN affine, biases) are exempt from
/// weight decay when `decay_bn_and_bias` is false.
pub fn optimizer_for(spec: &TrainSpec, vs: &VarStore) -> Optimizer {
    let mut vars: Vec<(String, Tensor, bool)> = vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .map(|(name, t)| {
            let decay = spec.decay_bn_and_bias || t.dim() > 1;
            (name, t, decay)
        })
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let rule = match spec.optimizer {
        OptimizerKind::Sgd => {
            Rule::Sgd { momentum: spec.momentum, nesterov: spec.nesterov, weight_decay: spec.weight_decay }
        }
        OptimizerKind::Adam => {
            Rule::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: spec.weight_decay }
        }
    };
    Optimizer::new(rule, vars)
}

/// Applies a training section's `amp` to the model before the stage starts.
///
/// `amp: bf16` is bf16 mixed precision as autocast does it for these nets:
/// activations, convolutions and the classifier in bf16 on bf16 casts of the
/// fp32 weights (so gradients and optimiser steps stay fp32), BN with fp32
/// parameters and statistics, the loss in fp32. bf16 needs no loss scaling.
/// It is meant for GPUs; on a CPU without native bf16 it is usually slower.
pub fn apply_amp(stage: &str, spec: &TrainSpec, model: &mut ResNet, device: Device) {
    if spec.amp == Amp::Bf16 {
        if device == Device::Cpu {
            tracing::warn!(stage, "amp: bf16 on the CPU; most CPUs lack native bf16 and train slower in it");
        }
        model.use_bf16();
    }
}

/// The hooks of a supervised stage.
pub struct Supervised<'m> {
    pub stage: &'static str,
    pub model: &'m ResNet,
    pub optimizer: Optimizer,
    pub label_smoothing: f64,
    pub grad_clip: Option<f64>,
    /// The trainable variables, whose gradients are averaged over ranks.
    pub trainable: Vec<Tensor>,
}

impl<'m> Supervised<'m> {
    pub fn new(stage: &'static str, spec: &TrainSpec, model: &'m ResNet, vs: &VarStore) -> Self {
        let mut trainable: Vec<(String, Tensor)> =
            vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        trainable.sort_by(|a, b| a.0.cmp(&b.0));
        Self {
            stage,
            model,
            optimizer: optimizer_for(spec, vs),
            label_smoothing: spec.label_smoothing,
            grad_clip: spec.grad_clip,
            trainable: trainable.into_iter().map(|(_, t)| t).collect(),
        }
    }
}

impl StageHooks for Supervised<'_> {
    fn step(
        &mut self,
        ctx: &mut StageContext<'_>,
        batch: &Batch,
        lr: f64,
        _global_step: u64,
    ) -> Result<StepResult> {
        let stage = self.stage;
        let (images, labels) = to_device(batch, ctx.device);
        self.optimizer.zero_grad();
        let logits = self.model.f_forward_t(&images, true)?;
        let loss = cross_entropy(&logits, &labels, self.label_smoothing).in_stage(stage)?;
        loss.f_backward().in_stage(stage)?;
        let grads: Vec<Tensor> = self.trainable.iter().map(Tensor::grad).collect();
        ctx.replicas.average_gradients(&grads).in_stage(stage)?;
        if let Some(max_norm) = self.grad_clip {
            self.optimizer.clip_grad_norm(max_norm).in_stage(stage)?;
        }
        self.optimizer.step(lr).in_stage(stage)?;
        Ok(StepResult { loss: loss.f_double_value(&[]).in_stage(stage)?, logits: logits.detach(), labels })
    }

    fn optimizer(&mut self) -> &mut Optimizer {
        &mut self.optimizer
    }

    fn model(&self) -> &ResNet {
        self.model
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::weights;
    use tch::Kind;

    /// bf16 logits follow the fp32 ones, and the gradients reach the fp32 weights.
    #[test]
    fn bf16_amp_trains_fp32_weights_through_bf16_compute() {
        let desc = scop_core::arch::ArchDesc::new("resnet20", 10, 1).unwrap();
        let (mut model, vs) = weights::build(&desc, Device::Cpu, 7).unwrap();
        let xs = Tensor::randn([4, 1, 16, 16], (Kind::Float, Device::Cpu));
        let fp32 = model.f_forward_t(&xs, false).unwrap();
        let spec = TrainSpec { amp: Amp::Bf16, ..TrainSpec::default() };
        apply_amp("finetune", &spec, &mut model, Device::Cpu);
        // Compare in eval mode first: a train-mode forward moves the BN statistics.
        let eval = model.f_forward_t(&xs, false).unwrap();
        assert_eq!(eval.kind(), Kind::Float);
        let gap = f64::try_from((&eval - &fp32).abs().max()).unwrap();
        let scale = f64::try_from(fp32.abs().max()).unwrap();
        assert!(gap > 0.0, "the bf16 forward gave bit-identical logits: it did not run in bf16");
        assert!(gap < 0.05 * scale.max(1.0), "bf16 logits differ by {gap} (scale {scale})");
        let train = model.f_forward_t(&xs, true).unwrap();
        assert_eq!(train.kind(), Kind::Float);
        cross_entropy(&train, &Tensor::from_slice(&[0i64, 1, 2, 3]), 0.0).unwrap().backward();
        for (name, var) in vs.variables() {
            if var.requires_grad() {
                let grad = var.grad();
                assert!(grad.defined() && grad.kind() == Kind::Float, "{name}: no fp32 gradient");
            }
        }
    }
}
