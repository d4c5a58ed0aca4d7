//! Running commands from xtask: echoed, checked, with readable errors.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The workspace root (the parent of `xtask/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

/// Runs `cmd` in the workspace root, echoing it; fails if it exits non-zero.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    in_root(cmd);
    eprintln!("$ {}", describe(cmd));
    let status = cmd.status().with_context(|| format!("cannot start `{}`", describe(cmd)))?;
    if !status.success() {
        bail!("`{}` failed with {status}", describe(cmd));
    }
    Ok(())
}

/// Runs `cmd` and returns its standard output; fails if it exits non-zero.
pub fn output(cmd: &mut Command) -> anyhow::Result<String> {
    in_root(cmd);
    let out = cmd.output().with_context(|| format!("cannot start `{}`", describe(cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed with {}:\n{}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `cargo` as invoked by the user (respects `$CARGO`).
///
/// Without the variables `cargo run` set for xtask itself: some build scripts
/// (ring's) rerun when `CARGO_MANIFEST_DIR` changes, so a build started from
/// here would otherwise be rebuilt by the user's next plain `cargo build`, and
/// the other way round.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_by_cargo_run = name.starts_with("CARGO_PKG_")
            || matches!(
                &*name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
            );
        if set_by_cargo_run {
            cmd.env_remove(&*name);
        }
    }
    cmd
}

/// The cargo target directory (`$CARGO_TARGET_DIR`, else `target/`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// The directory of the release binaries `scopd`, `scopctl` and `scop-worker`,
/// built first. The demo and every benchmark build them the same way, so their
/// features unify alike and switching between them rebuilds nothing (a
/// `-p scop-worker` build resolves tonic's and rustls's features differently
/// and would rebuild half the tree each time).
pub fn release_binaries() -> anyhow::Result<PathBuf> {
    run(cargo().args(["build", "--release", "--bins"]))?;
    Ok(target_dir().join("release"))
}

/// The project's virtual environment's python, which `cargo xtask setup` makes.
pub fn venv_python() -> anyhow::Result<PathBuf> {
    let python = root().join(".venv/bin/python");
    if !python.exists() {
        bail!("{} is missing: run `cargo xtask setup` first", python.display());
    }
    Ok(python)
}

/// The directory of the debug binaries `scopd`, `scopctl` and `scop-worker`,
/// built as the test suite builds them (`cargo test --no-run` is what nextest
/// runs too): after the tests this is a no-op, where a plain `cargo build`
/// would rebuild everything whose features the test build unified differently.
pub fn debug_binaries() -> anyhow::Result<PathBuf> {
    run(cargo().args(["test", "--workspace", "--no-run", "--quiet"]))?;
    Ok(target_dir().join("debug"))
}

/// Commands run in the workspace root unless they chose a directory.
fn in_root(cmd: &mut Command) {
    if cmd.get_current_dir().is_none() {
        cmd.current_dir(root());
    }
}

fn describe(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}
