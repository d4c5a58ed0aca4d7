//! Score statistics: the per-unit β and |γ| vectors the knockoff stage emits,
//! which the coordinator stores and turns into a plan.

use serde::{Deserialize, Serialize};

use crate::score::channel_score;

/// One prunable unit's control coefficients and BN scales, one value per channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitStatistics {
    /// Stable unit name, e.g. `layer2.0.conv1`.
    pub unit: String,
    /// β per output channel, in [0, 1].
    pub beta: Vec<f32>,
    /// |γ| of the unit's BN per output channel.
    pub gamma_abs: Vec<f32>,
}

/// Every unit's statistics at the end of one knockoff epoch (or on request).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreStatistics {
    /// Knockoff epochs completed when these were taken.
    pub epoch: u32,
    pub units: Vec<UnitStatistics>,
}

impl ScoreStatistics {
    /// The SCOP score `|γ|·(2β − 1)` of every channel, by unit name.
    pub fn scores(&self) -> std::collections::BTreeMap<String, Vec<f32>> {
        self.units
            .iter()
            .map(|u| {
                let scores = u.gamma_abs.iter().zip(&u.beta).map(|(&g, &b)| channel_score(g, b)).collect();
                (u.unit.clone(), scores)
            })
            .collect()
    }

    /// A problem with the shape of the statistics, naming the unit; `None` if they are sound.
    pub fn check(&self) -> Option<String> {
        for u in &self.units {
            if u.beta.len() != u.gamma_abs.len() {
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
            units: vec![UnitStatistics {
                unit: "layer1.0.conv1".into(),
                beta: vec![1.0, 0.5, 0.0],
                gamma_abs: vec![2.0, 3.0, 4.0],
            }],
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
}
