//! The channel scores of the pruning criteria other than SCOP (`prune.criterion`),
//! one value per output channel of a unit, from its conv weight `W` (shape
//! `[C_out, C_in, k, k]`, `W_c` the filter of channel `c`) and its BN's γ:
//!
//! - `bn_gamma`: `|γ_c|`;
//! - `l1`: `Σ |W_c|`;
//! - `l2`: `sqrt(Σ W_c²)`;
//! - `fpgm`: `Σ_{c'} ‖W_c − W_c'‖₂`, the filter's distance to the other filters
//!   of its unit (He et al., 2019: filters near the geometric median are the
//!   most replaceable, so they score lowest);
//! - `taylor`: `|Σ W_c · G_c|`, `G` the gradient of the cross-entropy averaged
//!   over a pass of training batches: the first-order Taylor estimate of the
//!   change of the loss when the filter is removed (Molchanov et al., 2019,
//!   with the weight × gradient form);
//! - `random`: uniform in [0, 1), a pure function of (seed, unit, channel).
//!
//! Sums are taken in f64 on the CPU, so every rank and device gets the same
//! scores. SCOP's own score is `scop_core::score`'s.

use tch::{Device, Kind, Tensor};

use crate::models::ResNet;
use crate::models::{Result, TorchContext};

/// Every unit's scores by name, in forward order.
pub type UnitScores = Vec<(String, Vec<f32>)>;

/// A unit's weights as `[C_out, C_in·k·k]` f64 on the CPU.
fn filters(weight: &Tensor, name: &str) -> Result<Tensor> {
    weight
        .f_detach()
        .and_then(|w| w.f_to_device(Device::Cpu))
        .and_then(|w| w.f_to_kind(Kind::Double))
        .and_then(|w| w.f_flatten(1, -1))
        .ctx(name)
}

fn to_vec(t: &Tensor, name: &str) -> Result<Vec<f32>> {
    let flat = t.f_to_kind(Kind::Float).and_then(|t| t.f_flatten(0, -1)).ctx(name)?;
    Vec::<f32>::try_from(flat).ctx(name)
}

/// `Σ |W_c|` per output channel.
pub fn l1(weight: &Tensor, name: &str) -> Result<Vec<f32>> {
    let w = filters(weight, name)?;
    to_vec(&w.f_abs().and_then(|a| a.f_sum_dim_intlist(1, false, Kind::Double)).ctx(name)?, name)
}

/// `sqrt(Σ W_c²)` per output channel.
pub fn l2(weight: &Tensor, name: &str) -> Result<Vec<f32>> {
    let w = filters(weight, name)?;
    let sq = w.f_square().and_then(|s| s.f_sum_dim_intlist(1, false, Kind::Double)).ctx(name)?;
    to_vec(&sq.f_sqrt().ctx(name)?, name)
}

/// `Σ_{c'} ‖W_c − W_c'‖₂` per output channel: the sum of the filter's Euclidean
/// distances to every filter of its unit (its own contributes 0).
pub fn fpgm(weight: &Tensor, name: &str) -> Result<Vec<f32>> {
    let w = filters(weight, name)?;
    // compute_mode 2: exact differences, not the |a|² + |b|² − 2ab shortcut.
    let distances = Tensor::f_cdist(&w, &w, 2.0, 2i64).ctx(name)?;
    to_vec(&distances.f_sum_dim_intlist(1, false, Kind::Double).ctx(name)?, name)
}

/// `|γ_c|` per output channel.
pub fn bn_gamma(gamma: &Tensor, name: &str) -> Result<Vec<f32>> {
    let g = gamma.f_detach().and_then(|g| g.f_to_device(Device::Cpu)).and_then(|g| g.f_abs()).ctx(name)?;
    to_vec(&g, name)
}

/// `|Σ W_c · G_c|` per output channel, `grad` the averaged loss gradient of `weight`.
pub fn taylor(weight: &Tensor, grad: &Tensor, name: &str) -> Result<Vec<f32>> {
    let (w, g) = (filters(weight, name)?, filters(grad, name)?);
    let dot = w.f_mul(&g).and_then(|p| p.f_sum_dim_intlist(1, false, Kind::Double)).ctx(name)?;
    to_vec(&dot.f_abs().ctx(name)?, name)
}

/// Uniform scores in [0, 1) for `channels` channels of unit `name`, the same for
/// the same (seed, name) on every machine, different for another seed.
pub fn random(seed: u64, name: &str, channels: usize) -> Vec<f32> {
    // FNV-1a of the unit name, so each unit draws its own sequence.
    let unit =
        name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    (0..channels as u64)
        .map(|c| {
            let x = splitmix64(splitmix64(seed ^ unit).wrapping_add(c));
            // The top 24 bits: exactly representable in an f32, below 1.
            (x >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The scores of every unit of `model` by a criterion that needs only its
/// weights (`bn_gamma`, `l1`, `l2`, `fpgm`, `random`), in forward order; `None`
/// for `scop` and `taylor`, which need training data.
pub fn weight_scores(
    criterion: scop_core::spec::Criterion,
    model: &ResNet,
    seed: u64,
) -> Result<Option<UnitScores>> {
    use scop_core::spec::Criterion;
    let mut scores = Vec::new();
    for unit in model.units() {
        let (name, layer) = (unit.name(), unit.layer());
        let values = match criterion {
            Criterion::BnGamma => bn_gamma(&layer.bn.weight, name)?,
            Criterion::L1 => l1(&layer.weight, name)?,
            Criterion::L2 => l2(&layer.weight, name)?,
            Criterion::Fpgm => fpgm(&layer.weight, name)?,
            Criterion::Random => random(seed, name, unit.out_channels() as usize),
            Criterion::Scop | Criterion::Taylor => return Ok(None),
        };
        scores.push((name.to_owned(), values));
    }
    Ok(Some(scores))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three 1×2 filters, `[3, 4]`, `[0, 0]`, `[1, −1]`, as `[3, 1, 1, 2]`.
    fn weight() -> Tensor {
        Tensor::from_slice(&[3.0f32, 4.0, 0.0, 0.0, 1.0, -1.0]).reshape([3, 1, 1, 2])
    }

    fn close(got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((f64::from(*g) - w).abs() < 1e-5, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn magnitudes_and_distances_match_the_hand_computation() {
        close(&l1(&weight(), "u").unwrap(), &[7.0, 0.0, 2.0]);
        close(&l2(&weight(), "u").unwrap(), &[5.0, 0.0, 2f64.sqrt()]);
        // ‖[3,4]−[0,0]‖ = 5, ‖[3,4]−[1,−1]‖ = √(4+25) = √29, ‖[0,0]−[1,−1]‖ = √2.
        let (d01, d02, d12) = (5.0, 29f64.sqrt(), 2f64.sqrt());
        close(&fpgm(&weight(), "u").unwrap(), &[d01 + d02, d01 + d12, d02 + d12]);
        close(&bn_gamma(&Tensor::from_slice(&[-0.5f32, 2.0, 0.0]), "u").unwrap(), &[0.5, 2.0, 0.0]);
        // Σ W·G per filter: 3·1 + 4·(−2) = −5, 0, 1·0.5 + (−1)·0.5 = 0 → |·|.
        let grad = Tensor::from_slice(&[1.0f32, -2.0, 7.0, 7.0, 0.5, 0.5]).reshape([3, 1, 1, 2]);
        close(&taylor(&weight(), &grad, "u").unwrap(), &[5.0, 0.0, 0.0]);
    }

    #[test]
    fn random_scores_are_reproducible_by_seed_and_differ_across_seeds_and_units() {
        let a = random(7, "layer1.0.conv1", 64);
        assert_eq!(a, random(7, "layer1.0.conv1", 64));
        assert_ne!(a, random(8, "layer1.0.conv1", 64));
        assert_ne!(a, random(7, "layer1.0.conv2", 64));
        assert!(a.iter().all(|v| (0.0..1.0).contains(v)), "{a:?}");
        // Not a constant: the values spread over [0, 1).
        let (min, max) = a.iter().fold((1f32, 0f32), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        assert!(min < 0.2 && max > 0.8, "{min} {max}");
    }
}
