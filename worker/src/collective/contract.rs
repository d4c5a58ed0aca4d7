//! The collective contract: what every backend may be handed, written once.
//!
//! A tensor given to [`super::Collective::all_reduce`] or
//! [`super::Collective::broadcast`] must be
//! - defined and dense (strided, not sparse);
//! - contiguous in the default memory format (`is_contiguous()`: a channels-last
//!   conv weight is *not*, though its storage has no gaps);
//! - of a kind NCCL carries ([`NcclKind`]);
//! - on the group's device;
//! - and of the same kind and element count on every rank, in the same call.
//!
//! These are exactly `NcclComm`'s preconditions: NCCL reads `numel` elements from
//! the data pointer, so a strided view would be reduced in its storage order, and
//! a count that differs between ranks hangs or corrupts memory. The TCP ring checks
//! the same rules through [`check_tensor`], and the strict layer
//! ([`super::Checked`]) also checks the cross-rank part, so a CPU run fails where a
//! GPU run would.

use tch::{Device, Kind, Tensor};

use super::error::{Error, Result};

/// The element kinds NCCL reduces and broadcasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NcclKind {
    Float32,
    Float64,
    Float16,
    BFloat16,
    Int32,
    Int64,
    Uint8,
    Int8,
}

impl NcclKind {
    /// The NCCL kind of a tch kind, if NCCL carries it.
    pub fn of(kind: Kind) -> Option<Self> {
        Some(match kind {
            Kind::Float => Self::Float32,
            Kind::Double => Self::Float64,
            Kind::Half => Self::Float16,
            Kind::BFloat16 => Self::BFloat16,
            Kind::Int => Self::Int32,
            Kind::Int64 => Self::Int64,
            Kind::Uint8 => Self::Uint8,
            Kind::Int8 => Self::Int8,
            _ => return None,
        })
    }

    /// A small code that identifies the kind in a cross-rank signature.
    pub(crate) fn code(self) -> u8 {
        self as u8
    }
}

/// Checks the per-rank part of the contract for a tensor bound for a group on
/// `device`; `rank` only names the caller in the error.
pub fn check_tensor(tensor: &Tensor, device: Device, rank: usize) -> Result<NcclKind> {
    if !tensor.defined() {
        return Err(Error::Tensor(format!(
            "rank {rank}: the tensor is undefined (a parameter without a gradient?)"
        )));
    }
    if tensor.is_sparse() {
        return Err(Error::Tensor(format!("rank {rank}: collectives take dense tensors, got a sparse one")));
    }
    if tensor.device() != device {
        return Err(Error::Tensor(format!(
            "rank {rank}: the group's tensors live on {device:?}, got one on {:?}",
            tensor.device()
        )));
    }
    if !tensor.is_contiguous() {
        return Err(Error::Tensor(format!(
            "rank {rank}: collectives take contiguous tensors, got shape {:?} with strides {:?} \
             (channels-last or a view: pack it into a flat bucket first)",
            tensor.size(),
            tensor.stride()
        )));
    }
    NcclKind::of(tensor.kind()).ok_or_else(|| {
        Error::Tensor(format!("rank {rank}: collectives do not carry {:?} tensors", tensor.kind()))
    })
}

/// Checks a broadcast root against the world size.
pub fn check_root(root: usize, world: usize) -> Result<()> {
    if root >= world {
        return Err(Error::Unsupported(format!("broadcast root must be < world ({world}), got {root}")));
    }
    Ok(())
}
