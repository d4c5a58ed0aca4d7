//! Integration tests of the worker, on real libtorch.

mod prune_equivalence;
mod train_step;
