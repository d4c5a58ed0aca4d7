//! The scop worker: everything that touches libtorch.
//!
//! This is the only crate of the workspace that links libtorch (through `tch`);
//! the coordinator and the client stay small and never load it.

pub mod bench_gpu;
pub mod bench_loader;
pub mod bench_train;
pub mod checkpoint;
pub mod collective;
pub mod data;
pub mod events;
pub mod export;
pub mod inspect;
pub mod interrupt;
pub mod latency;
pub mod launch;
pub mod models;
#[cfg(feature = "nccl")]
pub mod nccl_check;
pub mod prune;
pub mod rank;
pub mod run;
pub mod runtime;
pub mod stages;
pub mod torchscript;
pub mod train;
