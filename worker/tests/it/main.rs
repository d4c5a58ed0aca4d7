//! Integration tests of the worker, on real libtorch.

mod agent_relay;
mod batch_norm;
mod cli;
mod collective;
mod collective_checked;
#[cfg(feature = "cuda-tests")]
mod collective_nccl;
mod data;
mod ddp_equivalence;
mod export;
mod fold;
mod knockoff;
mod nccl_rules;
mod prune_equivalence;
mod ranks;
mod slow_ranks;
mod stages;
mod train_step;
