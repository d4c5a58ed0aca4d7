//! `scopd`: parses flags, sets up logging, binds the ports and runs the coordinator.

use anyhow::Context;
use clap::Parser;

/// The scop coordinator.
#[derive(Debug, Parser)]
#[command(name = "scopd", version, about)]
struct Args {
    #[command(flatten)]
    flags: scop_server::config::Flags,
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
    let config = scop_server::Config::load(&args.flags).context("invalid configuration")?;
    let listeners = scop_server::Listeners::bind(&config).await.context("cannot bind the ports")?;
    scop_server::run(config, listeners, shutdown_signal()).await.context("scopd failed")
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops scopd");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
