//! Checkpoints: named tensors as safetensors plus a small JSON of where the
//! stage stood, written atomically.
//!
//! A checkpoint is a directory `step-00001234/` holding `tensors.safetensors`
//! and `state.json`. It is assembled under a temporary name and renamed into
//! place, and `latest` (a one-line file, itself replaced by rename) names the
//! newest complete one. A crash mid-write therefore never leaves a `latest`
//! that points at a half-written checkpoint.

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
    #[error("{path}: {source}")]
    Torch {
        path: PathBuf,
        #[source]
        source: tch::TchError,
    },
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
const LATEST: &str = "latest";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_owned(), source }
}

/// Writes a checkpoint under `dir` and makes it the latest; returns its directory.
pub fn save(dir: &Path, state: &CheckpointState, tensors: &[(String, Tensor)]) -> Result<PathBuf> {
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
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(io(&final_dir))?;
    }
    std::fs::rename(&tmp_dir, &final_dir).map_err(io(&final_dir))?;
    let latest_tmp = dir.join(".latest.tmp");
    std::fs::write(&latest_tmp, format!("{name}\n")).map_err(io(&latest_tmp))?;
    std::fs::rename(&latest_tmp, dir.join(LATEST)).map_err(io(&dir.join(LATEST)))?;
    Ok(final_dir)
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
        save(dir.path(), &state(10), &[("w".into(), w.shallow_clone())]).unwrap();
        let second = save(dir.path(), &state(20), &[("w".into(), &w * 2.0)]).unwrap();
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
    fn damaged_checkpoints_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let w = Tensor::zeros([2], (tch::Kind::Float, tch::Device::Cpu));
        let ckpt = save(dir.path(), &state(1), &[("w".into(), w)]).unwrap();
        std::fs::write(ckpt.join(STATE), "{ not json").unwrap();
        let err = load(&ckpt).unwrap_err().to_string();
        assert!(err.contains("state.json"), "{err}");
        std::fs::write(ckpt.join(STATE), serde_json::to_string(&state(1)).unwrap()).unwrap();
        std::fs::write(ckpt.join(TENSORS), b"garbage").unwrap();
        let err = load(&ckpt).unwrap_err().to_string();
        assert!(err.contains("tensors.safetensors"), "{err}");
    }
}
