//! A bias-free conv followed by a BN, with torchvision's variable names and init.

use tch::nn::init::{FanInOut, NonLinearity, NormalOrUniform};
use tch::nn::{self, Init};
use tch::{TchError, Tensor};

/// BN hyper-parameters of torchvision (and of the reference).
const BN_MOMENTUM: f64 = 0.1;
const BN_EPS: f64 = 1e-5;

/// The path of a dotted name under `root`: `layer1.0.conv1` → root/layer1/0/conv1.
pub fn sub_path<'a>(root: &nn::Path<'a>, dotted: &str) -> nn::Path<'a> {
    dotted.split('.').fold(root.clone(), |path, part| path.sub(part))
}

/// How a new network's variables start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weights {
    /// torchvision's initialisation, for training.
    Random,
    /// Zeros, for variables that a checkpoint load or a copy overwrites at once
    /// (much faster than drawing random numbers for a large network).
    Zeros,
}

/// The shape and placement of one conv.
#[derive(Debug, Clone, Copy)]
pub struct ConvShape {
    pub in_channels: u32,
    pub out_channels: u32,
    pub kernel: u32,
    pub stride: u32,
    pub padding: u32,
    pub groups: u32,
}

/// BatchNorm2d: `weight`, `bias`, `running_mean`, `running_var` under its path.
#[derive(Debug)]
pub struct BatchNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
}

impl BatchNorm {
    pub fn new(path: &nn::Path, channels: u32) -> Self {
        let c = i64::from(channels);
        Self {
            weight: path.var("weight", &[c], Init::Const(1.0)),
            bias: path.var("bias", &[c], Init::Const(0.0)),
            running_mean: path.zeros_no_train("running_mean", &[c]),
            running_var: path.ones_no_train("running_var", &[c]),
        }
    }

    /// Training mode normalises with the batch's statistics and updates the
    /// running ones; channels-last activations of a width libtorch's backward
    /// handles slowly take our kernel ([`super::batch_norm`]).
    pub fn f_forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor, TchError> {
        if train && super::batch_norm::takes_own_kernel(xs, &self.weight) {
            return super::batch_norm::train_channels_last(
                xs,
                &self.weight,
                &self.bias,
                &self.running_mean,
                &self.running_var,
                BN_MOMENTUM,
                BN_EPS,
            );
        }
        Tensor::f_batch_norm(
            xs,
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            train,
            BN_MOMENTUM,
            BN_EPS,
            true,
        )
    }
}

/// `t` in the floating-point kind of `like` (a shallow copy when it already is).
pub fn in_kind_of(t: &Tensor, like: &Tensor) -> Result<Tensor, TchError> {
    if t.kind() == like.kind() { Ok(t.shallow_clone()) } else { t.f_to_kind(like.kind()) }
}

/// A conv (no bias) and the BN after it; the two may live under unrelated names.
#[derive(Debug)]
pub struct ConvBn {
    /// `[out, in / groups, k, k]`, initialised as torchvision does (Kaiming normal, fan-out).
    pub weight: Tensor,
    pub bn: BatchNorm,
    pub shape: ConvShape,
}

impl ConvBn {
    pub fn new(conv: &nn::Path, bn: &nn::Path, shape: ConvShape, weights: Weights) -> Self {
        let dims = [
            i64::from(shape.out_channels),
            i64::from(shape.in_channels / shape.groups.max(1)),
            i64::from(shape.kernel),
            i64::from(shape.kernel),
        ];
        let init = match weights {
            Weights::Random => Init::Kaiming {
                dist: NormalOrUniform::Normal,
                fan: FanInOut::FanOut,
                non_linearity: NonLinearity::ReLU,
            },
            Weights::Zeros => Init::Const(0.0),
        };
        Self { weight: conv.var("weight", &dims, init), bn: BatchNorm::new(bn, shape.out_channels), shape }
    }

    /// The conv, in the precision of `xs`: under bf16 mixed precision the fp32
    /// weight is cast for the product (the cast is differentiable, so its
    /// gradient reaches the fp32 weight).
    pub fn f_conv(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let s = i64::from(self.shape.stride);
        let p = i64::from(self.shape.padding);
        let weight = in_kind_of(&self.weight, xs)?;
        xs.f_conv2d(&weight, None::<&Tensor>, [s, s], [p, p], [1, 1], i64::from(self.shape.groups))
    }

    /// conv then BN.
    pub fn f_forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor, TchError> {
        self.bn.f_forward_t(&self.f_conv(xs)?, train)
    }
}

/// A [`ConvBn`] at inference with the BN folded into the conv: `W·γ/√(σ²+ε)` and
/// the bias `β − μ·γ/√(σ²+ε)`, one conv instead of a conv and a pass over its
/// output. A snapshot of the weights and statistics it was made from.
#[derive(Debug)]
pub struct FoldedConv {
    weight: Tensor,
    bias: Tensor,
    shape: ConvShape,
    /// Weight and bias are oneDNN tensors, the weight in oneDNN's own order.
    blocked: bool,
}

impl FoldedConv {
    /// Folds `layer`'s BN (its running statistics, as in eval mode) into its
    /// conv, keeping the weight's layout; nothing records gradients.
    pub fn new(layer: &ConvBn) -> Result<Self, TchError> {
        tch::no_grad(|| {
            let bn = &layer.bn;
            let scale = bn.weight.f_div(&bn.running_var.f_add_scalar(BN_EPS)?.f_sqrt()?)?;
            let bias = bn.bias.f_sub(&bn.running_mean.f_mul(&scale)?)?;
            let mut weight = layer.weight.f_mul(&scale.f_reshape([-1, 1, 1, 1])?)?;
            if super::layout::is_channels_last(&layer.weight) && !super::layout::is_channels_last(&weight) {
                weight = super::layout::channels_last(&weight)?;
            }
            Ok(Self { weight, bias, shape: layer.shape, blocked: false })
        })
    }

    /// The same conv for inputs in oneDNN's blocked layout (`Tensor::to_mkldnn`):
    /// the weight reordered once into the order oneDNN's kernels read, so that no
    /// forward pass reorders it again.
    pub fn into_blocked(self) -> Result<Self, TchError> {
        let (s, p) = (i64::from(self.shape.stride), i64::from(self.shape.padding));
        let weight = self.weight.f_contiguous()?.f_to_mkldnn(None)?.f_mkldnn_reorder_conv2d_weight(
            [p, p],
            [s, s],
            [1, 1],
            i64::from(self.shape.groups),
            None::<&[i64]>,
        )?;
        let bias = self.bias.f_to_mkldnn(None)?;
        Ok(Self { weight, bias, shape: self.shape, blocked: true })
    }

    /// The conv with its bias, in the precision of `xs` (as [`ConvBn::f_conv`]);
    /// after [`FoldedConv::into_blocked`], on a blocked fp32 `xs`.
    pub fn f_forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let s = i64::from(self.shape.stride);
        let p = i64::from(self.shape.padding);
        if self.blocked {
            let groups = i64::from(self.shape.groups);
            return xs.f_mkldnn_convolution(&self.weight, Some(&self.bias), [p, p], [s, s], [1, 1], groups);
        }
        let (weight, bias) = (in_kind_of(&self.weight, xs)?, in_kind_of(&self.bias, xs)?);
        xs.f_conv2d(&weight, Some(&bias), [s, s], [p, p], [1, 1], i64::from(self.shape.groups))
    }
}
