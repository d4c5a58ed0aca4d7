//! The reference policy: every unit drops its `floor(rate · C)` lowest-scoring channels.

use super::{UnitPlan, round_up, top};
use crate::arch::ArchDesc;
use crate::score::ScoreMap;
use crate::spec::{PruneSpec, ResidualMode};

/// Scores must already be checked against `desc`.
pub(super) fn decide(desc: &ArchDesc, scores: &ScoreMap, prune: &PruneSpec) -> Vec<UnitPlan> {
    desc.units()
        .map(|unit| {
            let channels = unit.dense_out_channels;
            let keep_all = prune.residual == ResidualMode::Keep && desc.is_residual_unit(&unit.name);
            let count = if keep_all {
                channels
            } else {
                // As the reference: int(rate * C) channels go, computed in f64.
                let dropped = (prune.rate * f64::from(channels)).floor() as u32;
                let count = (channels - dropped.min(channels)).max(prune.min_channels.min(channels));
                round_up(count, prune.round_to, channels)
            };
            UnitPlan { name: unit.name.clone(), channels, kept: top(&scores[&unit.name], count) }
        })
        .collect()
}
