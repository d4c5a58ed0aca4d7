//! Integration tests of the worker, on real libtorch.

mod agent_relay;
mod cli;
mod collective;
#[cfg(feature = "cuda-tests")]
mod collective_nccl;
mod data;
mod ddp_equivalence;
mod export;
mod knockoff;
mod prune_equivalence;
mod ranks;
mod stages;
mod train_step;
