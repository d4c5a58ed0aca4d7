//! `scop-worker`: parses the command line and calls the worker library.

use clap::{Parser, Subcommand};
use scop_worker::bench::latency::LatencyArgs;
use scop_worker::commands::inspect::InspectArgs;
use scop_worker::export::ExportArgs;

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
    /// Serve a coordinator: register, heartbeat, and run each assigned rank as
    /// a child `scop-worker rank` process.
    Agent(scop_agent::cli::AgentArgs),
    /// Run every stage of a job in this process: pretrain?, knockoff or score, decide, finetune, export.
    Run(RunArgs),
    /// Show what pruning does to a network: channels, params and FLOPs per unit.
    Inspect(InspectArgs),
    /// Build (and optionally load and prune) a network and export it:
    /// model.safetensors, arch.json, model.pt (TorchScript), model-card.json.
    Export(ExportArgs),
    /// Inference latency of dense vs pruned networks, as JSON (run by `cargo xtask bench models`).
    #[command(hide = true)]
    BenchModels(LatencyArgs),
    /// Run one stage as one rank of a data-parallel job (started by the launcher or
    /// the worker agent, one process per rank). Writes the stage's events as JSON
    /// lines on stdout; on failure exits with status 1 and one line on stderr.
    #[command(hide = true)]
    Rank(scop_worker::commands::rank::RankArgs),
    /// Training-step throughput of the stage code, as JSON (run by `cargo xtask bench train`).
    #[command(hide = true)]
    BenchTrain(scop_worker::bench::train::TrainBenchArgs),
    /// One rank of the TCP all-reduce benchmark (`cargo xtask bench collectives` runs it).
    #[command(hide = true)]
    BenchAllreduce(BenchAllreduceArgs),
    /// One rank of the data-parallel training-step benchmark (`cargo xtask bench collectives`).
    #[command(hide = true)]
    BenchTrainStep(BenchTrainStepArgs),
    /// ImageFolder loader throughput, as JSON (run by `cargo xtask bench loader`).
    #[command(hide = true)]
    BenchLoader(scop_worker::bench::loader::LoaderBenchArgs),
    /// Training-step throughput on one GPU, channels-last and bf16, as JSON (`scripts/gpu-check`).
    #[command(hide = true)]
    BenchGpuTrain(scop_worker::bench::gpu::GpuBenchArgs),
    /// The NCCL path on one GPU as a one-rank group, one JSON line per check (`scripts/gpu-check`).
    #[command(hide = true)]
    CheckNccl {
        /// CUDA device ordinal.
        #[arg(long, default_value_t = 0)]
        device: usize,
        /// The same checks on a one-rank TCP ring under NCCL's rules, no CUDA call
        /// (the CPU rehearsal of `scripts/gpu-check`).
        #[arg(long)]
        cpu: bool,
    },
}

#[derive(Debug, clap::Args)]
struct BenchTrainStepArgs {
    /// The rendezvous record as JSON (or a file holding it).
    #[arg(long)]
    rendezvous: String,
    /// Samples per rank and step.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Intra-op threads of this rank.
    #[arg(long, default_value_t = 1)]
    threads: i32,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The job spec (YAML); see docs/job-spec.md.
    spec: std::path::PathBuf,
    /// Write everything here instead of the spec's output.dir.
    #[arg(long)]
    output: Option<std::path::PathBuf>,
    /// Continue each stage from its latest checkpoint in the output directory.
    #[arg(long)]
    resume: bool,
    /// Run each training stage as this many rank processes (replaces resources.world_size).
    #[arg(long)]
    world_size: Option<u32>,
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
    // Before any thread starts: tensors reuse freed memory instead of fresh pages.
    let kept = scop_worker::memory::keep_freed_memory();
    // Colour only for a person at a terminal: a log file or a pipe gets plain text.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    tracing::debug!(kept, "malloc keeps freed memory for reuse");
    let args = Args::parse();
    match args.command {
        Command::Run(a) => {
            let spec = match scop_core::spec::JobSpec::from_file(&a.spec) {
                Ok(spec) => spec,
                Err(e) => fail(&format!("{}:\n{e}", a.spec.display())),
            };
            let options = scop_worker::commands::run::RunOptions {
                output: a.output,
                resume: a.resume,
                world_size: a.world_size,
            };
            let ran = if spec.is_sweep() {
                scop_worker::commands::run::run_sweep(&spec, &options).map(drop)
            } else {
                scop_worker::commands::run::run_job(&spec, &options).map(drop)
            };
            if let Err(e) = ran {
                fail(&e.to_string());
            }
        }
        Command::Rank(a) => {
            if let Err(e) = scop_worker::commands::rank::run_rank(&a) {
                eprintln!("error: {e}");
                // The agent reads this status: a permanent failure is not retried.
                let code = if e.is_permanent() { scop_core::event::PERMANENT_FAILURE_EXIT_CODE } else { 1 };
                std::process::exit(code)
            }
        }
        Command::BenchTrainStep(a) => {
            use scop_worker::stages::step_bench::{StepBench, bench_train_steps};
            tch::set_num_threads(a.threads);
            let rendezvous = scop_worker::commands::rank::read_rendezvous(&a.rendezvous)?;
            let rank = rendezvous.rank;
            let bench = StepBench { rendezvous, batch: a.batch, warmup: a.warmup, steps: a.steps };
            let span = bench_train_steps(&bench).map_err(anyhow::Error::msg)?;
            println!(
                "RESULT rank={rank} steps={} batch={} total_ms={:.3}",
                a.steps,
                a.batch,
                span.as_secs_f64() * 1e3
            );
        }
        Command::Agent(args) => {
            // Probed before the runtime starts: libtorch stays off tokio threads.
            let cuda = if args.cpu {
                0
            } else {
                u32::try_from(scop_worker::commands::runtime::cuda_device_count()).unwrap_or(0)
            };
            let config = args.config(cuda)?;
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(scop_agent::run(config, scop_agent::stop_signal()))?;
        }
        Command::Info => {
            let info = scop_worker::commands::runtime::RuntimeInfo::probe();
            println!("{}", serde_json::to_string_pretty(&info)?);
        }
        Command::Inspect(args) => {
            let report = scop_worker::commands::inspect::inspect(&args)?;
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
            let report = scop_worker::bench::latency::measure(&args)?;
            println!("{}", serde_json::to_string(&report)?);
        }
        Command::BenchTrain(args) => {
            let report = scop_worker::bench::train::measure(&args)?;
            println!("{}", serde_json::to_string(&report)?);
        }
        Command::BenchLoader(args) => {
            let report = scop_worker::bench::loader::measure(&args)?;
            println!("{}", serde_json::to_string(&report)?);
        }
        Command::BenchGpuTrain(args) => {
            let report = scop_worker::bench::gpu::measure(&args)?;
            println!("{}", serde_json::to_string(&report)?);
        }
        Command::CheckNccl { device, cpu } => check_nccl(device, cpu)?,
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

#[cfg(feature = "nccl")]
fn check_nccl(device: usize, cpu: bool) -> anyhow::Result<()> {
    use scop_worker::commands::nccl_check::{Target, run};
    let lines = run(if cpu { Target::Cpu } else { Target::Gpu(device) });
    for line in &lines {
        println!("{}", serde_json::to_string(line)?);
    }
    anyhow::ensure!(
        lines.iter().all(|l| l.ok),
        "{} NCCL check(s) failed",
        lines.iter().filter(|l| !l.ok).count()
    );
    Ok(())
}

#[cfg(not(feature = "nccl"))]
fn check_nccl(_device: usize, _cpu: bool) -> anyhow::Result<()> {
    anyhow::bail!("check-nccl: this scop-worker was built without the `nccl` cargo feature")
}

/// Prints the reason and exits non-zero, without a backtrace: bad input is not a crash.
fn fail(reason: &str) -> ! {
    eprintln!("error: {reason}");
    std::process::exit(1)
}
