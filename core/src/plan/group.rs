//! Residual groups (`residual: group`): one decision per residual stream.
//!
//! A stream's members are the last units of the blocks that add into it. Their raw
//! scores are not comparable (each BN has its own scale of |γ|), so each member's
//! scores are first normalised per unit (divided by the unit's largest magnitude,
//! as the global policy does), then averaged per channel over the members. The
//! mean keeps the sign rule of SCOP (a channel that lost to its knockoff in most
//! members ranks low) and lets no single block dominate the stream. The stem and
//! the shortcuts carry no β, so they do not vote; they follow the group.

use serde::{Deserialize, Serialize};

use crate::arch::{ArchDesc, ResidualStream};
use crate::score::{ScoreMap, normalised};

/// The decision for one residual stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupPlan {
    /// The conv that writes the stream: `conv1` or `layerS.I.downsample.0`.
    pub writer: String,
    /// Dense width of the stream.
    pub channels: u32,
    /// Surviving channels, ascending; every member keeps exactly these.
    pub kept: Vec<u32>,
    /// The units that add into the stream and were scored for it.
    pub members: Vec<String>,
}

/// A stream with members and its aggregated score per channel.
pub(super) struct ScoredStream {
    pub stream: ResidualStream,
    pub scores: Vec<f32>,
}

/// The streams that have scored members, with their group scores. Scores must
/// already be checked against `desc`.
pub(super) fn scored_streams(desc: &ArchDesc, scores: &ScoreMap) -> Vec<ScoredStream> {
    desc.residual_streams()
        .into_iter()
        .filter(|s| !s.members.is_empty())
        .map(|stream| {
            let mut sum = vec![0.0f32; stream.channels as usize];
            for member in &stream.members {
                for (total, value) in sum.iter_mut().zip(normalised(&scores[member])) {
                    *total += value;
                }
            }
            let n = stream.members.len() as f32;
            ScoredStream { scores: sum.into_iter().map(|s| s / n).collect(), stream }
        })
        .collect()
}

/// The groups of a plan whose member units were decided already.
pub(super) fn groups_of(desc: &ArchDesc, units: &[super::UnitPlan]) -> Vec<GroupPlan> {
    desc.residual_streams()
        .into_iter()
        .filter_map(|stream| {
            let first = stream.members.first()?;
            let unit = units.iter().find(|u| &u.name == first)?;
            Some(GroupPlan {
                writer: stream.writer,
                channels: stream.channels,
                kept: unit.kept.clone(),
                members: stream.members,
            })
        })
        .collect()
}
