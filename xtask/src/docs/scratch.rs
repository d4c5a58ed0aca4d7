//! Running a doc's `sh run` blocks the way a newcomer would: from the
//! repository root of a scratch copy, with the built binaries on `PATH`, a
//! private `HOME` (so no real client config is touched), free ports for a
//! `scopd` the block starts, and every example
//! spec cut down to a tiny schedule, so a block that trains takes a minute.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_norway::Value;

use crate::shell;

/// A scratch copy of the repository's tracked files; `data/` and `.venv`
/// are linked, not copied.
pub struct Scratch {
    dir: tempfile::TempDir,
    bin_dir: PathBuf,
}

impl Scratch {
    pub fn new(bin_dir: &Path) -> anyhow::Result<Self> {
        let root = shell::root();
        let dir = tempfile::Builder::new().prefix("scop-check-docs-").tempdir()?;
        let files = shell::output(Command::new("git").arg("ls-files").current_dir(&root))?;
        for file in files.lines().filter(|f| !f.is_empty()) {
            let (from, to) = (root.join(file), dir.path().join(file));
            if !from.is_file() {
                continue; // deleted in the work tree
            }
            std::fs::create_dir_all(to.parent().expect("a parent"))?;
            std::fs::copy(&from, &to).with_context(|| format!("copying {file}"))?;
        }
        for linked in ["data", ".venv", ".libtorch"] {
            if root.join(linked).exists() {
                std::os::unix::fs::symlink(root.join(linked), dir.path().join(linked))?;
            }
        }
        std::fs::create_dir_all(dir.path().join(".home"))?;
        for example in std::fs::read_dir(dir.path().join("examples"))? {
            let path = example?.path();
            if path.extension().is_some_and(|e| e == "yaml") {
                tiny(&path)?;
            }
        }
        Ok(Self { dir, bin_dir: bin_dir.to_path_buf() })
    }

    /// Runs one block with bash (`-eu -o pipefail`); what it started in the
    /// background is stopped when it ends.
    pub fn run(&self, name: &str, script: &str, limit: Duration) -> anyhow::Result<()> {
        use std::os::unix::process::CommandExt;
        let path = std::env::join_paths(
            std::iter::once(self.bin_dir.clone())
                .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
        )?;
        let home = self.dir.path().join(".home");
        let started = Instant::now();
        let mut child = Command::new("bash")
            .args(["-eu", "-o", "pipefail", "-c", script])
            .current_dir(self.dir.path())
            .env("PATH", path)
            .env("HOME", &home)
            // Free ports, not the defaults: a coordinator may already run on this machine.
            .env("SCOP_PUBLIC_ADDR", "127.0.0.1:0")
            .env("SCOP_WORKER_ADDR", "127.0.0.1:0")
            .env("SCOP_METRICS_ADDR", "127.0.0.1:0")
            // data/ links to the checkout's, outside this folder: name it as a data
            // root, as a user whose data lives elsewhere does.
            .env("SCOP_DATA_ROOTS", self.dir.path().join("data"))
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("SCOPCTL_CONFIG")
            .env_remove("SCOP_SERVER")
            .env_remove("SCOP_TOKEN")
            .process_group(0)
            .spawn()
            .with_context(|| format!("{name}: cannot start bash"))?;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if started.elapsed() > limit {
                break None;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        // The block's background processes (a `scopd standalone &`) end with it.
        let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGTERM);
        std::thread::sleep(Duration::from_secs(2));
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait();
        match status {
            Some(status) if status.success() => {
                eprintln!("check-docs: {name}: ran in {:.0} s", started.elapsed().as_secs_f64());
                Ok(())
            }
            Some(status) => bail!("{name}: {status}\n{script}"),
            None => bail!("{name}: still running after {} s\n{script}", limit.as_secs()),
        }
    }
}

/// Cuts a spec down in place: one epoch per stage on a small subset.
fn tiny(path: &Path) -> anyhow::Result<()> {
    let mut spec: Value = serde_norway::from_str(&std::fs::read_to_string(path)?)?;
    let Some(map) = spec.as_mapping_mut() else { return Ok(()) };
    let set = |map: &mut Value, key: &str, value: Value| {
        if let Some(m) = map.as_mapping_mut() {
            m.insert(Value::from(key), value);
        }
    };
    for stage in ["pretrain", "knockoff", "finetune"] {
        if let Some(section) = map.get_mut(stage) {
            set(section, "epochs", Value::from(1));
            set(section, "batch_size", Value::from(32));
            if stage == "finetune" {
                set(section, "bn_recalibration_batches", Value::from(2));
            }
        }
    }
    if let Some(data) = map.get_mut("data") {
        set(data, "train_subset", Value::from(256));
        set(data, "test_subset", Value::from(128));
        set(data, "loader_workers", Value::from(1));
    }
    std::fs::write(path, serde_norway::to_string(&spec)?)?;
    Ok(())
}
