//! SCOP channel scores: `|γ| · (2β − 1)` per output channel of every prunable unit.
//!
//! γ is the BN weight of the unit and β its learned knockoff coefficient. A channel
//! whose knockoff features won (β < ½) gets a negative score; a channel the network
//! relies on (β near 1) with a large BN scale gets a large one.

use std::collections::BTreeMap;

use crate::arch::ArchDesc;
use crate::error::{Error, FieldError, Result};

/// Scores by unit name, one value per output channel of the dense unit.
pub type ScoreMap = BTreeMap<String, Vec<f32>>;

/// The score of one channel.
pub fn channel_score(gamma: f32, beta: f32) -> f32 {
    gamma.abs() * (2.0 * beta - 1.0)
}

/// The scores of one unit from its BN weights and its β, channel by channel.
pub fn unit_scores(name: &str, gamma: &[f32], beta: &[f32]) -> Result<Vec<f32>> {
    if gamma.len() != beta.len() {
        return Err(Error::Invalid(vec![FieldError::new(
            name,
            format!("γ has {} channels but β has {}", gamma.len(), beta.len()),
        )]));
    }
    Ok(gamma.iter().zip(beta).map(|(&g, &b)| channel_score(g, b)).collect())
}

/// Checks that `scores` has exactly the units of `desc`, with one finite value per
/// dense output channel; every problem is reported with its unit name.
pub fn check_scores(desc: &ArchDesc, scores: &ScoreMap) -> Result<()> {
    let mut errors = Vec::new();
    for unit in desc.units() {
        let path = format!("scores.{}", unit.name);
        match scores.get(&unit.name) {
            None => errors.push(FieldError::new(path, "missing".to_owned())),
            Some(values) => {
                if values.len() != unit.dense_out_channels as usize {
                    errors.push(FieldError::new(
                        path,
                        format!("expected {} values, got {}", unit.dense_out_channels, values.len()),
                    ));
                } else if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                    errors.push(FieldError::new(
                        format!("{path}[{i}]"),
                        format!("must be finite, got {}", values[i]),
                    ));
                }
            }
        }
    }
    for name in scores.keys() {
        if !desc.units().any(|u| &u.name == name) {
            errors.push(FieldError::new(
                format!("scores.{name}"),
                format!("is not a prunable unit of {}", desc.arch),
            ));
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(Error::Invalid(errors)) }
}

/// Parses a score file: a JSON object from unit name to an array of numbers.
pub fn scores_from_json(text: &str, origin: &str) -> Result<ScoreMap> {
    let mut de = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        Error::Parse(FieldError::new(format!("{origin}: {path}"), e.into_inner().to_string()))
    })
}

/// Scores made comparable across units for the global policy: each unit's scores
/// divided by the largest magnitude in that unit, so they lie in [−1, 1] and keep
/// their sign (a channel the knockoff beat stays below every channel it did not).
/// A unit whose scores are all zero stays all zero.
pub fn normalised(scores: &[f32]) -> Vec<f32> {
    let scale = scores.iter().fold(0.0f32, |m, s| m.max(s.abs()));
    if scale > 0.0 { scores.iter().map(|s| s / scale).collect() } else { vec![0.0; scores.len()] }
}

/// Deterministic pseudo-random scores in [−1, 1) for every unit (splitmix64), for
/// inspection and tests when no trained β exists.
pub fn random_scores(desc: &ArchDesc, seed: u64) -> ScoreMap {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // 24 random bits give every f32 in [0, 1) on a uniform grid.
        ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    desc.units().map(|u| (u.name.clone(), (0..u.dense_out_channels).map(|_| next()).collect())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_is_abs_gamma_times_two_beta_minus_one() {
        assert_eq!(unit_scores("u", &[-2.0, 0.5, 1.0], &[1.0, 0.0, 0.5]).unwrap(), [2.0, -0.5, 0.0]);
        let err = unit_scores("layer1.0.conv1", &[1.0], &[0.5, 0.5]).unwrap_err().to_string();
        assert_eq!(err, "layer1.0.conv1: γ has 1 channels but β has 2");
    }

    #[test]
    fn normalisation_divides_by_the_largest_magnitude() {
        assert_eq!(normalised(&[2.0, -4.0, 1.0]), [0.5, -1.0, 0.25]);
        assert_eq!(normalised(&[0.0, 0.0]), [0.0, 0.0]);
    }

    #[test]
    fn score_maps_are_checked_against_the_architecture() {
        let desc = ArchDesc::new("resnet20", 10, 3).unwrap();
        let mut scores = random_scores(&desc, 7);
        assert_eq!(scores, random_scores(&desc, 7));
        assert!(scores.values().flatten().all(|s| (-1.0..1.0).contains(s)));
        check_scores(&desc, &scores).unwrap();
        scores.remove("layer1.0.conv1");
        scores.get_mut("layer3.2.conv2").unwrap().truncate(3);
        scores.get_mut("layer2.1.conv2").unwrap()[4] = f32::NAN;
        scores.insert("layer9.0.conv1".into(), vec![1.0]);
        let err = check_scores(&desc, &scores).unwrap_err().to_string();
        assert_eq!(
            err,
            "scores.layer1.0.conv1: missing\n\
             scores.layer2.1.conv2[4]: must be finite, got NaN\n\
             scores.layer3.2.conv2: expected 64 values, got 3\n\
             scores.layer9.0.conv1: is not a prunable unit of resnet20"
        );
        let err = scores_from_json("{\"a\": [1, \"x\"]}", "s.json").unwrap_err().to_string();
        assert!(err.starts_with("s.json: a[1]: invalid type"), "{err}");
    }
}
