//! The global policy: one ranking of all channels across units until a params or
//! FLOPs reduction target is met.
//!
//! Scores are made comparable across units by [`normalised`] (each unit divided by
//! its largest magnitude). Each unit then offers removal *steps*: from its current
//! count down to the next allowed count (a multiple of `round_to`, at least
//! `min_channels`). A step's priority is the mean normalised score of the channels
//! it removes, which for `round_to = 1` is just the channel's score. Steps are taken
//! lowest priority first (ties: earlier unit first) until the removed fraction of
//! the whole network's params or FLOPs reaches `rate`. The cost of a step is exact:
//! it shrinks the unit's outputs and the next unit's inputs within the block.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use super::{UnitPlan, keep_order};
use crate::arch::{ArchDesc, Cost, UnitDesc};
use crate::error::{Error, FieldError, Result};
use crate::score::{ScoreMap, normalised};
use crate::spec::{GlobalTarget, PruneSpec, ResidualMode};

/// One unit as the greedy search sees it.
struct Slot<'a> {
    unit: &'a UnitDesc,
    /// Input channels when the unit is the first of its block (fixed), else `None`.
    fixed_in: Option<u32>,
    /// Index of the next unit of the same block, whose inputs shrink with our outputs.
    next: Option<usize>,
    out_size: u64,
    /// Normalised scores in drop order (lowest first).
    drop_scores: Vec<f32>,
    keep_order: Vec<u32>,
    prunable: bool,
}

#[derive(PartialEq)]
struct Step {
    priority: f32,
    slot: usize,
}

impl Eq for Step {}

impl Ord for Step {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority.total_cmp(&other.priority).then(self.slot.cmp(&other.slot))
    }
}

impl PartialOrd for Step {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Scores must already be checked against `desc`.
pub(super) fn decide(
    desc: &ArchDesc,
    scores: &ScoreMap,
    prune: &PruneSpec,
    input_size: u32,
) -> Result<Vec<UnitPlan>> {
    let costs = desc.unit_costs(input_size);
    let mut slots = Vec::new();
    for block in &desc.blocks {
        let first = slots.len();
        for (i, unit) in block.units.iter().enumerate() {
            let order = keep_order(&scores[&unit.name]);
            let norm = normalised(&scores[&unit.name]);
            let index = slots.len();
            slots.push(Slot {
                unit,
                fixed_in: (index == first).then_some(block.in_channels),
                next: (i + 1 < block.units.len()).then_some(index + 1),
                out_size: costs[index].out_size,
                drop_scores: order.iter().rev().map(|&c| norm[c as usize]).collect(),
                keep_order: order,
                prunable: !(prune.residual == ResidualMode::Keep && i + 1 == block.units.len()),
            });
        }
    }
    let mut counts: Vec<u32> = slots.iter().map(|s| s.unit.dense_out_channels).collect();
    let dense = desc.cost(input_size);
    let measure = |c: Cost| match prune.target {
        GlobalTarget::Params => c.params,
        GlobalTarget::Flops => c.flops,
    };
    let goal = (prune.rate * measure(dense) as f64).ceil() as u64;

    let mut heap = BinaryHeap::new();
    for s in 0..slots.len() {
        if let Some(step) = next_step(&slots, &counts, s, prune) {
            heap.push(Reverse(step));
        }
    }
    let mut removed = 0u64;
    while removed < goal {
        let Some(Reverse(step)) = heap.pop() else {
            let reached = removed as f64 / measure(dense).max(1) as f64;
            return Err(Error::Invalid(vec![FieldError::new(
                "prune.rate",
                format!(
                    "a {} reduction of {} is out of reach; at most {reached:.4} with min_channels={}, round_to={}",
                    match prune.target {
                        GlobalTarget::Params => "params",
                        GlobalTarget::Flops => "FLOPs",
                    },
                    prune.rate,
                    prune.min_channels,
                    prune.round_to
                ),
            )]));
        };
        let s = step.slot;
        let before = local_cost(&slots, &counts, s);
        counts[s] =
            lower_count(counts[s], slots[s].unit.dense_out_channels, prune).expect("a queued step exists");
        removed += measure(before) - measure(local_cost(&slots, &counts, s));
        if let Some(step) = next_step(&slots, &counts, s, prune) {
            heap.push(Reverse(step));
        }
    }
    Ok(slots
        .iter()
        .zip(counts)
        .map(|(slot, count)| {
            let mut kept: Vec<u32> = slot.keep_order[..count as usize].to_vec();
            kept.sort_unstable();
            UnitPlan { name: slot.unit.name.clone(), channels: slot.unit.dense_out_channels, kept }
        })
        .collect())
}

/// The next allowed count below `count`: a multiple of `round_to`, at least `min_channels`.
fn lower_count(count: u32, channels: u32, prune: &PruneSpec) -> Option<u32> {
    let lower = (count - 1) / prune.round_to * prune.round_to;
    (lower >= prune.min_channels.min(channels) && lower >= 1).then_some(lower)
}

fn next_step(slots: &[Slot], counts: &[u32], s: usize, prune: &PruneSpec) -> Option<Step> {
    let slot = &slots[s];
    if !slot.prunable {
        return None;
    }
    let channels = slot.unit.dense_out_channels;
    let lower = lower_count(counts[s], channels, prune)?;
    let dropped = &slot.drop_scores[(channels - counts[s]) as usize..(channels - lower) as usize];
    let priority = dropped.iter().sum::<f32>() / dropped.len() as f32;
    Some(Step { priority, slot: s })
}

/// Cost of unit `s` and of the unit after it in its block, at the current counts.
fn local_cost(slots: &[Slot], counts: &[u32], s: usize) -> Cost {
    let conv = |i: usize| {
        let slot = &slots[i];
        let c_in = slot.fixed_in.unwrap_or_else(|| counts[i - 1]);
        let u = slot.unit;
        let weights =
            u64::from(c_in / u.groups.max(1)) * u64::from(counts[i]) * u64::from(u.kernel * u.kernel);
        Cost { params: weights + 2 * u64::from(counts[i]), flops: weights * slot.out_size * slot.out_size }
    };
    let mut cost = conv(s);
    if let Some(next) = slots[s].next {
        cost += conv(next);
    }
    cost
}
