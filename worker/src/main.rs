//! `scop-worker`: parses the command line and calls the worker library.

use clap::{Parser, Subcommand};
use scop_worker::export::ExportArgs;
use scop_worker::inspect::InspectArgs;
use scop_worker::latency::LatencyArgs;

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
    /// Show what pruning does to a network: channels, params and FLOPs per unit.
    Inspect(InspectArgs),
    /// Build (and optionally load and prune) a network and export it:
    /// model.safetensors, arch.json, model.pt (TorchScript), model-card.json.
    Export(ExportArgs),
    /// Inference latency of dense vs pruned networks, as JSON (run by `cargo xtask bench models`).
    #[command(hide = true)]
    BenchModels(LatencyArgs),
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.command {
        Command::Info => {
            let info = scop_worker::runtime::RuntimeInfo::probe();
            println!("{}", serde_json::to_string_pretty(&info)?);
        }
        Command::Inspect(args) => {
            let report = scop_worker::inspect::inspect(&args)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render());
            }
        }
        Command::Export(args) => {
            let paths = scop_worker::export::run_export(&args)?;
            for path in [&paths.weights, &paths.arch, &paths.torchscript, &paths.card] {
                println!("{}", path.display());
            }
        }
        Command::BenchModels(args) => {
            let report = scop_worker::latency::measure(&args)?;
            println!("{}", serde_json::to_string(&report)?);
        }
    }
    Ok(())
}
