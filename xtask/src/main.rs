//! Project automation: `cargo xtask <command>`. Run `cargo xtask --help` for the list.

mod bench;
mod data;
mod demo;
mod deploy;
mod invariants;
mod links;
mod python;
mod setup;
mod shell;
mod test;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "scop's project automation")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create .venv with torch==2.11.0 and point tch at its libtorch (idempotent).
    Setup,
    /// Setup, then fmt --check, clippy -D warnings, the whole test suite, the Python client's tests and the link check.
    Test,
    /// Run the main job end to end.
    Demo {
        /// A tiny schedule on a subset of the data: a first look in a few minutes.
        #[arg(long)]
        quick: bool,
        /// Leave scopd standalone running afterwards, to explore with scopctl.
        #[arg(long)]
        keep_running: bool,
    },
    /// Fail if scopd, scopctl or scop-agent link libtorch (and check that scop-worker does).
    CheckLinks,
    /// Fail if a stage name or a job-directory file name is written outside scop-core.
    CheckArchitecture,
    /// Check deploy/ (Dockerfiles, Kubernetes overlays, monitoring) against the repository and the binaries.
    CheckDeploy,
    /// Fetch Fashion-MNIST (Debian's dataset-fashion-mnist) into data/fashion-mnist.
    Data,
    /// Run a benchmark and print its ratios measured side by side: `models`, `collectives`, `train`.
    Bench { name: String },
}

fn main() {
    let args = Args::parse();
    let result = match args.command {
        Command::Setup => setup::run(),
        Command::Test => test::run(),
        Command::Demo { quick, keep_running } => demo::run(quick, keep_running),
        Command::CheckLinks => links::run(),
        Command::CheckArchitecture => invariants::run(),
        Command::CheckDeploy => deploy::run(),
        Command::Data => data::fashion_mnist().map(|_| ()),
        Command::Bench { name } => bench::run(&name),
    };
    if let Err(e) = result {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}
