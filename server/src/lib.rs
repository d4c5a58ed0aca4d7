//! The scop coordinator, `scopd`: a library so that tests run the very same
//! server on `127.0.0.1:0` that the binary runs.

pub mod config;
pub mod grpc;

pub use config::Config;
pub use grpc::run;
