//! Project automation: `cargo xtask <command>`. Run `cargo xtask --help` for the list.

mod bench;
mod chaos;
mod data;
mod demo;
mod deploy;
mod docs;
mod install;
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
    /// Setup, then fmt --check, clippy -D warnings, the whole test suite, the Python client's tests, the
    /// link, architecture, deploy and docs checks.
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
    /// Check that every command, flag, path and spec field in README.md and docs/*.md exists, that
    /// docs/cli.md matches the binaries, and run the shell blocks marked `sh run`.
    CheckDocs {
        /// Regenerate docs/cli.md from the binaries' --help instead of checking it.
        #[arg(long)]
        write: bool,
    },
    /// Build the release binaries and install scopd, scopctl and scop-worker into ~/.cargo/bin
    /// (or --root DIR's bin/); scop-worker keeps finding libtorch through its rpath.
    Install {
        /// Install under DIR/bin instead of cargo's default root.
        #[arg(long)]
        root: Option<std::path::PathBuf>,
    },
    /// Fetch Fashion-MNIST (Debian's dataset-fashion-mnist) into data/fashion-mnist.
    Data,
    /// Inject faults into a real cluster running a small job, one scenario at a time, and print
    /// a checked table (outcome, restarts, steps recomputed, wall time lost, anything lost).
    Chaos {
        /// Run only this scenario (see --list).
        #[arg(long)]
        only: Option<String>,
        /// List the scenarios and exit.
        #[arg(long)]
        list: bool,
        /// Use the debug binaries as they are instead of building them first.
        #[arg(long)]
        no_build: bool,
    },
    /// Run a benchmark and print its ratios measured side by side.
    Bench {
        #[arg(value_parser = bench::names())]
        name: String,
    },
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
        Command::CheckDocs { write } => docs::run(write),
        Command::Install { root } => install::run(root.as_deref()),
        Command::Data => data::fashion_mnist().map(|_| ()),
        Command::Chaos { only, list, no_build } => chaos::run(only.as_deref(), list, !no_build),
        Command::Bench { name } => bench::run(&name),
    };
    if let Err(e) = result {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}
