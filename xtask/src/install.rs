//! `cargo xtask install`: puts `scopd`, `scopctl` and `scop-worker` on `PATH`.
//!
//! It builds the release binaries as the demo does (so nothing is built
//! twice) and copies them into `$CARGO_HOME/bin` (`~/.cargo/bin`, on `PATH`
//! after a rustup install) or `--root DIR`'s `bin/`, as `cargo install` would.
//! `scop-worker` carries an rpath to the checkout's libtorch, so it runs from
//! anywhere without `LD_LIBRARY_PATH` as long as the checkout's `.venv`
//! stays; `ldd` checks that it finds every library from its new place.

use std::path::Path;
use std::process::Command;

use anyhow::bail;

use crate::{setup, shell};

pub fn run(root: Option<&Path>) -> anyhow::Result<()> {
    setup::run()?;
    let built = shell::release_binaries()?;
    let bin = match root {
        Some(root) => std::path::absolute(root)?.join("bin"),
        None => cargo_home().join("bin"),
    };
    std::fs::create_dir_all(&bin)?;
    for binary in ["scopd", "scopctl", "scop-worker"] {
        // Copied beside, then renamed over: a running old binary is not disturbed.
        let partial = bin.join(format!(".{binary}.partial"));
        std::fs::copy(built.join(binary), &partial)?;
        std::fs::rename(&partial, bin.join(binary))?;
    }
    let worker = bin.join("scop-worker");
    let ldd = shell::output(Command::new("ldd").arg(&worker))?;
    if let Some(missing) = ldd.lines().find(|l| l.contains("not found")) {
        bail!("{} cannot find a library: {}", worker.display(), missing.trim());
    }
    eprintln!("install: scopd, scopctl and scop-worker are in {}", bin.display());
    let on_path = std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d == bin));
    if !on_path {
        eprintln!(
            "install: {} is not on PATH; add it: export PATH=\"{}:$PATH\"",
            bin.display(),
            bin.display()
        );
    }
    Ok(())
}

fn cargo_home() -> std::path::PathBuf {
    std::env::var_os("CARGO_HOME").map(Into::into).unwrap_or_else(|| {
        std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo")
    })
}
