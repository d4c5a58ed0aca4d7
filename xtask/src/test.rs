//! `cargo xtask test`: everything CI checks, in the order that fails fastest.

use std::process::Command;

use crate::{data, deploy, invariants, links, setup, shell};

pub fn run() -> anyhow::Result<()> {
    setup::run()?;
    // Tests read the real Fashion-MNIST files (subsets of them).
    data::fashion_mnist()?;
    shell::run(shell::cargo().args(["fmt", "--all", "--check"]))?;
    invariants::run()?;
    shell::run(shell::cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    // The NCCL backend and the GPU tests cannot run without a GPU, but they must
    // keep compiling: lint them too (only scop-worker and cudarc are checked again).
    shell::run(shell::cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--features",
        "scop-worker/cuda-tests",
        "--",
        "-D",
        "warnings",
    ]))?;
    let nextest = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if nextest {
        shell::run(shell::cargo().args(["nextest", "run", "--workspace", "--no-fail-fast"]))?;
    } else {
        shell::run(shell::cargo().args(["test", "--workspace", "--no-fail-fast"]))?;
    }
    links::run()?;
    // After the test build, so the binaries whose --help it reads are there.
    deploy::run()?;
    eprintln!("xtask test: all checks passed");
    Ok(())
}
