//! Integration tests of the worker, on real libtorch.

mod collective;
#[cfg(feature = "cuda-tests")]
mod collective_nccl;
mod data;
mod ddp_equivalence;
mod export;
mod knockoff;
mod prune_equivalence;
mod ranks;
mod train_step;
