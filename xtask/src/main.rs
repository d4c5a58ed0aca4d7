//! Project automation: `cargo xtask <command>`. Run `cargo xtask --help` for the list.

// Temporary hook until `bench/mod.rs` dispatches `cargo xtask bench <name>`.
#[path = "bench/collectives.rs"]
mod bench_collectives;
#[path = "bench/train.rs"]
mod bench_train;
mod data;
mod demo;
mod links;
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
    /// Setup, then fmt --check, clippy -D warnings, the whole test suite and the link check.
    Test,
    /// Run the main job end to end.
    Demo,
    /// Fail if scopd or scopctl link libtorch (and check that scop-worker does).
    CheckLinks,
    /// Fetch Fashion-MNIST (Debian's dataset-fashion-mnist) into data/fashion-mnist.
    Data,
}

fn main() {
    if std::env::args().skip(1).take(2).eq(["bench", "collectives"]) {
        if let Err(e) = bench_collectives::run() {
            eprintln!("xtask: error: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    if std::env::args().skip(1).take(2).eq(["bench", "train"]) {
        if let Err(e) = bench_train::run() {
            eprintln!("xtask: error: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    let args = Args::parse();
    let result = match args.command {
        Command::Setup => setup::run(),
        Command::Test => test::run(),
        Command::Demo => demo::run(),
        Command::CheckLinks => links::run(),
        Command::Data => data::fashion_mnist().map(|_| ()),
    };
    if let Err(e) = result {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}
