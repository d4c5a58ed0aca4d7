//! Integration tests of the worker, on real libtorch.

mod cli;
mod export;
mod knockoff;
mod prune_equivalence;
mod train_step;
