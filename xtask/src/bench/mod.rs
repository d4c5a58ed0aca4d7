//! `cargo xtask bench <name>`: benchmarks that print ratios measured side by side
//! in one run. They are not tests and never fail on timing.

use std::path::Path;
use std::process::Command;

mod collectives;
mod control_plane;
mod dp_scaling;
mod loader;
mod models;
mod train;

/// A PyTorch baseline's process, with the malloc setting `scop-worker` gives
/// itself (`worker/src/memory.rs`: large blocks from malloc's heaps, freed
/// memory kept for the next one), so that a ratio compares the two programs'
/// code, not their allocators. Malloc settings of the user's own pass through
/// as they are, to both sides.
fn baseline_command(python: &Path) -> Command {
    let mut cmd = Command::new(python);
    let user_set = ["GLIBC_TUNABLES", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_"]
        .iter()
        .any(|name| std::env::var_os(name).is_some());
    if !user_set {
        cmd.env("MALLOC_MMAP_MAX_", "0").env("MALLOC_TRIM_THRESHOLD_", i32::MAX.to_string());
    }
    cmd
}

/// One benchmark: its name on the command line, what it measures, how to run it.
struct Bench {
    name: &'static str,
    about: &'static str,
    run: fn() -> anyhow::Result<()>,
}

const BENCHES: &[Bench] = &[
    Bench {
        name: "models",
        about: "ResNet-50 inference, dense vs 2.25x fewer FLOPs (scatter, keep, group), batch 1 and 32, CPU",
        run: models::run,
    },
    Bench {
        name: "train",
        about: "training steps vs PyTorch eager (ResNet-20), knockoff vs plain, pruned vs dense, loader",
        run: train::run,
    },
    Bench {
        name: "loader",
        about: "ImageFolder training loader (decode, random-resized crop, flip, normalise) vs torchvision ImageFolder + DataLoader, same workers, images/s per core",
        run: loader::run,
    },
    Bench {
        name: "collectives",
        about: "TCP-ring all-reduce of 100 MB vs torch.distributed gloo, 2 and 4 ranks; data-parallel training-step scaling at 1, 2, 4 CPU ranks",
        run: collectives::run,
    },
    Bench {
        name: "control-plane",
        about: "scopd under 1,000 in-flight submit/get calls, then 1,000 heartbeating workers and 500 watchers: p50/p99 and CPU",
        run: control_plane::run,
    },
];

/// The benchmarks' names with what each measures, for clap: `cargo xtask bench --help` lists them.
pub fn names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(
        BENCHES.iter().map(|b| clap::builder::PossibleValue::new(b.name).help(b.about)),
    )
}

pub fn run(name: &str) -> anyhow::Result<()> {
    match BENCHES.iter().find(|b| b.name == name) {
        Some(bench) => (bench.run)(),
        None => {
            let known: Vec<String> = BENCHES.iter().map(|b| format!("  {}: {}", b.name, b.about)).collect();
            anyhow::bail!("unknown benchmark {name:?}; known benchmarks:\n{}", known.join("\n"))
        }
    }
}
