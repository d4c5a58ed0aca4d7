//! The hidden benchmark commands behind `cargo xtask bench` and
//! `scripts/gpu-check`: they time the library code as it is, never a
//! simplified copy, and nothing else depends on them.

pub mod gpu;
pub mod latency;
pub mod loader;
pub mod train;
