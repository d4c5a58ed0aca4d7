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
//! it counts every layer whose inputs or outputs shrink with it.
//!
//! Under `residual: group` the last units of the blocks do not step alone: each
//! residual stream is one more slot, scored by its group score (already on the
//! normalised scale), whose steps shrink its writer, its members and its readers.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use super::group::scored_streams;
use super::{UnitPlan, keep_order};
use crate::arch::{ArchDesc, Cost, out_side};
use crate::error::{Error, FieldError, Result};
use crate::score::{ScoreMap, normalised};
use crate::spec::{GlobalTarget, PruneSpec, ResidualMode};

/// One width the greedy search can lower: a unit's outputs or a residual stream.
struct Slot {
    channels: u32,
    /// Normalised scores in drop order (lowest first).
    drop_scores: Vec<f32>,
    keep_order: Vec<u32>,
    prunable: bool,
    /// The layers whose cost depends on this width.
    layers: Vec<usize>,
}

/// A width: fixed, or the current count of a slot.
#[derive(Clone, Copy)]
enum Width {
    Fixed(u32),
    Slot(usize),
}

/// A conv followed by BN, or the classifier (a linear layer with bias).
struct Layer {
    input: Width,
    output: Width,
    /// Kernel area divided into groups: weights = in / groups · out · area.
    kernel_area: u64,
    groups: u32,
    /// Output positions (side²); 1 for the classifier.
    positions: u64,
    linear: bool,
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

/// The slots and the layers they touch: one slot per unit, in forward order, then
/// one per scored residual stream under `residual: group`.
struct Network {
    slots: Vec<Slot>,
    layers: Vec<Layer>,
    /// For each unit, the slot its kept channels come from.
    unit_slot: Vec<usize>,
}

fn network(desc: &ArchDesc, scores: &ScoreMap, prune: &PruneSpec, input_size: u32) -> Network {
    let costs = desc.unit_costs(input_size);
    let group = prune.residual == ResidualMode::Group;
    let mut slots = Vec::new();
    let mut unit_slot = Vec::new();
    for unit in desc.units() {
        let order = keep_order(&scores[&unit.name]);
        let norm = normalised(&scores[&unit.name]);
        let residual = desc.is_residual_unit(&unit.name);
        unit_slot.push(slots.len());
        slots.push(Slot {
            channels: unit.dense_out_channels,
            drop_scores: order.iter().rev().map(|&c| norm[c as usize]).collect(),
            keep_order: order,
            prunable: !(residual && prune.residual != ResidualMode::Scatter),
            layers: Vec::new(),
        });
    }
    // The slot of the stream each block writes (group mode), by block index.
    let mut block_stream: Vec<Option<usize>> = vec![None; desc.blocks.len()];
    let last_unit: Vec<usize> = desc
        .blocks
        .iter()
        .scan(0, |end, block| {
            *end += block.units.len();
            Some(*end - 1)
        })
        .collect();
    let mut stem_stream = None;
    if group {
        for scored in scored_streams(desc, scores) {
            let order = keep_order(&scored.scores);
            let slot = slots.len();
            for b in scored.stream.blocks.clone() {
                block_stream[b] = Some(slot);
                unit_slot[last_unit[b]] = slot;
            }
            if scored.stream.is_stem() {
                stem_stream = Some(slot);
            }
            slots.push(Slot {
                channels: scored.stream.channels,
                drop_scores: order.iter().rev().map(|&c| scored.scores[c as usize]).collect(),
                keep_order: order,
                prunable: true,
                layers: Vec::new(),
            });
        }
    }

    let mut layers = Vec::new();
    let stem = &desc.stem;
    let stem_side = out_side(input_size.into(), stem.kernel, stem.stride, stem.padding);
    let stream_width = |slot: Option<usize>, dense: u32| slot.map_or(Width::Fixed(dense), Width::Slot);
    let mut incoming = stream_width(stem_stream, stem.out_channels);
    layers.push(Layer {
        input: Width::Fixed(desc.in_channels),
        output: incoming,
        kernel_area: u64::from(stem.kernel * stem.kernel),
        groups: 1,
        positions: stem_side * stem_side,
        linear: false,
    });
    let mut u = 0;
    for (b, block) in desc.blocks.iter().enumerate() {
        let outgoing = stream_width(block_stream[b], block.dense_out_channels());
        let mut input = incoming;
        let mut side = 0;
        for unit in &block.units {
            side = costs[u].out_size;
            let output = Width::Slot(unit_slot[u]);
            layers.push(Layer {
                input,
                output,
                kernel_area: u64::from(unit.kernel * unit.kernel),
                groups: unit.groups,
                positions: side * side,
                linear: false,
            });
            input = output;
            u += 1;
        }
        if block.shortcut.is_some() {
            layers.push(Layer {
                input: incoming,
                output: outgoing,
                kernel_area: 1,
                groups: 1,
                positions: side * side,
                linear: false,
            });
        }
        incoming = outgoing;
    }
    layers.push(Layer {
        input: incoming,
        output: Width::Fixed(desc.classifier.out_features),
        kernel_area: 1,
        groups: 1,
        positions: 1,
        linear: true,
    });
    for (l, layer) in layers.iter().enumerate() {
        for width in [layer.input, layer.output] {
            if let Width::Slot(s) = width
                && slots[s].layers.last() != Some(&l)
            {
                slots[s].layers.push(l);
            }
        }
    }
    Network { slots, layers, unit_slot }
}

/// Scores must already be checked against `desc`.
pub(super) fn decide(
    desc: &ArchDesc,
    scores: &ScoreMap,
    prune: &PruneSpec,
    input_size: u32,
) -> Result<Vec<UnitPlan>> {
    let net = network(desc, scores, prune, input_size);
    let mut counts: Vec<u32> = net.slots.iter().map(|s| s.channels).collect();
    let dense = desc.cost(input_size);
    let measure = |c: Cost| match prune.target {
        GlobalTarget::Params => c.params,
        GlobalTarget::Flops => c.flops,
    };
    let goal = (prune.rate * measure(dense) as f64).ceil() as u64;

    let mut heap = BinaryHeap::new();
    for s in 0..net.slots.len() {
        if let Some(step) = next_step(&net.slots, &counts, s, prune) {
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
        let before = local_cost(&net, &counts, s);
        counts[s] = lower_count(counts[s], net.slots[s].channels, prune).expect("a queued step exists");
        removed += measure(before) - measure(local_cost(&net, &counts, s));
        if let Some(step) = next_step(&net.slots, &counts, s, prune) {
            heap.push(Reverse(step));
        }
    }
    Ok(desc
        .units()
        .zip(&net.unit_slot)
        .map(|(unit, &s)| {
            let mut kept: Vec<u32> = net.slots[s].keep_order[..counts[s] as usize].to_vec();
            kept.sort_unstable();
            UnitPlan { name: unit.name.clone(), channels: unit.dense_out_channels, kept }
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
    let channels = slot.channels;
    let lower = lower_count(counts[s], channels, prune)?;
    let dropped = &slot.drop_scores[(channels - counts[s]) as usize..(channels - lower) as usize];
    let priority = dropped.iter().sum::<f32>() / dropped.len() as f32;
    Some(Step { priority, slot: s })
}

/// Cost of every layer whose width depends on slot `s`, at the current counts.
fn local_cost(net: &Network, counts: &[u32], s: usize) -> Cost {
    let width = |w: Width| match w {
        Width::Fixed(c) => c,
        Width::Slot(i) => counts[i],
    };
    let mut total = Cost::default();
    for &l in &net.slots[s].layers {
        let layer = &net.layers[l];
        let (c_in, c_out) = (u64::from(width(layer.input)), u64::from(width(layer.output)));
        let weights = c_in / u64::from(layer.groups.max(1)) * c_out * layer.kernel_area;
        let per_output = if layer.linear { 1 } else { 2 };
        total += Cost { params: weights + per_output * c_out, flops: weights * layer.positions };
    }
    total
}
