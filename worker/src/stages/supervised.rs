//! Ordinary supervised training, shared by `pretrain` and `finetune`: SGD (or
//! Adam) on every weight, cross-entropy with optional label smoothing, optional
//! gradient clipping, gradients averaged over ranks.

use scop_core::spec::{Amp, OptimizerKind, TrainSpec};
use tch::nn::VarStore;
use tch::{Device, Tensor};

use super::context::StageContext;
use super::error::{Error, InStage, Result};
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

/// Checks a training section's `amp` against the device, before the stage starts.
///
/// `amp: bf16` means bf16 autocast on CUDA. The autocast entry points that tch
/// exposes only switch autocast on, and libtorch's CUDA autocast then casts to
/// fp16, not bf16; rather than train in another precision than the spec says,
/// the stage refuses. On the CPU `amp` has no effect (training is fp32).
pub fn check_amp(stage: &str, spec: &TrainSpec, device: Device) -> Result<()> {
    match (spec.amp, device) {
        (Amp::Bf16, Device::Cuda(_)) => Err(Error::Input(format!(
            "{stage}.amp: bf16 autocast is not available on CUDA in this worker (libtorch's autocast as reachable \
             through tch casts to fp16 only); set `amp: off`"
        ))),
        (Amp::Bf16, _) => {
            tracing::warn!(stage, "amp: bf16 has no effect on the CPU; training in fp32");
            Ok(())
        }
        (Amp::Off, _) => Ok(()),
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

    #[test]
    fn bf16_amp_is_refused_on_cuda_and_ignored_on_the_cpu() {
        let spec = TrainSpec { amp: Amp::Bf16, ..TrainSpec::default() };
        let err = check_amp("finetune", &spec, Device::Cuda(0)).unwrap_err().to_string();
        assert!(err.starts_with("finetune.amp: bf16 autocast is not available on CUDA"), "{err}");
        assert!(check_amp("pretrain", &spec, Device::Cpu).is_ok());
        let off = TrainSpec { amp: Amp::Off, ..TrainSpec::default() };
        assert!(check_amp("finetune", &off, Device::Cuda(0)).is_ok());
    }
}
