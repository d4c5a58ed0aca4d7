//! Memory layout of a network's activations and conv weights: channels-last
//! (NHWC in memory, NCHW in shape) for training.
//!
//! libtorch's oneDNN convolutions on the CPU and cuDNN's tensor-core kernels on
//! GPUs are fastest on channels-last data; with contiguous NCHW tensors every
//! convolution pays for reordering instead. A ResNet switched to channels-last
//! converts its conv weights once and each input batch on entry; every layer
//! after that keeps the layout. Saved weights and exports are written
//! contiguous, so files do not depend on it.

use scop_core::arch::ArchDesc;
use scop_core::spec::MemoryFormat;
use tch::nn::VarStore;
use tch::{TchError, Tensor};

/// Whether `format` means channels-last for the network `desc`: `auto` only
/// when every unit's input and output channels are multiples of 8, since
/// libtorch falls back to slow convolutions on channels-last data otherwise
/// (measured on the 45 %-pruned ResNet-20: half the speed of contiguous).
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
}
