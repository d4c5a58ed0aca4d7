//! Domain types shared by the coordinator, the worker and the client.
//!
//! Pure Rust on purpose: no tch and no tonic, so that `scopd` and `scopctl`
//! can validate specs and decide plans without linking libtorch.

pub mod arch;
pub mod durable;
pub mod error;
pub mod event;
pub mod inspect;
pub mod job_dir;
pub mod plan;
pub mod rendezvous;
pub mod sandbox;
pub mod score;
pub mod spec;
mod spec_defaults;
pub mod stage;
pub mod stats;
pub mod summary;

pub use error::{Error, Result};
