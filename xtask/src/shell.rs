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
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// The directory of the debug binaries `scopd`, `scopctl` and `scop-worker`,
/// built as the test suite builds them (`cargo test --no-run` is what nextest
/// runs too): after the tests this is a no-op, where a plain `cargo build`
/// would rebuild everything whose features the test build unified differently.
pub fn debug_binaries() -> anyhow::Result<PathBuf> {
    run(cargo().args(["test", "--workspace", "--no-run", "--quiet"]))?;
    Ok(root().join("target/debug"))
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
