//! Integration tests of the worker, on real libtorch.

mod data;
mod train_step;
