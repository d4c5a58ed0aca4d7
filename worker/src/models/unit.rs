//! A prunable unit (conv + BN inside a residual block) and its knockoff mode.
//!
//! In knockoff mode the unit owns β ("kfscale", `[1, C, 1, 1]`, initialised to
//! 0.5). In training it expects the batch `[real; knockoff]` and computes
//! `conv`, then replaces the real half by `β·real + (1−β)·knockoff` (the knockoff
//! half passes unchanged), then BN in training mode over the whole batch. In eval
//! mode it is plain conv + BN, whatever its mode.

use scop_core::arch::UnitDesc;
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

use super::conv_bn::{ConvBn, ConvShape, Weights, in_kind_of, sub_path};
use super::error::{Error, Result, TorchContext};

/// Name of the β variable under the unit's path.
pub const KFSCALE: &str = "kfscale";

/// How a unit computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitMode {
    /// Dense conv + BN.
    Plain,
    /// Dense conv + BN with a learnable knockoff coefficient β.
    Knockoff,
    /// Built from a pruned description: only the kept channels exist.
    Pruned,
}

/// One conv + BN pair of a residual block, e.g. `layer2.0.conv1` with `layer2.0.bn1`.
#[derive(Debug)]
pub struct Unit {
    name: String,
    layer: ConvBn,
    kfscale: Option<Tensor>,
    pruned: bool,
}

impl Unit {
    pub fn new(root: &nn::Path, desc: &UnitDesc, weights: Weights) -> Self {
        let shape = ConvShape {
            in_channels: desc.in_channels,
            out_channels: desc.out_channels,
            kernel: desc.kernel,
            stride: desc.stride,
            padding: desc.padding,
            groups: desc.groups,
        };
        let layer = ConvBn::new(&sub_path(root, &desc.name), &sub_path(root, &desc.bn), shape, weights);
        Self { name: desc.name.clone(), layer, kfscale: None, pruned: desc.is_pruned() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn mode(&self) -> UnitMode {
        match (&self.kfscale, self.pruned) {
            (Some(_), _) => UnitMode::Knockoff,
            (None, true) => UnitMode::Pruned,
            (None, false) => UnitMode::Plain,
        }
    }

    pub fn out_channels(&self) -> u32 {
        self.layer.shape.out_channels
    }

    /// The conv and BN tensors.
    pub fn layer(&self) -> &ConvBn {
        &self.layer
    }

    /// β, when in knockoff mode.
    pub fn kfscale(&self) -> Option<&Tensor> {
        self.kfscale.as_ref()
    }

    /// Switches to knockoff mode, creating `<name>.kfscale` under `root` (or reusing
    /// it when it exists, e.g. after loading a knockoff checkpoint's names).
    pub fn enable_knockoff(&mut self, root: &nn::Path) -> Result<()> {
        if self.pruned {
            return Err(Error::Mode(format!(
                "{}: knockoff mode needs the dense unit; this one is pruned",
                self.name
            )));
        }
        if self.kfscale.is_none() {
            let c = i64::from(self.out_channels());
            let path = sub_path(root, &self.name);
            let beta = path
                .f_var(KFSCALE, &[1, c, 1, 1], Init::Const(0.5))
                .ctx(format!("{}.{KFSCALE}", self.name))?;
            self.kfscale = Some(beta);
        }
        Ok(())
    }

    /// Back to plain conv + BN; β stays in the VarStore but is no longer used.
    pub fn disable_knockoff(&mut self) {
        self.kfscale = None;
    }

    pub fn f_forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let y = self.layer.f_conv(xs).ctx(&self.name)?;
        let y = match (&self.kfscale, train) {
            (Some(beta), true) => {
                let n = y.size()[0];
                if n % 2 != 0 {
                    return Err(Error::Input(format!(
                        "{}: knockoff training needs the batch [real; knockoff] of even size, got {n}",
                        self.name
                    )));
                }
                let real = y.f_narrow(0, 0, n / 2).ctx(&self.name)?;
                let knockoff = y.f_narrow(0, n / 2, n / 2).ctx(&self.name)?;
                // β·real + (1−β)·knockoff in one fused kernel: knockoff + β·(real − knockoff).
                let beta = in_kind_of(beta, &y).ctx(&self.name)?;
                let mixed = knockoff.f_lerp_tensor(&real, &beta).ctx(&self.name)?;
                Tensor::f_cat(&[mixed, knockoff], 0).ctx(&self.name)?
            }
            _ => y,
        };
        self.layer.bn.f_forward_t(&y, train).ctx(&self.name)
    }

    /// Clamps β into [0, 1] in place, as after every knockoff optimiser step.
    pub fn clamp_kfscale(&self) -> Result<()> {
        if let Some(beta) = &self.kfscale {
            tch::no_grad(|| beta.shallow_clone().f_clamp_(0.0, 1.0).map(drop)).ctx(&self.name)?;
        }
        Ok(())
    }

    /// β and |γ| per channel, on the CPU as f32.
    pub fn beta_and_gamma(&self) -> Result<Option<(Vec<f32>, Vec<f32>)>> {
        let Some(beta) = &self.kfscale else { return Ok(None) };
        let to_vec = |t: &Tensor| -> Result<Vec<f32>> {
            let flat = t.f_detach().and_then(|t| t.f_to_kind(Kind::Float)).and_then(|t| t.f_flatten(0, -1));
            Vec::<f32>::try_from(flat.ctx(&self.name)?).ctx(&self.name)
        };
        let gamma = to_vec(&self.layer.bn.weight.f_abs().ctx(&self.name)?)?;
        Ok(Some((to_vec(beta)?, gamma)))
    }
}
