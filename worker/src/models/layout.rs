//! Memory layout of a network's activations and conv weights: channels-last
//! (NHWC in memory, NCHW in shape) for training.
//!
//! libtorch's oneDNN convolutions on the CPU and cuDNN's tensor-core kernels on
//! GPUs are fastest on channels-last data; with contiguous NCHW tensors every
//! convolution pays for reordering instead. A ResNet switched to channels-last
//! converts its conv weights once and each input batch on entry; every layer
//! after that keeps the layout. Saved weights and exports are written
//! contiguous, so files do not depend on it.
//!
//! Which layout is faster depends on the widths and the machine, and not in a
//! way a rule captures: on a 2-core AVX-512 CPU the dense ResNet-20 trains 1.25×
//! faster channels-last, the same net group-pruned to 8/16/40 channels 1.25×
//! faster channels-last, to 9/18/36 channels 1.4× faster contiguous (with
//! libtorch's own batch-norm backward rather than ours, see [`super::batch_norm`],
//! the 8/16/40 net was 1.3× faster contiguous). So `memory_format: auto` on the CPU times both
//! ([`time_layouts`]) and the stage keeps the faster, as cuDNN's benchmark mode
//! does for its algorithms; on GPUs it follows [`trains_channels_last`].

use std::time::Instant;

use scop_core::arch::ArchDesc;
use scop_core::spec::MemoryFormat;
use tch::nn::VarStore;
use tch::{Device, Kind, TchError, Tensor};

use super::ResNet;
use super::error::{Result, TorchContext};

/// Whether `format` means channels-last for the network `desc` without timing
/// it: `auto` only when every unit's input and output channels are multiples of
/// 8, since cuDNN and oneDNN fall back to slow convolutions on channels-last
/// data otherwise (measured on the 45 %-pruned ResNet-20: half the speed of contiguous).
pub fn trains_channels_last(format: MemoryFormat, desc: &ArchDesc) -> bool {
    match format {
        MemoryFormat::ChannelsLast => true,
        MemoryFormat::Contiguous => false,
        MemoryFormat::Auto => desc
            .blocks
            .iter()
            .flat_map(|b| &b.units)
            .all(|u| u.in_channels % 8 == 0 && u.out_channels % 8 == 0),
    }
}

/// The layout `format` fixes for `desc` on `device` (`Some(channels_last)`), or
/// `None` where `auto` times both layouts instead ([`time_layouts`]): on the CPU.
pub fn fixed_layout(format: MemoryFormat, device: Device, desc: &ArchDesc) -> Option<bool> {
    (format != MemoryFormat::Auto || device != Device::Cpu).then(|| trains_channels_last(format, desc))
}

/// `t` (4-D) with channels-last strides: the same values and shape.
pub fn channels_last(t: &Tensor) -> Result<Tensor, TchError> {
    t.f_permute([0, 2, 3, 1])?.f_contiguous()?.f_permute([0, 3, 1, 2])
}

/// Whether a 4-D tensor is laid out channels-last already.
pub fn is_channels_last(t: &Tensor) -> bool {
    let (size, stride) = (t.size(), t.stride());
    size.len() == 4 && stride[1] == 1 && stride[3] == size[1] && stride[2] == size[1] * size[3]
}

/// Moves every 4-D variable of `vs` (the conv weights) to channels-last in
/// place: the VarStore, the model and the optimiser keep the same tensors.
pub fn vars_to_channels_last(vs: &VarStore) -> Result<(), TchError> {
    tch::no_grad(|| {
        for (_, mut var) in vs.variables() {
            if var.dim() == 4 && !is_channels_last(&var) {
                let converted = channels_last(&var)?;
                var.f_set_data(&converted)?;
            }
        }
        Ok(())
    })
}

/// Moves every 4-D variable of `vs` back to contiguous NCHW in place.
pub fn vars_to_contiguous(vs: &VarStore) -> Result<(), TchError> {
    tch::no_grad(|| {
        for (_, mut var) in vs.variables() {
            if var.dim() == 4 && !var.is_contiguous() {
                let converted = var.f_contiguous()?;
                var.f_set_data(&converted)?;
            }
        }
        Ok(())
    })
}

/// Timed passes per layout when `memory_format: auto` chooses on the CPU (after one untimed).
/// With three, one `cargo xtask bench train` in about fifty choices on a shared 2-core
/// machine got the layout that is 2× slower (every contiguous pass was slowed); five
/// spread the passes over more time for about one more second on ResNet-20.
pub const TIMED_PASSES: usize = 5;

/// Seconds of one training-shaped pass in each layout (the best of the timed passes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayoutTiming {
    pub contiguous: f64,
    pub channels_last: f64,
}

impl LayoutTiming {
    pub fn channels_last_is_faster(&self) -> bool {
        self.channels_last < self.contiguous
    }
}

/// Times training-shaped passes (forward in training mode, a loss, backward to
/// the input and every variable that requires a gradient) of `model` on a
/// constant batch of `shape` in both layouts: one untimed pass in each, then
/// `passes` timed ones in each, alternating, so that a burst of load from
/// elsewhere on the machine slows both layouts rather than one; the best of each.
///
/// Leaves the model contiguous with every variable of `vs` as it was, batch-norm
/// statistics included, and no gradient stored: the passes take gradients as
/// values (`autograd.grad`), so the first real step creates each gradient in its
/// parameter's layout. It draws no random numbers, so a seeded stage continues
/// as it would have without it.
pub fn time_layouts(
    model: &mut ResNet,
    vs: &VarStore,
    shape: [i64; 4],
    passes: usize,
) -> Result<LayoutTiming> {
    let device = vs.device();
    let saved: Vec<(Tensor, Tensor)> = vs.variables().into_values().map(|v| (v.detach().copy(), v)).collect();
    let timed = (|| -> Result<LayoutTiming> {
        let input =
            Tensor::f_full(shape, 0.5, (Kind::Float, device)).ctx("timing input")?.set_requires_grad(true);
        let mut wrt = vs.trainable_variables();
        wrt.retain(Tensor::requires_grad);
        wrt.push(input.shallow_clone());
        let mut timing = LayoutTiming { contiguous: f64::INFINITY, channels_last: f64::INFINITY };
        for pass in 0..=passes {
            for channels_last in [false, true] {
                if channels_last {
                    model.use_channels_last(vs)?;
                } else {
                    model.use_contiguous(vs)?;
                }
                let seconds = one_pass(model, &input, &wrt, device)?;
                let best = if channels_last { &mut timing.channels_last } else { &mut timing.contiguous };
                if pass > 0 {
                    *best = best.min(seconds);
                }
            }
        }
        Ok(timing)
    })();
    model.use_contiguous(vs)?;
    tch::no_grad(|| -> Result<()> {
        for (value, mut var) in saved {
            var.f_copy_(&value).ctx("restoring a variable after timing layouts")?;
        }
        Ok(())
    })?;
    timed
}

fn one_pass(model: &ResNet, input: &Tensor, wrt: &[Tensor], device: Device) -> Result<f64> {
    let start = Instant::now();
    let loss = model.f_forward_t(input, true)?.f_mean(Kind::Float).ctx("timing loss")?;
    drop(Tensor::f_run_backward(&[loss], wrt, false, false).ctx("timing backward")?);
    if device.is_cuda() {
        tch::Cuda::synchronize(device_index(device));
    }
    Ok(start.elapsed().as_secs_f64())
}

fn device_index(device: Device) -> i64 {
    match device {
        Device::Cuda(i) => i as i64,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn auto_is_channels_last_for_dense_nets_and_round_multiples_of_eight() {
        let dense = ArchDesc::new("resnet20", 10, 1).unwrap();
        assert!(trains_channels_last(MemoryFormat::Auto, &dense));
        assert!(!trains_channels_last(MemoryFormat::Contiguous, &dense));
        let mut odd = dense.clone();
        odd.blocks[0].units[0].out_channels = 9;
        assert!(!trains_channels_last(MemoryFormat::Auto, &odd));
        assert!(trains_channels_last(MemoryFormat::ChannelsLast, &odd));
    }

    #[test]
    fn channels_last_keeps_values_and_changes_only_the_strides() {
        let t = Tensor::randn([2, 3, 4, 5], (Kind::Float, Device::Cpu));
        let cl = channels_last(&t).unwrap();
        assert_eq!(cl.size(), t.size());
        assert_eq!(cl.stride(), [60, 1, 15, 3]);
        assert!(is_channels_last(&cl) && !is_channels_last(&t));
        assert_eq!(f64::try_from((&cl - &t).abs().max()).unwrap(), 0.0);
    }

    #[test]
    fn variables_are_converted_in_place() {
        let vs = VarStore::new(Device::Cpu);
        let w = vs.root().randn("w", &[4, 3, 3, 3], 0.0, 1.0);
        let b = vs.root().randn("b", &[4], 0.0, 1.0);
        let before = w.copy();
        vars_to_channels_last(&vs).unwrap();
        assert!(is_channels_last(&w), "the handle the model holds sees the new layout");
        assert_eq!(f64::try_from((&w - &before).abs().max()).unwrap(), 0.0);
        assert!(w.requires_grad() && b.is_contiguous());
    }

    #[test]
    fn timing_layouts_leaves_the_model_as_it_was() {
        let desc = ArchDesc::new("resnet20", 10, 1).unwrap();
        let vs = VarStore::new(Device::Cpu);
        let mut model = ResNet::new(&vs.root(), &desc).unwrap();
        let before: Vec<(String, Tensor)> =
            vs.variables().into_iter().map(|(name, t)| (name, t.detach().copy())).collect();
        let timing = time_layouts(&mut model, &vs, [4, 1, 12, 12], 1).unwrap();
        assert!(timing.contiguous > 0.0 && timing.channels_last > 0.0, "{timing:?}");
        assert!(!model.is_channels_last());
        let after = vs.variables();
        for (name, old) in &before {
            let now = &after[name];
            assert!(now.is_contiguous(), "{name} is left contiguous");
            assert!(!now.grad().defined(), "{name} has no stored gradient");
            // Batch-norm statistics included: the training-mode passes changed nothing.
            assert_eq!(f64::try_from((now - old).abs().max()).unwrap(), 0.0, "{name}");
        }
        // And the model still trains: the first real backward fills gradients.
        let x = Tensor::randn([2, 1, 12, 12], (Kind::Float, Device::Cpu));
        model.f_forward_t(&x, true).unwrap().mean(Kind::Float).backward();
        assert!(after["conv1.weight"].grad().defined());
    }
}
