//! A residual block (BasicBlock or Bottleneck) built from its description.
//!
//! The units run in order with ReLU between them; the last unit's output meets
//! the shortcut. When that unit was pruned (`residual: scatter`), its channels are
//! added into their places of the full-width residual: `identity.index_add(1,
//! kept, y)`, which equals scattering into zeros and adding, without the zeros.
//!
//! Like torchvision, ReLUs and the residual add work in place on tensors the
//! block just made (autograd needs neither a BN's output nor an add's inputs).
//! When no gradient is recorded, the scatter also adds in place into the block's
//! input: a full-width copy fewer per block, which matters at inference.

use scop_core::arch::BlockDesc;
use tch::nn;
use tch::{Device, Kind, Tensor};

use super::conv_bn::{ConvBn, ConvShape, FoldedConv, Weights, sub_path};
use super::error::{Result, TorchContext};
use super::unit::Unit;

#[derive(Debug)]
pub struct Block {
    name: String,
    pub(crate) units: Vec<Unit>,
    downsample: Option<ConvBn>,
    /// Residual channels the last unit's outputs go to, when it was pruned.
    scatter: Option<Tensor>,
}

/// A block's convs with their BNs folded in (see [`FoldedConv`]).
#[derive(Debug)]
pub(crate) struct FoldedBlock {
    units: Vec<FoldedConv>,
    downsample: Option<FoldedConv>,
}

impl Block {
    pub fn new(root: &nn::Path, desc: &BlockDesc, weights: Weights) -> Self {
        let units = desc.units.iter().map(|u| Unit::new(root, u, weights)).collect();
        let downsample = desc.shortcut.as_ref().map(|s| {
            let path = sub_path(root, &format!("{}.downsample", desc.name));
            let shape = ConvShape {
                in_channels: s.in_channels,
                out_channels: s.out_channels,
                kernel: 1,
                stride: s.stride,
                padding: 0,
                groups: 1,
            };
            ConvBn::new(&path.sub("0"), &path.sub("1"), shape, weights)
        });
        let scatter = desc.scatter().map(|kept| {
            let kept: Vec<i64> = kept.iter().map(|&k| i64::from(k)).collect();
            Tensor::from_slice(&kept).to_device(root.device())
        });
        Self { name: desc.name.clone(), units, downsample, scatter }
    }

    pub fn units(&self) -> &[Unit] {
        &self.units
    }

    /// The block's output. `xs` may be overwritten in place when no gradient is
    /// recorded, so callers must not use it afterwards (the ResNet forward does not).
    pub(crate) fn f_forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let mut y = xs.shallow_clone();
        let last = self.units.len() - 1;
        for (i, unit) in self.units.iter().enumerate() {
            y = unit.f_forward_t(&y, train)?;
            if i < last {
                y = y.f_relu_().ctx(unit.name())?;
            }
        }
        let identity = match &self.downsample {
            Some(ds) => ds.f_forward_t(xs, train).ctx(format!("{}.downsample", self.name))?,
            None => xs.shallow_clone(),
        };
        self.join(y, identity)
    }

    /// The last unit's output `y` meets the shortcut's `identity`, then ReLU.
    fn join(&self, mut y: Tensor, identity: Tensor) -> Result<Tensor> {
        let mut out = match &self.scatter {
            // Nothing records gradients: add into the residual in place.
            Some(kept) if !y.requires_grad() && !identity.requires_grad() => {
                let mut identity = identity;
                identity.f_index_add_(1, kept, &y)
            }
            Some(kept) => identity.f_index_add(1, kept, &y),
            None => y.f_add_(&identity),
        }
        .ctx(&self.name)?;
        out.f_relu_().ctx(&self.name)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the last unit's output is added into the residual by index
    /// (`residual: scatter`).
    pub fn scatters(&self) -> bool {
        self.scatter.is_some()
    }

    /// The block's convs with their BNs folded in, for [`Block::f_forward_folded`].
    pub(crate) fn fold(&self) -> Result<FoldedBlock> {
        let units = self
            .units
            .iter()
            .map(|u| FoldedConv::new(u.layer()).ctx(u.name()))
            .collect::<Result<Vec<_>>>()?;
        let downsample = match &self.downsample {
            Some(ds) => Some(FoldedConv::new(ds).ctx(format!("{}.downsample", self.name))?),
            None => None,
        };
        Ok(FoldedBlock { units, downsample })
    }

    /// The eval-mode output from `folded` (made by this block's [`Block::fold`]);
    /// `xs` may be overwritten in place, as in [`Block::f_forward_t`].
    pub(crate) fn f_forward_folded(&self, xs: &Tensor, folded: &FoldedBlock) -> Result<Tensor> {
        let mut y = xs.shallow_clone();
        let last = folded.units.len() - 1;
        for (i, (conv, unit)) in folded.units.iter().zip(&self.units).enumerate() {
            y = conv.f_forward(&y).ctx(unit.name())?;
            if i < last {
                y = y.f_relu_().ctx(unit.name())?;
            }
        }
        let identity = match &folded.downsample {
            Some(ds) => ds.f_forward(xs).ctx(format!("{}.downsample", self.name))?,
            None => xs.shallow_clone(),
        };
        self.join(y, identity)
    }

    /// Moves the scatter indices along when the VarStore changes device.
    pub(crate) fn move_to(&mut self, device: Device) {
        if let Some(kept) = &self.scatter {
            self.scatter = Some(kept.to_device(device).to_kind(Kind::Int64));
        }
    }
}

impl FoldedBlock {
    /// Every folded conv for blocked inputs (see [`FoldedConv::into_blocked`]).
    pub(crate) fn into_blocked(self, block: &Block) -> Result<Self> {
        let units = (self.units.into_iter().zip(&block.units))
            .map(|(conv, unit)| conv.into_blocked().ctx(unit.name()))
            .collect::<Result<Vec<_>>>()?;
        let downsample = match self.downsample {
            Some(ds) => Some(ds.into_blocked().ctx(format!("{}.downsample", block.name))?),
            None => None,
        };
        Ok(Self { units, downsample })
    }
}
