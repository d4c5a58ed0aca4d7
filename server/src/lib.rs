//! The scop coordinator, `scopd`: a library so that tests run the very same
//! server on `127.0.0.1:0` that the binary runs.
//!
//! `domain` holds the job state machine and records; `store` persists them in
//! SQLite; `api` is the gRPC edge; `scheduler` moves jobs through their stages
//! on worker ranks; `server` wires the ports together.

pub mod api;
pub mod artifacts;
pub mod config;
pub mod domain;
pub mod error;
pub mod liveness;
pub mod metrics;
pub mod scheduler;
pub mod secret;
pub mod server;
pub mod shutdown;
pub mod standalone;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tracking;
pub mod users;

pub use config::Config;
pub use error::{Error, Result};
pub use server::{Listeners, run, run_with_store};
