//! Physical pruning: apply a [`Plan`] by building the smaller network and copying
//! the kept channels into it.
//!
//! For every unit the kept output channels of its conv weight, of its BN affine
//! parameters and of its running statistics are copied, and the next unit of the
//! block loses the matching input channels. In a Bottleneck that prunes conv1's
//! outputs, conv2's inputs and outputs, and conv3's inputs and outputs, the latter
//! scattered back to the full residual width at run time (`residual: scatter`, the
//! reference); a BasicBlock does the same with conv1 and conv2. Under `residual:
//! keep` the plan keeps every output of the last unit, so nothing is scattered,
//! and in both modes the stem, the shortcuts and the classifier are copied
//! unchanged. Under `residual: group` each residual stream keeps its group's
//! channels: the stem's or the shortcut's outputs that write it, the last units'
//! outputs that add into it, and the inputs of every layer that reads it (the next
//! blocks' first units and shortcuts, the classifier's columns).

use std::collections::HashMap;

use scop_core::plan::Plan;
use tch::nn::VarStore;
use tch::{Device, Tensor};

use crate::models::{Error, ResNet, Result, TorchContext, is_kfscale};

/// Which channels of a dense variable survive: along dim 0 (outputs) and dim 1 (inputs).
#[derive(Default)]
struct Selection {
    outputs: Option<Tensor>,
    inputs: Option<Tensor>,
}

fn index(kept: &[u32], device: Device) -> Tensor {
    let kept: Vec<i64> = kept.iter().map(|&k| i64::from(k)).collect();
    Tensor::from_slice(&kept).to_device(device)
}

/// Builds the network `plan` describes on a new VarStore on the same device as
/// `vs`, holding the kept channels of `model`'s weights. `model` must be dense; its
/// β, if any, is not carried over (the pruned network runs plain).
pub fn apply_plan(model: &ResNet, vs: &VarStore, plan: &Plan) -> Result<(ResNet, VarStore)> {
    let desc = model.desc().pruned(plan)?;
    let device = vs.device();
    let mut selections: HashMap<String, Selection> = HashMap::new();
    let mut select = |conv: &str, bn: &str, outputs: Option<&[u32]>, inputs: Option<&[u32]>| {
        let outputs = outputs.map(|k| index(k, device));
        for field in ["weight", "bias", "running_mean", "running_var"] {
            let outputs = outputs.as_ref().map(Tensor::shallow_clone);
            selections.insert(format!("{bn}.{field}"), Selection { outputs, inputs: None });
        }
        let inputs = inputs.map(|k| index(k, device));
        selections.insert(format!("{conv}.weight"), Selection { outputs, inputs });
    };
    // The kept channels of the residual stream entering the next block, if pruned.
    let mut stream = desc.stem.kept.as_deref();
    select("conv1", "bn1", stream, None);
    for block in &desc.blocks {
        let mut previous = stream;
        for unit in &block.units {
            select(&unit.name, &unit.bn, unit.kept.as_deref(), previous);
            previous = unit.kept.as_deref();
        }
        if block.shortcut.is_some() {
            let path = format!("{}.downsample", block.name);
            select(&format!("{path}.0"), &format!("{path}.1"), block.kept.as_deref(), stream);
        }
        stream = block.kept.as_deref();
    }
    let fc_inputs = stream.map(|k| index(k, device));
    selections.insert("fc.weight".into(), Selection { outputs: None, inputs: fc_inputs });

    let mut pruned_vs = VarStore::new(device);
    pruned_vs.set_kind(vs.kind());
    let pruned = ResNet::new_zeroed(&pruned_vs.root(), &desc)?;
    let source = vs.variables();
    tch::no_grad(|| -> Result<()> {
        for (name, target) in pruned_vs.variables() {
            debug_assert!(!is_kfscale(&name));
            let Some(src) = source.get(&name) else {
                return Err(Error::Mode(format!("cannot prune: the dense network has no variable {name}")));
            };
            let mut value = src.shallow_clone();
            if let Some(sel) = selections.get(&name) {
                if let Some(outputs) = &sel.outputs {
                    value = value.f_index_select(0, outputs).ctx(&name)?;
                }
                if let Some(inputs) = &sel.inputs {
                    value = value.f_index_select(1, inputs).ctx(&name)?;
                }
            }
            if value.size() != target.size() {
                return Err(Error::Mode(format!(
                    "cannot prune {name}: selected shape {:?} but the pruned network wants {:?}",
                    value.size(),
                    target.size()
                )));
            }
            target.shallow_clone().f_copy_(&value).ctx(&name)?;
        }
        Ok(())
    })?;
    Ok((pruned, pruned_vs))
}
