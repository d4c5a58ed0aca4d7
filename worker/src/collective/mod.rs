//! Collective communication between the ranks of a data-parallel job.
//!
//! The trainer talks to one [`Collective`] and does not know which transport is
//! behind it:
//! - [`TcpRing`]: CPU ranks over TCP, a pipelined ring reduce-scatter + all-gather;
//! - `NcclComm` (cargo feature `nccl`): GPU ranks over NCCL.
//!
//! A group is joined from a [`scop_core::rendezvous::Rendezvous`] record with
//! [`connect`]. Every operation has a timeout, and a lost peer turns into an
//! [`Error`] that names its rank instead of a hang. After any failure the group is
//! broken: every later call returns [`Error::Broken`].
//!
//! What a backend may be handed is written once, in [`contract`]; [`Checked`]
//! enforces it, cross-rank agreement included, on any backend (tests run every
//! CPU group under it, so they obey NCCL's rules).
//!
//! On top of the transport sit what DDP needs: [`GradBucketer`] (flat ~25 MB
//! buckets, one collective each) and [`check_replicas_agree`] (a cheap parameter
//! hash compared across ranks).

pub mod bench;
mod bucket;
mod checked;
pub mod contract;
mod error;
mod fingerprint;
#[cfg(feature = "nccl")]
mod nccl;
#[cfg(feature = "nccl")]
mod nccl_library;
mod ring;
mod tcp_ring;
mod tcp_setup;
mod tensor_view;
mod wire;

pub use bucket::{DEFAULT_BUCKET_BYTES, GradBucketer};
pub use checked::{CHECKS_ENV, Checked, strict_checks_requested};
pub use error::{Error, Result};
pub use fingerprint::{check_replicas_agree, parameter_fingerprint};
#[cfg(feature = "nccl")]
pub use nccl::{NcclComm, new_unique_id};
#[cfg(feature = "nccl")]
pub use nccl_library::{
    NCCL_LINK_NAME, ensure_cuda_driver_loadable, ensure_nccl_loadable, find_libnccl, nccl_link_dir,
};
pub use tcp_ring::{DEFAULT_CHUNK_BYTES, TcpRing};

use scop_core::rendezvous::{BackendRendezvous, Rendezvous};
use tch::{Device, Kind, Tensor};

/// How [`Collective::all_reduce`] combines the ranks' tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    /// The sum divided by the world size (gradient averaging).
    Avg,
}

/// Which transport a group uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Tcp,
    Nccl,
}

/// A group of ranks that can combine tensors. Every rank of the group must make the
/// same calls in the same order with tensors of the same size and kind; a mismatch
/// is detected where the transport can (the TCP ring checks every frame) and
/// reported as [`Error::Protocol`].
///
/// Tensors are changed in place. The caller must not touch a tensor's storage from
/// another thread while a call on it is running (as with `torch.distributed`).
pub trait Collective: Send {
    /// This process's rank, in `0..world()`.
    fn rank(&self) -> usize;
    /// Number of ranks in the group.
    fn world(&self) -> usize;
    fn backend(&self) -> Backend;
    /// Where this backend's tensors live: `Cpu` for TCP, `Cuda(i)` for NCCL.
    fn device(&self) -> Device;

    /// Replaces `tensor` on every rank by the sum (or mean) over ranks. The result is
    /// bitwise identical on every rank.
    fn all_reduce(&mut self, tensor: &mut Tensor, op: ReduceOp) -> Result<()>;

    /// Replaces `tensor` on every rank by `root`'s.
    fn broadcast(&mut self, tensor: &mut Tensor, root: usize) -> Result<()>;

    /// Returns once every rank has entered the barrier.
    fn barrier(&mut self) -> Result<()> {
        let mut token = Tensor::f_zeros([self.world() as i64], (Kind::Float, self.device()))?;
        self.all_reduce(&mut token, ReduceOp::Sum)
    }

    /// Gathers a small vector (metrics) from every rank: element `i` of the result is
    /// rank `i`'s `values`. Every rank must pass the same number of values.
    ///
    /// Implemented as a sum of zero-padded rows, which is exact: each position has
    /// exactly one non-zero contribution.
    fn all_gather_f64(&mut self, values: &[f64]) -> Result<Vec<Vec<f64>>> {
        let (world, len) = (self.world(), values.len());
        if len == 0 {
            return Ok(vec![Vec::new(); world]);
        }
        let mut rows = vec![0.0f64; world * len];
        rows[self.rank() * len..(self.rank() + 1) * len].copy_from_slice(values);
        let mut table = Tensor::f_from_slice(&rows)?.f_to_device(self.device())?;
        self.all_reduce(&mut table, ReduceOp::Sum)?;
        let gathered = Vec::<f64>::try_from(table.f_to_device(Device::Cpu)?)?;
        Ok(gathered.chunks(len).map(<[f64]>::to_vec).collect())
    }
}

/// Joins the group described by `rendezvous`, blocking until every neighbour needed
/// has connected or the rendezvous timeout has passed.
pub fn connect(rendezvous: &Rendezvous) -> Result<Box<dyn Collective>> {
    rendezvous.validate()?;
    match &rendezvous.backend {
        BackendRendezvous::Tcp { .. } => Ok(Box::new(TcpRing::connect(rendezvous)?)),
        #[cfg(feature = "nccl")]
        BackendRendezvous::Nccl { .. } => Ok(Box::new(NcclComm::connect(rendezvous)?)),
        #[cfg(not(feature = "nccl"))]
        BackendRendezvous::Nccl { .. } => Err(Error::Unsupported(
            "backend nccl: this scop-worker was built without the `nccl` cargo feature".into(),
        )),
    }
}
