//! What a training stage needs from data parallelism, independent of the backend.
//!
//! A single process uses [`Single`]; data-parallel ranks use an implementation
//! backed by the collectives (all-reduce of gradient buckets, broadcast of the
//! initial parameters, a hash check of the replicas).

use tch::Tensor;

/// Errors from the replicas (a lost peer, a timeout, diverged parameters).
pub type ParallelError = String;

/// The operations the trainer performs across ranks.
pub trait Replicas {
    /// This rank and the number of ranks.
    fn rank(&self) -> usize;
    fn world(&self) -> usize;
    /// Makes every rank's `tensors` equal to rank 0's (parameters and buffers, at the start).
    fn broadcast_from_root(&mut self, tensors: &[Tensor]) -> Result<(), ParallelError>;
    /// Replaces each gradient by its average over ranks.
    fn average_gradients(&mut self, grads: &[Tensor]) -> Result<(), ParallelError>;
    /// Replaces each value by its sum over ranks (metrics: sample counts, loss sums).
    fn sum_scalars(&mut self, values: &mut [f64]) -> Result<(), ParallelError>;
    /// Fails if the ranks' `params` differ (compared through a cheap hash).
    fn check_in_sync(&mut self, params: &[Tensor]) -> Result<(), ParallelError>;
    /// Seconds spent in [`Replicas::average_gradients`] since the last call.
    fn take_allreduce_seconds(&mut self) -> f64 {
        0.0
    }
}

/// One process, nothing to synchronise.
#[derive(Debug, Default)]
pub struct Single;

impl Replicas for Single {
    fn rank(&self) -> usize {
        0
    }
    fn world(&self) -> usize {
        1
    }
    fn broadcast_from_root(&mut self, _: &[Tensor]) -> Result<(), ParallelError> {
        Ok(())
    }
    fn average_gradients(&mut self, _: &[Tensor]) -> Result<(), ParallelError> {
        Ok(())
    }
    fn sum_scalars(&mut self, _: &mut [f64]) -> Result<(), ParallelError> {
        Ok(())
    }
    fn check_in_sync(&mut self, _: &[Tensor]) -> Result<(), ParallelError> {
        Ok(())
    }
}
