//! Score statistics: what the scoring stage emits per unit, which the coordinator
//! stores and turns into a plan. The knockoff stage (`prune.criterion: scop`)
//! sends β and |γ|, from which [`channel_score`] computes the score; the `score`
//! stage (every other criterion) sends the score itself, with |γ| beside it.

use serde::{Deserialize, Serialize};

use crate::score::channel_score;

/// One prunable unit's statistics, one value per channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitStatistics {
    /// Stable unit name, e.g. `layer2.0.conv1`.
    pub unit: String,
    /// β per output channel, in [0, 1]; empty when `score` is given.
    pub beta: Vec<f32>,
    /// |γ| of the unit's BN per output channel.
    pub gamma_abs: Vec<f32>,
    /// The channel scores of a criterion other than SCOP, as the `score` stage
    /// computed them; empty for SCOP, whose score comes from β and |γ|.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub score: Vec<f32>,
}

impl UnitStatistics {
    /// SCOP's statistics of one unit: β and |γ|.
    pub fn scop(unit: impl Into<String>, beta: Vec<f32>, gamma_abs: Vec<f32>) -> Self {
        Self { unit: unit.into(), beta, gamma_abs, score: Vec::new() }
    }

    /// Another criterion's statistics of one unit: its scores, with |γ| for reference.
    pub fn scored(unit: impl Into<String>, score: Vec<f32>, gamma_abs: Vec<f32>) -> Self {
        Self { unit: unit.into(), beta: Vec::new(), gamma_abs, score }
    }

    /// The score of every channel: `score` when the criterion sent it, else `|γ|·(2β − 1)`.
    pub fn channel_scores(&self) -> Vec<f32> {
        if self.score.is_empty() {
            self.gamma_abs.iter().zip(&self.beta).map(|(&g, &b)| channel_score(g, b)).collect()
        } else {
            self.score.clone()
        }
    }
}

/// Every unit's statistics at the end of one knockoff epoch (or on request).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreStatistics {
    /// Knockoff epochs completed when these were taken.
    pub epoch: u32,
    pub units: Vec<UnitStatistics>,
}

impl ScoreStatistics {
    /// The score of every channel, by unit name ([`UnitStatistics::channel_scores`]).
    pub fn scores(&self) -> std::collections::BTreeMap<String, Vec<f32>> {
        self.units.iter().map(|u| (u.unit.clone(), u.channel_scores())).collect()
    }

    /// A problem with the shape of the statistics, naming the unit; `None` if they are sound.
    pub fn check(&self) -> Option<String> {
        for u in &self.units {
            if !u.score.is_empty() {
                if !u.beta.is_empty() {
                    return Some(format!("{}: has both β and a criterion's scores", u.unit));
                }
                if u.score.len() != u.gamma_abs.len() {
                    return Some(format!(
                        "{}: the scores have {} channels but |γ| has {}",
                        u.unit,
                        u.score.len(),
                        u.gamma_abs.len()
                    ));
                }
                if let Some(s) = u.score.iter().find(|s| !s.is_finite()) {
                    return Some(format!("{}: scores must be finite, got {s}", u.unit));
                }
            } else if u.beta.len() != u.gamma_abs.len() {
                return Some(format!(
                    "{}: β has {} channels but |γ| has {}",
                    u.unit,
                    u.beta.len(),
                    u.gamma_abs.len()
                ));
            }
            if let Some(b) = u.beta.iter().find(|b| !(0.0..=1.0).contains(*b)) {
                return Some(format!("{}: β must be in [0, 1], got {b}", u.unit));
            }
            if let Some(g) = u.gamma_abs.iter().find(|g| !g.is_finite() || **g < 0.0) {
                return Some(format!("{}: |γ| must be finite and >= 0, got {g}", u.unit));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_follow_the_scop_formula_and_bad_shapes_are_named() {
        let stats = ScoreStatistics {
            epoch: 1,
            units: vec![UnitStatistics::scop("layer1.0.conv1", vec![1.0, 0.5, 0.0], vec![2.0, 3.0, 4.0])],
        };
        assert_eq!(stats.check(), None);
        assert_eq!(stats.scores()["layer1.0.conv1"], vec![2.0, 0.0, -4.0]);
        let mut bad = stats.clone();
        bad.units[0].beta.pop();
        assert_eq!(bad.check().unwrap(), "layer1.0.conv1: β has 2 channels but |γ| has 3");
        let mut bad = stats;
        bad.units[0].beta[1] = 1.5;
        assert_eq!(bad.check().unwrap(), "layer1.0.conv1: β must be in [0, 1], got 1.5");
    }

    #[test]
    fn another_criterions_scores_are_used_as_sent() {
        let stats = ScoreStatistics {
            epoch: 1,
            units: vec![UnitStatistics::scored("layer1.0.conv1", vec![7.0, 0.0, 2.0], vec![1.0, 1.0, 1.0])],
        };
        assert_eq!(stats.check(), None);
        assert_eq!(stats.scores()["layer1.0.conv1"], vec![7.0, 0.0, 2.0]);
        // The JSON of SCOP's statistics is unchanged; another criterion's adds `score`.
        let line = serde_json::to_string(&stats).unwrap();
        assert!(line.contains(r#""score":[7.0,0.0,2.0]"#), "{line}");
        let scop = UnitStatistics::scop("u", vec![0.5], vec![1.0]);
        assert_eq!(serde_json::to_string(&scop).unwrap(), r#"{"unit":"u","beta":[0.5],"gamma_abs":[1.0]}"#);
        assert_eq!(serde_json::from_str::<ScoreStatistics>(&line).unwrap(), stats);

        let mut bad = stats.clone();
        bad.units[0].score[2] = f32::NAN;
        assert_eq!(bad.check().unwrap(), "layer1.0.conv1: scores must be finite, got NaN");
        let mut bad = stats.clone();
        bad.units[0].gamma_abs.pop();
        assert_eq!(bad.check().unwrap(), "layer1.0.conv1: the scores have 3 channels but |γ| has 2");
        let mut bad = stats;
        bad.units[0].beta = vec![0.5; 3];
        assert_eq!(bad.check().unwrap(), "layer1.0.conv1: has both β and a criterion's scores");
    }
}
