//! Pruning plans: which output channels of every unit survive, decided from scores.
//!
//! A [`Plan`] is a persisted, inspectable artifact: the coordinator decides it from
//! the aggregated scores, the worker applies it physically. Kept channel indices
//! refer to the dense network and are sorted ascending. Ties between equal scores
//! always break by channel index (the lower index is kept), so a plan is a pure
//! function of its scores and its [`PruneSpec`].
//!
//! Under `residual: group` the plan also lists its [`GroupPlan`]s: each residual
//! stream, the channels it keeps and the units that add into it (which keep
//! exactly those channels); see [`group`] for how a stream is scored.

mod global;
mod group;
mod layer;

use serde::{Deserialize, Serialize};

use crate::arch::ArchDesc;
use crate::error::{Error, FieldError, Result};
use crate::score::{ScoreMap, check_scores};
use crate::spec::{PolicyKind, PruneSpec, ResidualMode};

pub use group::GroupPlan;

/// The decision for one unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitPlan {
    pub name: String,
    /// Output channels of the dense unit.
    pub channels: u32,
    /// Indices of the surviving channels, ascending.
    pub kept: Vec<u32>,
}

/// Size of the network before and after the plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSummary {
    /// Input side the FLOPs were counted at.
    pub input_size: u32,
    pub params_before: u64,
    pub params_after: u64,
    pub flops_before: u64,
    pub flops_after: u64,
}

/// A whole pruning decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub arch: String,
    /// The policy and options that made it.
    pub prune: PruneSpec,
    pub units: Vec<UnitPlan>,
    /// The residual streams pruned as groups (`residual: group` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupPlan>,
    pub summary: PlanSummary,
}

impl PlanSummary {
    /// Fraction of parameters removed.
    pub fn params_reduction(&self) -> f64 {
        1.0 - self.params_after as f64 / self.params_before.max(1) as f64
    }

    /// Fraction of FLOPs removed.
    pub fn flops_reduction(&self) -> f64 {
        1.0 - self.flops_after as f64 / self.flops_before.max(1) as f64
    }
}

impl Plan {
    /// Decides a plan for the dense network `desc` from per-channel `scores`.
    /// FLOPs in the summary (and the target of a FLOPs-driven global policy) are
    /// counted at a square input of side `input_size`.
    pub fn decide(desc: &ArchDesc, scores: &ScoreMap, prune: &PruneSpec, input_size: u32) -> Result<Plan> {
        if desc.is_pruned() {
            return Err(invalid(
                "arch",
                format!("{} is already pruned; plans start from the dense network", desc.arch),
            ));
        }
        check_prune_spec(prune)?;
        check_scores(desc, scores)?;
        let units = match prune.policy {
            PolicyKind::Layer => layer::decide(desc, scores, prune),
            PolicyKind::Global => global::decide(desc, scores, prune, input_size)?,
        };
        Self::from_units(desc, units, prune.clone(), input_size)
    }

    /// A plan from explicit kept channels, with its summary computed.
    pub fn from_units(
        desc: &ArchDesc,
        units: Vec<UnitPlan>,
        prune: PruneSpec,
        input_size: u32,
    ) -> Result<Plan> {
        let before = desc.cost(input_size);
        let after = desc.apply_units(&units, prune.residual)?.cost(input_size);
        let groups =
            if prune.residual == ResidualMode::Group { group::groups_of(desc, &units) } else { Vec::new() };
        Ok(Plan {
            arch: desc.arch.clone(),
            prune,
            units,
            groups,
            summary: PlanSummary {
                input_size,
                params_before: before.params,
                params_after: after.params,
                flops_before: before.flops,
                flops_after: after.flops,
            },
        })
    }

    /// The plan of one unit by name.
    pub fn unit(&self, name: &str) -> Option<&UnitPlan> {
        self.units.iter().find(|u| u.name == name)
    }

    /// Parses a `plan.json`; `origin` names the file in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Plan> {
        let mut de = serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            Error::Parse(FieldError::new(format!("{origin}: {path}"), e.into_inner().to_string()))
        })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a Plan always serialises")
    }
}

fn invalid(path: &str, message: String) -> Error {
    Error::Invalid(vec![FieldError::new(path, message)])
}

fn check_prune_spec(p: &PruneSpec) -> Result<()> {
    let mut errors = Vec::new();
    if !(p.rate >= 0.0 && p.rate < 1.0) {
        errors.push(FieldError::new("prune.rate", format!("must be in [0, 1), got {}", p.rate)));
    }
    if p.min_channels < 1 {
        errors.push(FieldError::new("prune.min_channels", format!("must be >= 1, got {}", p.min_channels)));
    }
    if p.round_to < 1 {
        errors.push(FieldError::new("prune.round_to", format!("must be >= 1, got {}", p.round_to)));
    }
    if errors.is_empty() { Ok(()) } else { Err(Error::Invalid(errors)) }
}

/// Channel indices of one unit in keep order: highest score first, ties by lower index.
fn keep_order(scores: &[f32]) -> Vec<u32> {
    let mut order: Vec<u32> = (0..scores.len() as u32).collect();
    order.sort_by(|&a, &b| scores[b as usize].total_cmp(&scores[a as usize]).then(a.cmp(&b)));
    order
}

/// The `count` best channels of a unit, ascending.
fn top(scores: &[f32], count: u32) -> Vec<u32> {
    let mut kept: Vec<u32> = keep_order(scores).into_iter().take(count as usize).collect();
    kept.sort_unstable();
    kept
}

/// `count` rounded to the nearest multiple of `round_to` (halves up), but never
/// below `min_channels` (rounded up to a multiple), nor to zero, nor above `channels`.
///
/// Nearest rather than up: a rate asks for a width, and the multiple closest to it
/// is the honest reading. Rounding up turned `rate: 0.45` on a 16-channel unit into
/// no pruning at all (9 up to 16), and the 9/18/36 widths that rounding away from
/// multiples of 8 left behind train no faster than the dense 16/32/64 ones.
fn round_kept(count: u32, round_to: u32, min_channels: u32, channels: u32) -> u32 {
    let nearest = (count + round_to / 2) / round_to * round_to;
    let least = min_channels.max(1).div_ceil(round_to).saturating_mul(round_to);
    nearest.max(least).min(channels)
}

/// The decide step of a job, as every orchestrator runs it (the coordinator,
/// and `scop-worker run` in its own process): the spec's dense network, its
/// prune section and input size, and the final knockoff epoch's statistics.
pub fn decide_for_spec(spec: &crate::spec::JobSpec, stats: &crate::stats::ScoreStatistics) -> Result<Plan> {
    let desc = ArchDesc::new(&spec.model.arch, spec.model.num_classes, spec.in_channels())?;
    Plan::decide(&desc, &stats.scores(), &spec.prune, spec.input_size())
}

#[cfg(test)]
mod tests;
