//! Integration tests of the worker, on real libtorch.

mod train_step;
