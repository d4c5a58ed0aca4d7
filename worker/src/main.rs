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
    /// One rank of the TCP all-reduce benchmark (`cargo xtask bench collectives` runs it).
    #[command(hide = true)]
    BenchAllreduce(BenchAllreduceArgs),
}

#[derive(Debug, clap::Args)]
struct BenchAllreduceArgs {
    #[arg(long)]
    rank: u32,
    /// Comma-separated `host:port` of every rank.
    #[arg(long, value_delimiter = ',')]
    peers: Vec<String>,
    #[arg(long, default_value_t = 100_000_000)]
    bytes: usize,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    #[arg(long, default_value_t = 10)]
    iters: usize,
    #[arg(long)]
    chunk_bytes: Option<usize>,
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
        Command::BenchAllreduce(a) => {
            use scop_worker::collective::bench::{AllReduceBench, bench_all_reduce};
            let bench = AllReduceBench {
                rank: a.rank,
                peers: a.peers,
                bytes: a.bytes,
                warmup: a.warmup,
                iters: a.iters,
                chunk_bytes: a.chunk_bytes,
            };
            let ms: Vec<String> =
                bench_all_reduce(&bench)?.iter().map(|t| format!("{:.3}", t.as_secs_f64() * 1e3)).collect();
            println!("RESULT rank={} times_ms={}", a.rank, ms.join(","));
        }
    }
    Ok(())
}
