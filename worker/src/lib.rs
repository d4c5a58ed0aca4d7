//! The scop worker: everything that touches libtorch.
//!
//! This is the only crate of the workspace that links libtorch (through `tch`);
//! the coordinator and the client stay small and never load it.

// Commands: the subcommands' entry points.
pub mod commands;
// Benchmarks: the hidden timing commands.
pub mod bench;
// Library: models, data, training, stages and what they stand on.
pub mod checkpoint;
pub mod collective;
pub mod criteria;
pub mod data;
pub mod events;
pub mod export;
pub mod interrupt;
pub mod memory;
pub mod models;
pub mod prune;
pub mod stages;
pub mod torchscript;
pub mod train;
