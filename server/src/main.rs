//! `scopd`: parses flags, sets up logging, binds the ports and runs the
//! coordinator, or with `standalone` the coordinator plus local worker agents.

use anyhow::Context;
use clap::{Parser, Subcommand};

/// The scop coordinator.
#[derive(Debug, Parser)]
#[command(name = "scopd", version, about, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(flatten)]
    flags: scop_server::config::Flags,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the coordinator plus local worker agents: the default for one machine.
    /// Binds to loopback, generates tokens in the data dir and writes the client
    /// config that scopctl reads.
    Standalone(StandaloneArgs),
}

#[derive(Debug, clap::Args)]
struct StandaloneArgs {
    #[command(flatten)]
    flags: scop_server::config::Flags,
    /// Local worker agents to start [default: one per GPU, or one CPU agent].
    /// Each CPU agent offers one rank slot; the cores are split between them.
    #[arg(long, env = "SCOP_WORKERS")]
    workers: Option<u32>,
    /// Offer CPU rank slots even when GPUs are present.
    #[arg(long)]
    cpu: bool,
    /// The scop-worker executable [default: the one next to scopd, else on PATH].
    #[arg(long, env = "SCOP_WORKER_BIN")]
    worker_bin: Option<std::path::PathBuf>,
    /// Where to write the client config [default: $SCOPCTL_CONFIG, else
    /// $XDG_CONFIG_HOME/scop/scopctl.yaml, else ~/.config/scop/scopctl.yaml].
    #[arg(long)]
    client_config: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Logs go to stderr; stdout carries what scopd says to people (standalone's addresses).
    // Colour only for a person at a terminal: a log file or a pipe gets plain text.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,h2=warn,tower=warn,hyper=warn".into()),
        )
        .init();
    let args = Args::parse();
    match args.command {
        None => {
            let config = scop_server::Config::load(&args.flags).context("invalid configuration")?;
            let listeners = scop_server::Listeners::bind(&config).await.context("cannot bind the ports")?;
            scop_server::run(config, listeners, shutdown_signal()).await.context("scopd failed")
        }
        Some(Command::Standalone(args)) => {
            let config = scop_server::Config::layered(&args.flags).context("invalid configuration")?;
            let options = scop_server::standalone::StandaloneOptions {
                workers: args.workers,
                worker_bin: args.worker_bin,
                cpu: args.cpu,
                client_config: args.client_config,
            };
            scop_server::standalone::run(config, options, shutdown_signal())
                .await
                .context("scopd standalone failed")
        }
    }
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
