//! Integration tests of the worker, on real libtorch.

mod data;
mod collective;
#[cfg(feature = "cuda-tests")]
mod collective_nccl;
mod train_step;
