//! `scop-worker`: parses the command line and calls the worker library.

use clap::{Parser, Subcommand};

/// The scop worker.
#[derive(Debug, Parser)]
#[command(name = "scop-worker", version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the libtorch runtime this worker would train on, as JSON.
    Info,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.command {
        Command::Info => {
            let info = scop_worker::runtime::RuntimeInfo::probe();
            println!("{}", serde_json::to_string_pretty(&info)?);
        }
    }
    Ok(())
}
