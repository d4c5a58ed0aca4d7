//! Export of a dense or pruned network: weights + `arch.json`, TorchScript, model card.
//!
//! An export directory holds:
//! - `model.safetensors`: every variable with torchvision-style names (without β);
//! - `arch.json`: the [`ArchDesc`] it was built from, so [`load_export`] rebuilds
//!   exactly the same network;
//! - `model.pt`: TorchScript (see [`crate::torchscript`]). Loads with
//!   `torch.jit.load` in Python and `torch::jit::load` in C++ (and
//!   [`tch::CModule::load`]); call it with a float batch `[N, C, H, W]`. Its
//!   weights and BN statistics are parameters and buffers under torchvision's
//!   names, so `state_dict()` matches `model.safetensors`, `.to(device)` moves
//!   them, and `.train()` makes it finetunable; it is saved in eval mode;
//! - `model-card.json`: a [`ModelCard`] with params, FLOPs, the plan summary and
//!   the metrics the training stages fill in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use scop_core::arch::ArchDesc;
use scop_core::plan::{Plan, PlanSummary};
use scop_core::spec::PruneSpec;
use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, Tensor};

use crate::models::{Error, ResNet, Result, TorchContext, is_kfscale, load_strict};

pub use scop_core::job_dir::{ARCH_FILE, CARD_FILE, TORCHSCRIPT_FILE, WEIGHTS_FILE};

/// What a user wants to know about an exported model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    pub arch: String,
    pub num_classes: u32,
    pub in_channels: u32,
    /// Input side the FLOPs are counted at.
    pub input_size: u32,
    pub params: u64,
    /// Multiply-accumulates per sample at `input_size`.
    pub flops: u64,
    pub dense_params: u64,
    pub dense_flops: u64,
    /// How the network was pruned, if it was.
    #[serde(default)]
    pub prune: Option<PruneSpec>,
    #[serde(default)]
    pub plan: Option<PlanSummary>,
    /// Filled by the training stages, e.g. `top1_dense`, `top1_pruned`, `latency_ms`.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// What a user must do to a raw image before feeding the model; filled by the export stage.
    #[serde(default)]
    pub preprocessing: Option<crate::data::Preprocessing>,
}

impl ModelCard {
    /// The card of `desc` (dense or pruned), with the plan that made it.
    pub fn new(desc: &ArchDesc, plan: Option<&Plan>, input_size: u32) -> Result<Self> {
        let cost = desc.cost(input_size);
        let dense = ArchDesc::new(&desc.arch, desc.num_classes, desc.in_channels)?.cost(input_size);
        Ok(Self {
            arch: desc.arch.clone(),
            num_classes: desc.num_classes,
            in_channels: desc.in_channels,
            input_size,
            params: cost.params,
            flops: cost.flops,
            dense_params: dense.params,
            dense_flops: dense.flops,
            prune: plan.map(|p| p.prune.clone()),
            plan: plan.map(|p| p.summary),
            metrics: BTreeMap::new(),
            preprocessing: None,
        })
    }

    pub fn read(path: &Path) -> Result<Self> {
        let text = read_text(path)?;
        serde_json::from_str(&text)
            .map_err(|e| Error::File { path: path.display().to_string(), message: e.to_string() })
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        write_text(path, &serde_json::to_string_pretty(self).expect("a ModelCard always serialises"))
    }
}

/// The files of one export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportPaths {
    pub weights: PathBuf,
    pub arch: PathBuf,
    pub torchscript: PathBuf,
    pub card: PathBuf,
}

impl ExportPaths {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            weights: dir.join(WEIGHTS_FILE),
            arch: dir.join(ARCH_FILE),
            torchscript: dir.join(TORCHSCRIPT_FILE),
            card: dir.join(CARD_FILE),
        }
    }
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.display().to_string(), source })
}

/// Atomically and durably: a reader never sees half a model card or `arch.json`.
fn write_text(path: &Path, text: &str) -> Result<()> {
    scop_core::durable::write_atomic(path, text.as_bytes())
        .map_err(|e| Error::Io { path: e.path.display().to_string(), source: e.source })
}

/// Writes all four files into `dir` (created if needed). `plan` is the plan that
/// pruned `model`, if any; FLOPs are counted at `input_size`.
pub fn export(
    dir: &Path,
    model: &ResNet,
    vs: &VarStore,
    plan: Option<&Plan>,
    input_size: u32,
) -> Result<ExportPaths> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.display().to_string(), source })?;
    let paths = ExportPaths::in_dir(dir);
    save_weights(model, vs, dir)?;
    save_torchscript(model, vs, &paths.torchscript)?;
    ModelCard::new(model.desc(), plan, input_size)?.write(&paths.card)?;
    Ok(paths)
}

/// `model.safetensors` and `arch.json`. β is left out: an exported network is plain.
pub fn save_weights(model: &ResNet, vs: &VarStore, dir: &Path) -> Result<()> {
    let paths = ExportPaths::in_dir(dir);
    let mut named: Vec<(String, Tensor)> =
        vs.variables().into_iter().filter(|(n, _)| !is_kfscale(n)).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let named: Vec<(String, Tensor)> =
        named.into_iter().map(|(n, t)| (n, t.to_device(Device::Cpu).contiguous())).collect();
    Tensor::write_safetensors(&named, &paths.weights).ctx(paths.weights.display())?;
    write_text(&paths.arch, &model.desc().to_json())
}

/// Rebuilds an exported network from `arch.json` and `model.safetensors` in `dir`.
pub fn load_export(dir: &Path, device: Device) -> Result<(ResNet, VarStore)> {
    let paths = ExportPaths::in_dir(dir);
    let desc = ArchDesc::from_json(&read_text(&paths.arch)?, &paths.arch.display().to_string())?;
    let vs = VarStore::new(device);
    let model = ResNet::new_zeroed(&vs.root(), &desc)?;
    load_strict(&vs, &paths.weights)?;
    Ok((model, vs))
}

/// Saves the network as TorchScript whose weights and BN statistics are its
/// parameters and buffers, under the names of `model.safetensors`.
pub fn save_torchscript(model: &ResNet, vs: &VarStore, path: &Path) -> Result<()> {
    let named: BTreeMap<String, Tensor> =
        vs.variables().into_iter().filter(|(n, _)| !is_kfscale(n)).collect();
    crate::torchscript::save(model.desc(), &named, path)
}

/// The options of `scop-worker export`: build a network, optionally load a
/// checkpoint into it and prune it with a plan, then export it.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    #[arg(long)]
    pub arch: String,
    #[arg(long, default_value_t = 10)]
    pub num_classes: u32,
    #[arg(long, default_value_t = 3)]
    pub in_channels: u32,
    /// A safetensors checkpoint with torchvision-style names, loaded strictly.
    #[arg(long)]
    pub init_from: Option<PathBuf>,
    /// A plan (`plan.json`) to prune the network with before exporting.
    #[arg(long)]
    pub plan: Option<PathBuf>,
    /// Side of the example input for tracing and FLOPs; 32 for CIFAR-style nets, else 224.
    #[arg(long)]
    pub input_size: Option<u32>,
    /// The export directory.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `scop-worker export`.
pub fn run_export(args: &ExportArgs) -> Result<ExportPaths> {
    let desc = ArchDesc::new(&args.arch, args.num_classes, args.in_channels)?;
    let vs = VarStore::new(Device::Cpu);
    let model = match &args.init_from {
        Some(path) => {
            let model = ResNet::new_zeroed(&vs.root(), &desc)?;
            load_strict(&vs, path)?;
            model
        }
        None => ResNet::new(&vs.root(), &desc)?,
    };
    let input_size = args.input_size.unwrap_or(match desc.family {
        scop_core::arch::Family::Cifar => 32,
        scop_core::arch::Family::Imagenet => 224,
    });
    match &args.plan {
        Some(path) => {
            let shown = path.display().to_string();
            let plan = Plan::from_json(&read_text(path)?, &shown)?;
            let (pruned, pruned_vs) = crate::prune::apply_plan(&model, &vs, &plan)?;
            export(&args.out, &pruned, &pruned_vs, Some(&plan), input_size)
        }
        None => export(&args.out, &model, &vs, None, input_size),
    }
}
