//! `scop-agent`: the worker agent on its own, without libtorch. It runs each
//! rank as `scop-worker rank …` and asks `scop-worker info` how many GPUs
//! libtorch sees; `scop-worker agent` is the same agent inside the worker binary.

use clap::Parser;
use scop_agent::cli::AgentArgs;

/// The scop worker agent.
#[derive(Debug, Parser)]
#[command(name = "scop-agent", version, about)]
struct Args {
    #[command(flatten)]
    agent: AgentArgs,
}

fn main() -> anyhow::Result<()> {
    // Colour only for a person at a terminal: a log file or a pipe gets plain text.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let mut args = Args::parse().agent;
    let worker_bin = match args.worker_bin.clone() {
        Some(bin) => bin,
        None => scop_agent::probe::sibling_worker_bin()?,
    };
    // libtorch is the trainer's: ask it how many GPUs it sees, unless none are wanted.
    let cuda = if args.cpu { 0 } else { scop_agent::probe::cuda_devices(&worker_bin)? };
    args.worker_bin = Some(worker_bin);
    let config = args.config(cuda)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(scop_agent::run(config, scop_agent::stop_signal()))?;
    Ok(())
}
