//! `cargo xtask setup`: the project-local Python environment and the libtorch link.
//!
//! Creates `.venv`, installs `xtask/requirements.txt` (torch==2.11.0 among them),
//! and points `.libtorch` at the installed `torch` package, which holds
//! libtorch's `include/` and `lib/`. `.cargo/config.toml` sets `LIBTORCH` to
//! that link, so plain `cargo build` works afterwards. A stamp file makes a
//! second run take well under a second.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::shell;

/// The torch version tch 0.24 is built against.
const TORCH_VERSION: &str = "2.11.0";

pub fn run() -> anyhow::Result<()> {
    let root = shell::root();
    let venv = root.join(".venv");
    let python = venv.join("bin/python");
    let link = root.join(".libtorch");
    let stamp = venv.join("scop-setup.stamp");
    let requirements = std::fs::read_to_string(root.join("xtask/requirements.txt"))
        .context("cannot read xtask/requirements.txt")?;

    let up_to_date = python.exists()
        && link.join("lib/libtorch_cpu.so").exists()
        && std::fs::read_to_string(&stamp).is_ok_and(|s| s == requirements);
    if up_to_date {
        eprintln!("setup: .venv and .libtorch are up to date");
        report_libtorch_override(&link);
        return Ok(());
    }

    if !python.exists() {
        let system_python = std::env::var("SCOP_PYTHON").unwrap_or_else(|_| "python3".to_owned());
        check_python(&system_python)?;
        eprintln!("setup: creating .venv with {system_python}");
        shell::run(Command::new(&system_python).args(["-m", "venv"]).arg(&venv)).with_context(|| {
            format!(
                "could not create the virtual environment .venv with {system_python}. \
                 On Debian or Ubuntu install the venv module: `apt-get install python3-venv`"
            )
        })?;
    }
    shell::output(Command::new(&python).args(["-m", "pip", "--version"])).context(
        "pip is missing from .venv. Install it (`apt-get install python3-pip`, or \
         `python3 -m ensurepip`), delete .venv and run `cargo xtask setup` again",
    )?;
    eprintln!(
        "setup: installing xtask/requirements.txt into .venv (torch is large; this takes a few minutes)"
    );
    shell::run(
        Command::new(&python)
            // No wheel cache: the torch and CUDA wheels are about 3 GB that would sit in
            // ~/.cache next to the 5 GB they unpack to, for no later use.
            .args(["-m", "pip", "install", "--disable-pip-version-check", "--no-cache-dir", "-r"])
            .arg(root.join("xtask/requirements.txt")),
    )
    .context(
        "installing the Python requirements failed (see pip's output above). Check that the \
         package index is reachable and that there is disk space (torch with its CUDA \
         libraries needs about 5 GB, the build another 10 GB), then run `cargo xtask setup` again",
    )?;

    let torch_dir = torch_dir(&python)?;
    relink(&link, &torch_dir)?;
    std::fs::write(&stamp, &requirements).context("cannot write the setup stamp")?;
    eprintln!("setup: done; .libtorch -> {}", torch_dir.display());
    report_libtorch_override(&link);
    Ok(())
}

fn check_python(python: &str) -> anyhow::Result<()> {
    let version = Command::new(python).arg("--version").output();
    match version {
        Ok(out) if out.status.success() => Ok(()),
        _ => bail!(
            "`{python}` was not found or does not run. Install Python 3.9 or newer \
             (Debian or Ubuntu: `apt-get install python3 python3-venv python3-pip`), \
             or set SCOP_PYTHON to an interpreter, then run `cargo xtask setup` again"
        ),
    }
}

/// Asks the venv's torch where it lives and checks its version.
fn torch_dir(python: &Path) -> anyhow::Result<PathBuf> {
    let out =
        shell::output(Command::new(python).args([
            "-c",
            "import os, torch; print(torch.__version__); print(os.path.dirname(torch.__file__))",
        ]))
        .context("torch was installed but does not import")?;
    let mut lines = out.lines();
    let version = lines.next().unwrap_or_default();
    let dir = lines.next().unwrap_or_default();
    if version.split('+').next() != Some(TORCH_VERSION) {
        bail!(
            "tch 0.24 needs torch {TORCH_VERSION}, but .venv has {version}; delete .venv and run `cargo xtask setup` again"
        );
    }
    Ok(PathBuf::from(dir))
}

fn relink(link: &Path, target: &Path) -> anyhow::Result<()> {
    if link.symlink_metadata().is_ok() {
        std::fs::remove_file(link).with_context(|| format!("cannot replace {}", link.display()))?;
    }
    // A relative link keeps working if the checkout moves.
    let root = link.parent().expect(".libtorch has a parent");
    let relative = target.strip_prefix(root).unwrap_or(target);
    std::os::unix::fs::symlink(relative, link).with_context(|| format!("cannot create {}", link.display()))
}

/// Says so when the environment points tch at another libtorch than ours.
fn report_libtorch_override(link: &Path) {
    if let Ok(libtorch) = std::env::var("LIBTORCH")
        && Path::new(&libtorch) != link
    {
        eprintln!("setup: note: LIBTORCH={libtorch} from the environment takes precedence over .libtorch");
    }
}
