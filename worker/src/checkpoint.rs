//! Checkpoints: named tensors as safetensors plus a small JSON of where the
//! stage stood, written atomically and durably, with a checksum manifest.
//!
//! A checkpoint is a directory `<stage>-step-00001234/` holding
//! `tensors.safetensors`, `state.json` and `manifest.json` (size and CRC-32 of
//! the other two). It is assembled under a temporary name, every file and the
//! directory are flushed to disk (fsync), it is renamed into place and the
//! parent directory is flushed; `latest` (a one-line file, itself replaced by
//! an fsync'ed rename) then names it. A crash therefore never leaves a
//! `latest` that points at a half-written checkpoint. The newest `keep`
//! checkpoints are kept, older ones deleted. On resume a checkpoint whose
//! files do not match their manifest (or do not load) is skipped for the
//! previous one, and the caller is told which were skipped and why.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Errors reading or writing checkpoints; each names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: {}", torch_message(.source, .path))]
    Torch {
        path: PathBuf,
        #[source]
        source: tch::TchError,
    },
}

/// libtorch's message without the path the error already starts with (its
/// safetensors errors repeat it: "safetensors error /a/b: ...").
fn torch_message(source: &tch::TchError, path: &Path) -> String {
    let text = source.to_string();
    let path = path.display().to_string();
    match text.find(&path) {
        Some(at) if !path.is_empty() => {
            let (before, after) = text.split_at(at);
            format!("{}{}", before.trim_end(), &after[path.len()..])
        }
        _ => text,
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where a stage stood when the checkpoint was written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// `pretrain`, `knockoff` or `finetune`.
    pub stage: String,
    /// Epochs completed so far; the next batch is `batch` of epoch `epoch`.
    pub epoch: u32,
    /// Index of the next batch within `epoch`.
    pub batch: u64,
    /// Optimiser steps taken so far in this stage; the LR schedule position.
    pub global_step: u64,
    /// Seed of the data order and augmentation (the order is a function of seed and epoch).
    pub seed: u64,
    /// Stage-specific extra values (e.g. best accuracy), kept opaque here.
    #[serde(default)]
    pub extra: serde_json::Value,
}

const TENSORS: &str = "tensors.safetensors";
const STATE: &str = "state.json";
const MANIFEST: &str = "manifest.json";
const LATEST: &str = "latest";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_owned(), source }
}

/// Writes a checkpoint under `dir`, makes it the latest, and deletes all but
/// the newest `keep` (at least this one); returns its directory.
pub fn save(
    dir: &Path,
    state: &CheckpointState,
    tensors: &[(String, Tensor)],
    keep: usize,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let name = format!("{}-step-{:08}", state.stage, state.global_step);
    let final_dir = dir.join(&name);
    let tmp_dir = dir.join(format!(".tmp-{name}"));
    if tmp_dir.exists() {
        std::fs::remove_dir_all(&tmp_dir).map_err(io(&tmp_dir))?;
    }
    std::fs::create_dir_all(&tmp_dir).map_err(io(&tmp_dir))?;
    let tensors_path = tmp_dir.join(TENSORS);
    // safetensors wants contiguous CPU tensors.
    let cpu: Vec<(String, Tensor)> =
        tensors.iter().map(|(n, t)| (n.clone(), t.to_device(tch::Device::Cpu).contiguous())).collect();
    Tensor::write_safetensors(&cpu, &tensors_path)
        .map_err(|source| Error::Torch { path: tensors_path.clone(), source })?;
    let state_path = tmp_dir.join(STATE);
    let json = serde_json::to_vec_pretty(state).expect("checkpoint state serialises");
    std::fs::write(&state_path, json).map_err(io(&state_path))?;
    let manifest = Manifest {
        files: [TENSORS, STATE]
            .into_iter()
            .map(|file| Ok((file.to_owned(), FileSum::of(&tmp_dir.join(file))?)))
            .collect::<Result<_>>()?,
    };
    let manifest_path = tmp_dir.join(MANIFEST);
    let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    std::fs::write(&manifest_path, json).map_err(io(&manifest_path))?;
    scop_core::durable::sync_tree(&tmp_dir).map_err(durable)?;
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(io(&final_dir))?;
    }
    std::fs::rename(&tmp_dir, &final_dir).map_err(io(&final_dir))?;
    scop_core::durable::sync_dir(dir).map_err(durable)?;
    scop_core::durable::write_atomic(&dir.join(LATEST), format!("{name}\n").as_bytes()).map_err(durable)?;
    prune(dir, &state.stage, keep.max(1))?;
    Ok(final_dir)
}

/// Deletes all but the newest `keep` complete checkpoints of `stage` under `dir`.
fn prune(dir: &Path, stage: &str, keep: usize) -> Result<()> {
    let mut all = complete(dir, stage)?;
    // Zero-padded steps: the name order is the step order.
    all.sort();
    let excess = all.len().saturating_sub(keep);
    for old in all.into_iter().take(excess) {
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    Ok(())
}

/// The complete checkpoint directories of `stage` under `dir`, in no order.
fn complete(dir: &Path, stage: &str) -> Result<Vec<PathBuf>> {
    let prefix = format!("{stage}-step-");
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(Error::Io { path: dir.to_owned(), source }),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io(dir))?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) && entry.path().is_dir() {
            found.push(entry.path());
        }
    }
    Ok(found)
}

/// The newest complete checkpoint under `dir`, if any.
pub fn latest(dir: &Path) -> Result<Option<PathBuf>> {
    let pointer = dir.join(LATEST);
    match std::fs::read_to_string(&pointer) {
        Ok(name) => Ok(Some(dir.join(name.trim()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io { path: pointer, source }),
    }
}

/// A checkpoint that loaded, and those skipped on the way to it.
#[derive(Debug)]
pub struct Restored {
    pub dir: PathBuf,
    pub state: CheckpointState,
    pub tensors: Vec<(String, Tensor)>,
    /// Newer checkpoints that were damaged, each with why (`path: reason`).
    pub skipped: Vec<String>,
}

/// The newest checkpoint of `stage` under `dir` that is intact: `latest`
/// first, then the others from the newest. `Ok(None)` when there is none;
/// when every one is damaged, the error lists them all.
pub fn restore(dir: &Path, stage: &str) -> Result<Option<Restored>> {
    let mut candidates = complete(dir, stage)?;
    candidates.sort();
    candidates.reverse();
    if let Some(pointed) = latest(dir)? {
        candidates.retain(|c| *c != pointed);
        candidates.insert(0, pointed);
    }
    if candidates.is_empty() {
        return Ok(None);
    }
    let mut skipped = Vec::new();
    for candidate in candidates {
        match verify(&candidate).and_then(|()| load(&candidate)) {
            Ok((state, tensors)) => return Ok(Some(Restored { dir: candidate, state, tensors, skipped })),
            Err(error) => skipped.push(error.to_string()),
        }
    }
    Err(Error::Invalid {
        path: dir.to_owned(),
        message: format!("no intact checkpoint: {}", skipped.join("; ")),
    })
}

/// Checks the checkpoint's files against its manifest. A checkpoint written
/// before manifests existed has none and passes (loading still checks it).
pub fn verify(checkpoint_dir: &Path) -> Result<()> {
    let manifest_path = checkpoint_dir.join(MANIFEST);
    let text = match std::fs::read_to_string(&manifest_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && checkpoint_dir.join(STATE).exists() => {
            return Ok(());
        }
        Err(source) => return Err(Error::Io { path: manifest_path, source }),
    };
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| Error::Invalid { path: manifest_path.clone(), message: e.to_string() })?;
    for (file, expected) in &manifest.files {
        let path = checkpoint_dir.join(file);
        let found = FileSum::of(&path)?;
        if found != *expected {
            return Err(Error::Invalid {
                path,
                message: format!(
                    "does not match the manifest: {} bytes with CRC-32 {:08x}, expected {} bytes with {:08x}",
                    found.bytes, found.crc32, expected.bytes, expected.crc32
                ),
            });
        }
    }
    Ok(())
}

/// Size and CRC-32 of each file of a checkpoint.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    files: std::collections::BTreeMap<String, FileSum>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct FileSum {
    bytes: u64,
    crc32: u32,
}

impl FileSum {
    fn of(path: &Path) -> Result<FileSum> {
        use std::io::Read;
        let mut file = std::fs::File::open(path).map_err(io(path))?;
        let mut hasher = crc32fast::Hasher::new();
        let mut buffer = vec![0u8; 1 << 16];
        let mut bytes = 0u64;
        loop {
            let n = file.read(&mut buffer).map_err(io(path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            bytes += n as u64;
        }
        Ok(FileSum { bytes, crc32: hasher.finalize() })
    }
}

fn durable(e: scop_core::durable::DurableError) -> Error {
    Error::Io { path: e.path, source: e.source }
}

/// Reads the checkpoint in `checkpoint_dir` (as returned by [`save`] or [`latest`]).
pub fn load(checkpoint_dir: &Path) -> Result<(CheckpointState, Vec<(String, Tensor)>)> {
    let state_path = checkpoint_dir.join(STATE);
    let text = std::fs::read_to_string(&state_path).map_err(io(&state_path))?;
    let state: CheckpointState = serde_json::from_str(&text)
        .map_err(|e| Error::Invalid { path: state_path.clone(), message: e.to_string() })?;
    let tensors_path = checkpoint_dir.join(TENSORS);
    if !tensors_path.exists() {
        return Err(Error::Io {
            path: tensors_path,
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "missing"),
        });
    }
    let tensors = Tensor::read_safetensors(&tensors_path)
        .map_err(|source| Error::Torch { path: tensors_path.clone(), source })?;
    Ok((state, tensors))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(step: u64) -> CheckpointState {
        CheckpointState {
            stage: "finetune".into(),
            epoch: 1,
            batch: 7,
            global_step: step,
            seed: 3,
            extra: serde_json::json!({"best_top1": 0.5}),
        }
    }

    #[test]
    fn save_then_load_round_trips_and_latest_moves() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(latest(dir.path()).unwrap(), None);
        let w = Tensor::arange(6, (tch::Kind::Float, tch::Device::Cpu)).view([2, 3]);
        save(dir.path(), &state(10), &[("w".into(), w.shallow_clone())], 2).unwrap();
        let second = save(dir.path(), &state(20), &[("w".into(), &w * 2.0)], 2).unwrap();
        assert_eq!(latest(dir.path()).unwrap(), Some(second.clone()));
        let (s, tensors) = load(&second).unwrap();
        assert_eq!(s, state(20));
        assert_eq!(tensors.len(), 1);
        assert_eq!(tensors[0].0, "w");
        assert!(tensors[0].1.allclose(&(&w * 2.0), 0.0, 0.0, false));
        // No temporary leftovers.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with(".tmp")), "{names:?}");
    }

    #[test]
    fn a_libtorch_error_names_the_file_once() {
        let path = PathBuf::from("/ckpt/.tmp-pretrain-step-00000004/tensors.safetensors");
        let source = tch::TchError::Torch(format!(
            "safetensors error {}: IoError(Os {{ code: 28, message: \"No space left on device\" }})",
            path.display()
        ));
        let shown = Error::Torch { path: path.clone(), source }.to_string();
        assert_eq!(shown.matches(&*path.to_string_lossy()).count(), 1, "{shown}");
        assert!(
            shown.starts_with(
                "/ckpt/.tmp-pretrain-step-00000004/tensors.safetensors: Internal torch error: safetensors error: IoError"
            ),
            "{shown}"
        );
        assert!(shown.ends_with("No space left on device\" })"), "{shown}");
        // A message without the path is kept whole.
        let other = Error::Torch { path, source: tch::TchError::Torch("out of memory".into()) }.to_string();
        assert!(other.ends_with("tensors.safetensors: Internal torch error: out of memory"), "{other}");
    }

    #[test]
    fn damaged_checkpoints_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let w = Tensor::zeros([2], (tch::Kind::Float, tch::Device::Cpu));
        let ckpt = save(dir.path(), &state(1), &[("w".into(), w)], 2).unwrap();
        std::fs::write(ckpt.join(STATE), "{ not json").unwrap();
        let err = load(&ckpt).unwrap_err().to_string();
        assert!(err.contains("state.json"), "{err}");
        std::fs::write(ckpt.join(STATE), serde_json::to_string(&state(1)).unwrap()).unwrap();
        std::fs::write(ckpt.join(TENSORS), b"garbage").unwrap();
        let err = load(&ckpt).unwrap_err().to_string();
        assert!(err.contains("tensors.safetensors"), "{err}");
    }

    #[test]
    fn only_the_newest_keep_checkpoints_stay() {
        let dir = tempfile::tempdir().unwrap();
        let w = Tensor::zeros([2], (tch::Kind::Float, tch::Device::Cpu));
        for step in [5, 10, 15, 20] {
            save(dir.path(), &state(step), &[("w".into(), w.shallow_clone())], 2).unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["finetune-step-00000015", "finetune-step-00000020", "latest"]);
    }

    /// A damaged latest checkpoint (a torn or corrupted file) is skipped for
    /// the previous one, and the caller learns which and why.
    #[test]
    fn a_corrupt_latest_falls_back_to_the_previous_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let w = Tensor::ones([4], (tch::Kind::Float, tch::Device::Cpu));
        save(dir.path(), &state(10), &[("w".into(), w.shallow_clone())], 2).unwrap();
        let newest = save(dir.path(), &state(20), &[("w".into(), &w * 2.0)], 2).unwrap();
        // Flip bytes in the middle of the newest tensors file: it still has the right size.
        let tensors = newest.join(TENSORS);
        let mut bytes = std::fs::read(&tensors).unwrap();
        let at = bytes.len() - 3;
        bytes[at] ^= 0xff;
        std::fs::write(&tensors, bytes).unwrap();

        let restored = restore(dir.path(), "finetune").unwrap().unwrap();
        assert_eq!(restored.state.global_step, 10);
        assert!(restored.tensors[0].1.allclose(&w, 0.0, 0.0, false));
        assert_eq!(restored.skipped.len(), 1);
        assert!(
            restored.skipped[0]
                .contains("finetune-step-00000020/tensors.safetensors: does not match the manifest"),
            "{:?}",
            restored.skipped
        );
        // With nothing intact left, the error names every damaged one.
        std::fs::write(dir.path().join("finetune-step-00000010").join(STATE), "{}").unwrap();
        let error = restore(dir.path(), "finetune").unwrap_err().to_string();
        assert!(
            error.contains("no intact checkpoint") && error.contains("finetune-step-00000010"),
            "{error}"
        );
        assert!(restore(&dir.path().join("none"), "finetune").unwrap().is_none());
    }
}
