//! Coordinator configuration: defaults, overridden by `SCOP_*` variables and flags.

use std::net::SocketAddr;

/// Everything `scopd` needs to run; built by `main.rs` from flags and passed down.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address of the public gRPC API.
    pub grpc_addr: SocketAddr,
}

impl Default for Config {
    fn default() -> Self {
        Self { grpc_addr: SocketAddr::from(([127, 0, 0, 1], 7070)) }
    }
}
