//! Loading safetensors checkpoints into a VarStore, strictly.
//!
//! Strict means the file holds exactly the network's variables with the same
//! shapes; otherwise the error lists every missing name, every unexpected name and
//! every shape mismatch. torchvision's `*.num_batches_tracked` counters are
//! accepted and ignored, so a torchvision `state_dict` saved with safetensors loads
//! as it is.

use std::collections::BTreeMap;
use std::path::Path;

use tch::Tensor;
use tch::nn::VarStore;

use super::error::{Error, Result, ShapeMismatch, TorchContext};

const IGNORED_SUFFIX: &str = ".num_batches_tracked";

/// Copies every variable of `vs` from the safetensors file at `path`.
pub fn load_strict(vs: &VarStore, path: &Path) -> Result<()> {
    let shown = path.display().to_string();
    if !path.is_file() {
        return Err(Error::Io {
            path: shown,
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    let file: BTreeMap<String, Tensor> = Tensor::read_safetensors(path)
        .ctx(format!("{shown}: reading safetensors"))?
        .into_iter()
        .filter(|(name, _)| !name.ends_with(IGNORED_SUFFIX))
        .collect();
    let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    let missing: Vec<String> = vars.keys().filter(|n| !file.contains_key(*n)).cloned().collect();
    let unexpected: Vec<String> = file.keys().filter(|n| !vars.contains_key(*n)).cloned().collect();
    let mismatched: Vec<ShapeMismatch> = vars
        .iter()
        .filter_map(|(name, var)| {
            let src = file.get(name)?;
            (src.size() != var.size()).then(|| ShapeMismatch {
                name: name.clone(),
                expected: var.size(),
                found: src.size(),
            })
        })
        .collect();
    if !missing.is_empty() || !unexpected.is_empty() || !mismatched.is_empty() {
        return Err(Error::Checkpoint { path: shown, missing, unexpected, mismatched });
    }
    tch::no_grad(|| -> Result<()> {
        for (name, var) in &vars {
            let src = file[name].f_to_device(var.device()).and_then(|t| t.f_to_kind(var.kind()));
            var.shallow_clone()
                .f_copy_(&src.ctx(format!("{shown}: {name}"))?)
                .ctx(format!("{shown}: {name}"))?;
        }
        Ok(())
    })
}
