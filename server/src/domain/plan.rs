//! The persisted pruning plan as the coordinator shows it, and score statistics.
//!
//! The decision itself (scores → kept channels) is `scop-core`'s; this is the
//! inspectable record of its outcome per unit.

use serde::{Deserialize, Serialize};

/// One unit's statistics (β and |γ|, or another criterion's scores) as rank 0 sent them.
pub use scop_core::stats::UnitStatistics;

/// The decided plan of one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub job_id: String,
    pub decided_at_ms: i64,
    pub policy: String,
    /// The spec's `prune.criterion`; empty in plans stored before criteria existed (SCOP).
    #[serde(default)]
    pub criterion: String,
    pub rate: f64,
    pub statistics_epoch: u32,
    pub units: Vec<PlanUnit>,
    /// Params and FLOPs of the whole network before and after, counted at
    /// `totals.input_size` (absent in plans stored by older coordinators).
    #[serde(default)]
    pub totals: Option<scop_core::plan::PlanSummary>,
    /// The spec's `prune.residual` ("scatter", "keep", "group"); empty in
    /// plans stored before it was recorded.
    #[serde(default)]
    pub residual: String,
    /// The spec's `prune.round_to` as decided (0 in plans stored before).
    #[serde(default)]
    pub round_to: u32,
    /// The residual streams pruned as groups (`residual: group` only).
    #[serde(default)]
    pub groups: Vec<PlanGroup>,
}

/// One residual stream pruned as a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanGroup {
    /// The conv that writes the stream.
    pub writer: String,
    pub channels_before: u32,
    pub channels_after: u32,
    /// The units that add into the stream.
    pub members: Vec<String>,
}

impl Plan {
    pub fn channels_before(&self) -> u64 {
        self.units.iter().map(|u| u64::from(u.channels_before)).sum()
    }

    pub fn channels_after(&self) -> u64 {
        self.units.iter().map(|u| u64::from(u.channels_after)).sum()
    }
}

/// One unit of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanUnit {
    pub unit: String,
    pub channels_before: u32,
    pub channels_after: u32,
    pub score: ScoreSummary,
}

/// Summary of one unit's channel scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreSummary {
    pub min: f64,
    pub mean: f64,
    pub max: f64,
    /// The lowest kept score.
    pub kept_min: f64,
    /// The highest pruned score; `None` when nothing was pruned.
    pub pruned_max: Option<f64>,
    /// The median score; `None` in plans stored before it was recorded.
    #[serde(default)]
    pub median: Option<f64>,
}

impl ScoreSummary {
    /// Summarises `scores` given which channels are kept; `None` when nothing is kept.
    pub fn of(scores: &[f64], kept: &[bool]) -> Option<ScoreSummary> {
        let pick = |want: bool| scores.iter().zip(kept).filter(move |(_, k)| **k == want).map(|(s, _)| *s);
        let kept_min = pick(true).reduce(f64::min)?;
        Some(ScoreSummary {
            min: scores.iter().copied().reduce(f64::min)?,
            mean: scores.iter().sum::<f64>() / scores.len() as f64,
            max: scores.iter().copied().reduce(f64::max)?,
            kept_min,
            pruned_max: pick(false).reduce(f64::max),
            median: median(scores),
        })
    }
}

/// The middle value, or the mean of the middle two; `None` for no values.
/// NaN sorts last, so one bad channel cannot hide the others.
fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_stored_before_groups_were_recorded_still_loads() {
        let stored =
            r#"{"job_id":"j","decided_at_ms":1,"policy":"layer","rate":0.5,"statistics_epoch":2,"units":[]}"#;
        let plan: Plan = serde_json::from_str(stored).unwrap();
        assert_eq!((plan.residual.as_str(), plan.round_to, plan.groups.len()), ("", 0, 0));
        assert_eq!(plan.totals, None);
    }

    #[test]
    fn summary_separates_kept_from_pruned() {
        let s = ScoreSummary::of(&[0.0, 0.5, -1.0, 0.25], &[true, true, false, false]).unwrap();
        assert_eq!((s.min, s.max, s.kept_min, s.pruned_max), (-1.0, 0.5, 0.0, Some(0.25)));
        assert_eq!(s.mean, -0.0625);
        assert_eq!(s.median, Some(0.125));
        assert_eq!(ScoreSummary::of(&[3.0, -1.0, 2.0], &[true; 3]).unwrap().median, Some(2.0));
        let all = ScoreSummary::of(&[1.0, 2.0], &[true, true]).unwrap();
        assert_eq!(all.pruned_max, None);
        assert_eq!(ScoreSummary::of(&[1.0], &[false]), None);
    }
}
