//! `cargo xtask test`: everything CI checks, in the order that fails fastest.

use std::process::Command;

use crate::{data, deploy, invariants, links, python, setup, shell};

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
    // Every data-parallel group the tests start (in-process, rank processes,
    // `scop-worker run`) checks each collective call against NCCL's preconditions,
    // so a CPU run fails where a GPU run would. Debug builds do so anyway; this
    // also covers a release test build.
    let strict = |mut cmd: Command| {
        cmd.env("SCOP_COLLECTIVE_CHECKS", "strict");
        cmd
    };
    let nextest = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if nextest {
        shell::run(strict(shell::cargo()).args(["nextest", "run", "--workspace", "--no-fail-fast"]))?;
    } else {
        shell::run(strict(shell::cargo()).args(["test", "--workspace", "--no-fail-fast"]))?;
    }
    // The Python client's tests drive the binaries the test build just made.
    python::run()?;
    links::run()?;
    // After the test build, so the binaries whose --help it reads are there.
    deploy::run()?;
    eprintln!("xtask test: all checks passed");
    Ok(())
}
