//! ResNets in tch, built from `scop_core::arch::ArchDesc`, with SCOP's knockoff units.
//!
//! The training stages use this surface: [`ResNet::new`] on a VarStore path,
//! [`ResNet::enable_knockoff`], [`freeze_all_but_kfscale`], [`ResNet::clamp_kfscale`],
//! [`ResNet::knockoff_state`] / [`ResNet::scores`], [`load_strict`],
//! [`ResNet::fold_batch_norm`] to evaluate, and then `crate::prune::apply_plan`
//! and `crate::export`.

pub mod batch_norm;
mod block;
mod conv_bn;
mod error;
mod freeze;
pub mod layout;
mod load;
mod resnet;
mod unit;

pub use block::Block;
pub use conv_bn::{BatchNorm, ConvBn, ConvShape, FoldedConv, Weights, sub_path};
pub use error::{Error, Result, ShapeMismatch, TorchContext};
pub use freeze::{freeze_all_but_kfscale, is_kfscale, unfreeze};
pub use load::load_strict;
pub use resnet::{Folded, ResNet, UnitKnockoff};
pub use unit::{KFSCALE, Unit, UnitMode};

/// Learnable parameters held by `vs`, counted as PyTorch's `parameters()` would
/// count the network: trainable variables, without knockoff β.
pub fn count_params(vs: &tch::nn::VarStore) -> u64 {
    let trainable: std::collections::HashSet<_> =
        vs.trainable_variables().iter().map(|t| t.data_ptr() as usize).collect();
    vs.variables()
        .iter()
        .filter(|(name, t)| !is_kfscale(name) && trainable.contains(&(t.data_ptr() as usize)))
        .map(|(_, t)| t.numel() as u64)
        .sum()
}
