//! Handing models between stages: building them from the spec or from
//! `arch.json`, and saving/loading their weights as safetensors.

use std::path::Path;

use scop_core::arch::ArchDesc;
use scop_core::spec::JobSpec;
use tch::Device;
use tch::nn::VarStore;

use super::error::{InStage, Result, io};
use super::trainer::sorted_variables;
use crate::models::{ResNet, is_kfscale, load_strict};

/// The dense architecture the spec describes.
pub fn dense_desc(spec: &JobSpec) -> Result<ArchDesc> {
    Ok(ArchDesc::new(&spec.model.arch, spec.model.num_classes, spec.in_channels())?)
}

/// The dense weights a job scores (by knockoff or another criterion): the
/// pretrain stage's, else `model.init_from`.
pub fn dense_source(
    spec: &JobSpec,
    layout: &scop_core::job_dir::JobDir,
    stage: &str,
) -> Result<std::path::PathBuf> {
    if spec.pretrain.is_some() {
        Ok(layout.model(scop_core::stage::Stage::Pretrain))
    } else if let Some(path) = &spec.model.init_from {
        Ok(path.clone())
    } else {
        Err(super::Error::Input(format!(
            "{stage} needs trained weights: add a `pretrain` section or set `model.init_from`"
        )))
    }
}

/// A freshly initialised model of `desc` on `device`, seeded.
pub fn build(desc: &ArchDesc, device: Device, seed: u64) -> Result<(ResNet, VarStore)> {
    tch::manual_seed(seed as i64);
    let vs = VarStore::new(device);
    let model = ResNet::new(&vs.root(), desc)?;
    Ok((model, vs))
}

/// A model of `desc` with the weights of `weights` (strict: every name and shape must match).
pub fn load(desc: &ArchDesc, weights: &Path, device: Device) -> Result<(ResNet, VarStore)> {
    let (model, vs) = build(desc, device, 0)?;
    load_strict(&vs, weights)?;
    Ok((model, vs))
}

/// Reads `arch.json` next to a stage's weights.
pub fn read_arch(path: &Path) -> Result<ArchDesc> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    Ok(ArchDesc::from_json(&text, &path.display().to_string())?)
}

/// Writes the model's weights (without knockoff β) and its architecture.
pub fn save(vs: &VarStore, desc: &ArchDesc, weights: &Path, arch: &Path) -> Result<()> {
    if let Some(dir) = weights.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let tensors: Vec<(String, tch::Tensor)> = sorted_variables(vs)
        .into_iter()
        .filter(|(name, _)| !is_kfscale(name))
        .map(|(name, t)| (name, t.to_device(Device::Cpu).contiguous()))
        .collect();
    let tmp = weights.with_extension("safetensors.tmp");
    tch::Tensor::write_safetensors(&tensors, &tmp).in_stage("save")?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io(&tmp))?;
    std::fs::rename(&tmp, weights).map_err(io(weights))?;
    super::error::write_atomic(arch, desc.to_json().as_bytes())?;
    Ok(())
}
