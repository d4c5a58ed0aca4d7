//! Datasets for the demo and the tests, fetched into the git-ignored `data/`.
//!
//! Fashion-MNIST comes from Debian's `dataset-fashion-mnist` package, which is
//! unpacked (not installed) with `apt-get download` and `dpkg-deb -x`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::shell;

const FILES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];
const SYSTEM_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Makes sure `data/fashion-mnist` holds the four gzipped IDX files; returns that directory.
pub fn fashion_mnist() -> anyhow::Result<PathBuf> {
    let dest = shell::root().join("data/fashion-mnist");
    if FILES.iter().all(|f| dest.join(f).exists()) {
        return Ok(dest);
    }
    std::fs::create_dir_all(&dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let source = if Path::new(SYSTEM_DIR).join(FILES[0]).exists() {
        PathBuf::from(SYSTEM_DIR)
    } else {
        unpack_debian_package(&dest)?
    };
    for file in FILES {
        std::fs::copy(source.join(file), dest.join(file))
            .with_context(|| format!("cannot copy {} into {}", file, dest.display()))?;
    }
    let download = dest.join(".download");
    if download.exists() {
        std::fs::remove_dir_all(&download)
            .with_context(|| format!("cannot remove {}", download.display()))?;
    }
    eprintln!("data: Fashion-MNIST is in {}", dest.display());
    Ok(dest)
}

fn unpack_debian_package(dest: &Path) -> anyhow::Result<PathBuf> {
    let work = dest.join(".download");
    std::fs::create_dir_all(&work)?;
    let download = || {
        shell::output(Command::new("apt-get").args(["download", "dataset-fashion-mnist"]).current_dir(&work))
    };
    if download().is_err() {
        // A fresh machine may not have package lists yet.
        shell::run(Command::new("apt-get").arg("update").arg("-qq")).context(
            "apt-get update failed; Fashion-MNIST comes from Debian's dataset-fashion-mnist package",
        )?;
        download().context("`apt-get download dataset-fashion-mnist` failed")?;
    }
    let deb = std::fs::read_dir(&work)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"));
    let Some(deb) = deb else { bail!("apt-get download left no .deb in {}", work.display()) };
    shell::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&work))?;
    Ok(work.join(SYSTEM_DIR.trim_start_matches('/')))
}
