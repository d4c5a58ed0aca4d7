//! `cargo xtask test`'s Python part: the `scop` client package in `client/python`.
//!
//! Fails when the committed gRPC stubs differ from what grpcio-tools generates
//! from `proto/scop/v1`, installs the package into `.venv` with pip (as a user
//! would, so that `pyproject.toml` is exercised), and runs its pytest suite
//! against the workspace's `scopd` and `scop-worker` binaries.

use std::process::Command;

use crate::shell;

pub fn run() -> anyhow::Result<()> {
    let root = shell::root();
    let python = root.join(".venv/bin/python");
    let package = root.join("client/python");
    shell::run(Command::new(&python).arg(package.join("generate_stubs.py")).arg("--check"))?;
    // The tests start these; a no-op when the test build already made them.
    shell::run(shell::cargo().args([
        "build",
        "-p",
        "scop-server",
        "-p",
        "scop-worker",
        "-p",
        "scop-agent",
        "--bins",
    ]))?;
    shell::run(
        Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"])
            // The venv already has the build backend and the dependencies.
            .arg("--no-build-isolation")
            .arg(&package),
    )?;
    shell::run(
        Command::new(&python)
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
            .arg(package.join("tests"))
            .env("SCOP_BIN_DIR", root.join("target/debug")),
    )
}
