//! Analytic parameter and multiply-accumulate counts of an [`ArchDesc`].
//!
//! Params are the learnable tensors, as PyTorch's `parameters()` counts them: conv
//! weights (no biases), BN weight and bias, and the classifier's weight and bias.
//! BN running statistics and the knockoff β are not parameters of the network.
//!
//! FLOPs are multiply-accumulates of the convolutions and of the classifier at a
//! square input of the given side, the convention of the ResNet paper and of most
//! pruning papers (ResNet-50 at 224×224: 4.09 G). BN, ReLU, pooling, residual adds
//! and the scatter of a pruned block are not counted.

use serde::{Deserialize, Serialize};

use super::{ArchDesc, UnitDesc};

/// Params and FLOPs of a network or a part of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cost {
    pub params: u64,
    /// Multiply-accumulates for one sample.
    pub flops: u64,
}

impl std::ops::AddAssign for Cost {
    fn add_assign(&mut self, other: Cost) {
        self.params += other.params;
        self.flops += other.flops;
    }
}

/// The cost of one prunable unit, with the side of its output feature map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitCost {
    pub name: String,
    pub in_channels: u32,
    pub out_channels: u32,
    pub dense_out_channels: u32,
    /// Side of the unit's square output feature map.
    pub out_size: u64,
    #[serde(flatten)]
    pub cost: Cost,
}

/// Output side of a convolution or pooling window.
pub(crate) fn out_side(side: u64, kernel: u32, stride: u32, padding: u32) -> u64 {
    let padded = side + 2 * u64::from(padding);
    if padded < u64::from(kernel) { 0 } else { (padded - u64::from(kernel)) / u64::from(stride.max(1)) + 1 }
}

/// A bias-free conv followed by a BN, at an input side; returns the cost and the output side.
fn conv_bn(
    c_in: u32,
    c_out: u32,
    kernel: u32,
    stride: u32,
    padding: u32,
    groups: u32,
    side: u64,
) -> (Cost, u64) {
    let out = out_side(side, kernel, stride, padding);
    let weights = u64::from(c_in / groups.max(1)) * u64::from(c_out) * u64::from(kernel * kernel);
    (Cost { params: weights + 2 * u64::from(c_out), flops: weights * out * out }, out)
}

fn unit_cost(unit: &UnitDesc, side: u64) -> (Cost, u64) {
    conv_bn(unit.in_channels, unit.out_channels, unit.kernel, unit.stride, unit.padding, unit.groups, side)
}

impl ArchDesc {
    /// Params and FLOPs of the whole network at a square input of side `input_size`.
    pub fn cost(&self, input_size: u32) -> Cost {
        let mut total = Cost::default();
        let stem = &self.stem;
        let (cost, mut side) = conv_bn(
            self.in_channels,
            stem.out_channels,
            stem.kernel,
            stem.stride,
            stem.padding,
            1,
            input_size.into(),
        );
        total += cost;
        if stem.max_pool {
            side = out_side(side, 3, 2, 1);
        }
        for block in &self.blocks {
            let block_in = side;
            for unit in &block.units {
                let (cost, out) = unit_cost(unit, side);
                total += cost;
                side = out;
            }
            if let Some(s) = &block.shortcut {
                total += conv_bn(s.in_channels, s.out_channels, 1, s.stride, 0, 1, block_in).0;
            }
        }
        let fc = u64::from(self.classifier.in_features) * u64::from(self.classifier.out_features);
        total += Cost { params: fc + u64::from(self.classifier.out_features), flops: fc };
        total
    }

    /// Learnable parameters (independent of the input size).
    pub fn params(&self) -> u64 {
        self.cost(32).params
    }

    /// The cost of every prunable unit, in forward order.
    pub fn unit_costs(&self, input_size: u32) -> Vec<UnitCost> {
        let stem = &self.stem;
        let mut side = out_side(input_size.into(), stem.kernel, stem.stride, stem.padding);
        if stem.max_pool {
            side = out_side(side, 3, 2, 1);
        }
        let mut costs = Vec::new();
        for unit in self.units() {
            let (cost, out) = unit_cost(unit, side);
            costs.push(UnitCost {
                name: unit.name.clone(),
                in_channels: unit.in_channels,
                out_channels: unit.out_channels,
                dense_out_channels: unit.dense_out_channels,
                out_size: out,
                cost,
            });
            side = out;
        }
        costs
    }
}

#[cfg(test)]
mod tests {
    use crate::arch::ArchDesc;

    fn check(arch: &str, classes: u32, input: u32, params: u64, flops: u64) {
        let cost = ArchDesc::new(arch, classes, 3).unwrap().cost(input);
        assert_eq!((cost.params, cost.flops), (params, flops), "{arch}");
    }

    /// Params are PyTorch's `sum(p.numel() for p in model.parameters())` of the
    /// same networks (torchvision's for ImageNet at 1000 classes); FLOPs sum
    /// `out.numel() * in/groups * k * k` over every Conv2d and Linear, counted with
    /// forward hooks.
    #[test]
    fn dense_costs_match_pytorch() {
        check("resnet18", 1000, 224, 11_689_512, 1_814_073_344);
        check("resnet50", 1000, 224, 25_557_032, 4_089_184_256);
        check("resnet20", 10, 32, 272_474, 40_813_184);
        check("resnet32", 10, 32, 466_906, 69_124_736);
        check("resnet56", 10, 32, 855_770, 125_747_840);
        check("resnet110", 10, 32, 1_730_714, 253_149_824);
        check("resnet18", 10, 32, 11_181_642, 37_016_576);
        check("resnet34", 10, 32, 21_289_802, 74_765_312);
        check("resnet50", 10, 32, 23_528_522, 83_431_424);
        check("resnet101", 10, 32, 42_520_650, 159_191_040);
        check("resnet152", 10, 32, 58_164_298, 234_950_656);
    }

    #[test]
    fn unit_costs_sum_into_the_total() {
        let desc = ArchDesc::new("resnet50", 10, 3).unwrap();
        let units = desc.unit_costs(224);
        assert_eq!(units.len(), 48);
        assert_eq!(units[0].out_size, 56);
        assert_eq!(units.last().unwrap().out_size, 7);
        let unit_params: u64 = units.iter().map(|u| u.cost.params).sum();
        // Stem, four downsample shortcuts and the classifier are the rest.
        let rest = (3 * 64 * 49 + 128)
            + (64 * 256 + 512)
            + (256 * 512 + 1024)
            + (512 * 1024 + 2048)
            + (1024 * 2048 + 4096)
            + (2048 * 10 + 10);
        assert_eq!(unit_params + rest, desc.params());
    }
}
