//! The reference policy: every unit drops its `floor(rate · C)` lowest-scoring channels.
//!
//! Under `residual: group` the members of a residual stream decide together: the
//! stream drops `floor(rate · C)` of its channels by their group score.

use std::collections::HashMap;

use super::group::scored_streams;
use super::{UnitPlan, round_kept, top};
use crate::arch::ArchDesc;
use crate::score::ScoreMap;
use crate::spec::{PruneSpec, ResidualMode};

/// Scores must already be checked against `desc`.
pub(super) fn decide(desc: &ArchDesc, scores: &ScoreMap, prune: &PruneSpec) -> Vec<UnitPlan> {
    let count = |channels: u32| {
        // As the reference: int(rate * C) channels go, computed in f64.
        let dropped = (prune.rate * f64::from(channels)).floor() as u32;
        let count = (channels - dropped.min(channels)).max(prune.min_channels.min(channels));
        round_kept(count, prune.round_to, prune.min_channels, channels)
    };
    let mut grouped: HashMap<String, Vec<u32>> = HashMap::new();
    if prune.residual == ResidualMode::Group {
        for scored in scored_streams(desc, scores) {
            let kept = top(&scored.scores, count(scored.stream.channels));
            for member in scored.stream.members {
                grouped.insert(member, kept.clone());
            }
        }
    }
    desc.units()
        .map(|unit| {
            let channels = unit.dense_out_channels;
            let kept = if let Some(kept) = grouped.get(&unit.name) {
                kept.clone()
            } else if prune.residual == ResidualMode::Keep && desc.is_residual_unit(&unit.name) {
                (0..channels).collect()
            } else {
                top(&scores[&unit.name], count(channels))
            };
            UnitPlan { name: unit.name.clone(), channels, kept }
        })
        .collect()
}
