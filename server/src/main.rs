//! `scopd`: parses flags, sets up logging, and runs the coordinator.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;

/// The scop coordinator.
#[derive(Debug, Parser)]
#[command(name = "scopd", version, about)]
struct Args {
    /// Address of the public gRPC API.
    #[arg(long, env = "SCOP_GRPC_ADDR", default_value = "127.0.0.1:7070")]
    grpc_addr: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,h2=warn,tower=warn,hyper=warn".into()),
        )
        .init();
    let args = Args::parse();
    let config = scop_server::Config { grpc_addr: args.grpc_addr };
    let listener = tokio::net::TcpListener::bind(config.grpc_addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.grpc_addr))?;
    scop_server::run(config, listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
