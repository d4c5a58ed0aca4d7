//! A sweep: one job that trains the dense network and runs the knockoff stage
//! once, then decides, finetunes and exports every candidate as its own branch.
//!
//! Each candidate is a criterion with a layer rate or a global params/FLOPs
//! target, optionally with a residual mode of its own. The coordinator runs a
//! branch as a job of its own whose spec is the sweep's with the candidate's
//! `prune` choices ([`JobSpec::candidate_spec`]).

use serde::{Deserialize, Serialize};

use super::{Criterion, GlobalTarget, JobSpec, PolicyKind, ResidualMode};

/// At most this many candidates in one sweep.
pub const MAX_CANDIDATES: usize = 64;
/// A candidate's name names its folder and its branch job, so it is short and plain.
pub const CANDIDATE_NAME_CHARS: usize = 64;

/// One candidate of a sweep. Fields left out take the spec's `prune` values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Candidate {
    /// Unique within the sweep; `<criterion>-<rate>` (layer) or
    /// `<criterion>-<target>-<rate>` (global) when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub criterion: Option<Criterion>,
    /// The fraction removed: of each unit's channels (`layer`) or of the
    /// params/FLOPs (`global`).
    pub rate: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyKind>,
    /// `global` only: what `rate` measures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<GlobalTarget>,
    /// Its `prune.residual`, to compare residual modes in one sweep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residual: Option<ResidualMode>,
}

impl JobSpec {
    /// Whether the spec is a sweep (a non-empty `sweep` list).
    pub fn is_sweep(&self) -> bool {
        !self.sweep.is_empty()
    }

    /// The candidates with every field the sweep leaves open filled in from `prune`.
    pub fn candidates(&self) -> Vec<Candidate> {
        self.sweep.iter().map(|c| self.completed(c)).collect()
    }

    fn completed(&self, c: &Candidate) -> Candidate {
        let criterion = c.criterion.unwrap_or(self.prune.criterion);
        let policy = c.policy.unwrap_or(self.prune.policy);
        let target = c.target.unwrap_or(self.prune.target);
        let name = c.name.clone().unwrap_or_else(|| {
            let mut name = match policy {
                PolicyKind::Layer => format!("{}-{}", criterion.as_str(), c.rate),
                PolicyKind::Global => {
                    let target = match target {
                        GlobalTarget::Params => "params",
                        GlobalTarget::Flops => "flops",
                    };
                    format!("{}-{target}-{}", criterion.as_str(), c.rate)
                }
            };
            // Only a candidate that names its residual mode says it in its name,
            // so that the names of sweeps that leave it to `prune` stay as they were.
            if let Some(residual) = c.residual {
                name = format!("{name}-{}", residual.as_str());
            }
            name
        });
        Candidate {
            name: Some(name),
            criterion: Some(criterion),
            rate: c.rate,
            policy: Some(policy),
            target: (policy == PolicyKind::Global).then_some(target),
            residual: Some(c.residual.unwrap_or(self.prune.residual)),
        }
    }

    /// Whether any candidate (or, for a plain job, the job) needs the knockoff stage.
    pub fn needs_knockoff(&self) -> bool {
        if self.is_sweep() {
            self.candidates().iter().any(|c| c.criterion.unwrap_or(Criterion::Scop).needs_knockoff())
        } else {
            self.prune.criterion.needs_knockoff()
        }
    }

    /// The spec of one candidate's branch: this spec with the candidate's
    /// `prune` choices and no sweep. `None` when no candidate has that name.
    pub fn candidate_spec(&self, name: &str) -> Option<JobSpec> {
        let c = self.candidates().into_iter().find(|c| c.name.as_deref() == Some(name))?;
        let mut spec = self.clone();
        spec.sweep.clear();
        spec.prune.criterion = c.criterion.unwrap_or(self.prune.criterion);
        spec.prune.rate = c.rate;
        spec.prune.policy = c.policy.unwrap_or(self.prune.policy);
        spec.prune.target = c.target.unwrap_or(self.prune.target);
        spec.prune.residual = c.residual.unwrap_or(self.prune.residual);
        spec.name = Some(match &self.name {
            Some(base) => format!("{base}/{name}"),
            None => name.to_owned(),
        });
        Some(spec)
    }

    /// Problems of the `sweep` list, each with its field path.
    pub(super) fn validate_sweep(&self, check: &mut impl FnMut(bool, &str, String)) {
        check(
            self.sweep.len() <= MAX_CANDIDATES,
            "sweep",
            format!("must have at most {MAX_CANDIDATES} candidates, got {}", self.sweep.len()),
        );
        let mut seen = std::collections::BTreeSet::new();
        for (i, (given, c)) in self.sweep.iter().zip(self.candidates()).enumerate() {
            let name = c.name.clone().unwrap_or_default();
            let path = |field: &str| format!("sweep[{i}].{field}");
            check(
                given.rate >= 0.0 && given.rate < 1.0,
                &path("rate"),
                format!("must be in [0, 1), got {}", given.rate),
            );
            let plain = name.chars().all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch));
            check(
                !name.is_empty()
                    && plain
                    && !name.starts_with('.')
                    && name.chars().count() <= CANDIDATE_NAME_CHARS,
                &path("name"),
                format!(
                    "must be 1 to {CANDIDATE_NAME_CHARS} of the characters A-Z a-z 0-9 . _ - and not start \
                     with '.', got {name:?}"
                ),
            );
            check(seen.insert(name.clone()), &path("name"), format!("{name:?} names two candidates"));
            // The branch's spec is named `<name>/<candidate>` and must fit `name`'s bound.
            let branch_chars = self.name.as_ref().map_or(0, |n| n.chars().count() + 1) + name.chars().count();
            check(
                branch_chars <= super::limits::NAME_CHARS,
                &path("name"),
                format!(
                    "with the spec's name the branch is named by {branch_chars} characters, more than {}; \
                     shorten `name` or the candidate's",
                    super::limits::NAME_CHARS
                ),
            );
            check(
                given.target.is_none() || c.policy == Some(PolicyKind::Global),
                &path("target"),
                "applies only to `policy: global`".to_owned(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::spec::{Criterion, GlobalTarget, JobSpec, PolicyKind, ResidualMode};

    const BASE: &str = "model: {arch: resnet20, num_classes: 10}\n\
                        data: {format: idx, root: data}\n\
                        pretrain: {epochs: 1, batch_size: 8}\n\
                        knockoff: {epochs: 1, batch_size: 8}\n\
                        prune: {rate: 0.5, residual: group}\n\
                        finetune: {epochs: 1, batch_size: 8}\n";

    #[test]
    fn candidates_take_the_prune_section_where_they_are_silent() {
        let spec = JobSpec::from_yaml(&format!(
            "{BASE}sweep:\n\
             - {{rate: 0.45}}\n\
             - {{criterion: l1, rate: 0.7}}\n\
             - {{name: small, criterion: random, rate: 0.5, policy: global, target: params}}\n\
             - {{criterion: bn_gamma, rate: 0.3, policy: global}}\n"
        ))
        .unwrap();
        let names: Vec<String> = spec.candidates().into_iter().map(|c| c.name.unwrap()).collect();
        assert_eq!(names, ["scop-0.45", "l1-0.7", "small", "bn_gamma-flops-0.3"]);
        assert!(spec.needs_knockoff());

        let small = spec.candidate_spec("small").unwrap();
        assert_eq!(small.prune.criterion, Criterion::Random);
        assert_eq!((small.prune.policy, small.prune.target), (PolicyKind::Global, GlobalTarget::Params));
        assert_eq!(small.prune.rate, 0.5);
        // Everything else is the sweep's: residual mode, training, data.
        assert_eq!(small.prune.residual, spec.prune.residual);
        assert_eq!(small.finetune, spec.finetune);
        assert!(!small.is_sweep() && small.name.as_deref() == Some("small"));
        assert!(spec.candidate_spec("nope").is_none());

        // Normalised, the candidates are written out whole and read back the same.
        let back = JobSpec::from_yaml(&spec.normalised_yaml()).unwrap();
        assert_eq!(back.candidates(), spec.candidates());
        assert_eq!(back.sweep, spec.candidates());
    }

    #[test]
    fn a_candidate_may_choose_its_residual_mode() {
        let spec = JobSpec::from_yaml(&format!(
            "{BASE}sweep:\n\
             - {{rate: 0.45, residual: scatter}}\n\
             - {{rate: 0.562, policy: global, target: flops, residual: group}}\n\
             - {{rate: 0.3}}\n"
        ))
        .unwrap();
        let names: Vec<String> = spec.candidates().into_iter().map(|c| c.name.unwrap()).collect();
        assert_eq!(names, ["scop-0.45-scatter", "scop-flops-0.562-group", "scop-0.3"]);
        let residual = |name: &str| spec.candidate_spec(name).unwrap().prune.residual;
        assert_eq!(residual("scop-0.45-scatter"), ResidualMode::Scatter);
        assert_eq!(residual("scop-flops-0.562-group"), ResidualMode::Group);
        // Silent, it takes the spec's (`group` in BASE).
        assert_eq!(residual("scop-0.3"), ResidualMode::Group);
        let back = JobSpec::from_yaml(&spec.normalised_yaml()).unwrap();
        assert_eq!(back.candidates(), spec.candidates());

        let err = JobSpec::from_yaml(&format!("{BASE}sweep: [{{rate: 0.2, residual: sideways}}]\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sweep[0].residual"), "{err}");
    }

    #[test]
    fn a_sweep_without_scop_candidates_needs_no_knockoff() {
        let spec = JobSpec::from_yaml(&format!(
            "{BASE}sweep: [{{criterion: l1, rate: 0.5}}, {{criterion: l2, rate: 0.5}}]\n"
        ))
        .unwrap();
        assert!(!spec.needs_knockoff());
    }

    #[test]
    fn bad_candidates_are_named_by_their_field() {
        let err = JobSpec::from_yaml(&format!(
            "{BASE}sweep:\n\
             - {{rate: 1.5}}\n\
             - {{name: a, rate: 0.1}}\n\
             - {{name: a, rate: 0.2}}\n\
             - {{name: ../up, rate: 0.2}}\n\
             - {{criterion: l1, rate: 0.2, target: params}}\n"
        ))
        .unwrap_err()
        .to_string();
        for expected in [
            "sweep[0].rate: must be in [0, 1), got 1.5",
            "sweep[2].name: \"a\" names two candidates",
            "sweep[3].name: must be 1 to 64",
            "sweep[4].target: applies only to `policy: global`",
        ] {
            assert!(err.contains(expected), "{expected} missing from: {err}");
        }
        let long = "n".repeat(100);
        let err = JobSpec::from_yaml(&format!("name: {long}\n{BASE}sweep: [{{name: {long}, rate: 0.2}}]\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sweep[0].name: with the spec's name the branch is named by 201 characters"),
            "{err}"
        );
        let err = JobSpec::from_yaml(&format!("{BASE}sweep: [{{criterion: magic, rate: 0.2}}]\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sweep[0].criterion"), "{err}");
    }
}
