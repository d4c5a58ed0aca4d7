//! The stages of a job and the order a spec implies:
//! `pretrain? → knockoff|score → decide → finetune → export`, or for a sweep
//! `pretrain? → knockoff? → sweep`, whose candidates each run as a branch:
//! `score? → decide → finetune → export`.
//!
//! The one place stage names are written. The coordinator stores and schedules
//! [`Stage`]s, the worker runs them and names their directories after them, and
//! `scopctl` prints them; each converts to and from `scop.v1.Stage` at its edge.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::spec::JobSpec;

/// One stage of a job, in running order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Pretrain,
    Knockoff,
    /// Scores every channel by a criterion that needs no knockoff (`prune.criterion`
    /// other than `scop`); runs instead of `knockoff`.
    Score,
    Decide,
    Finetune,
    Export,
    /// A sweep's last stage, run by the coordinator: one branch job per
    /// candidate, each deciding, finetuning and exporting; it ends when they all have.
    Sweep,
}

impl Stage {
    /// Every stage, in running order.
    pub const ALL: [Stage; 7] = [
        Stage::Pretrain,
        Stage::Knockoff,
        Stage::Score,
        Stage::Decide,
        Stage::Finetune,
        Stage::Export,
        Stage::Sweep,
    ];

    /// The stage's name as stored, logged, printed and used for its directory.
    pub const fn as_str(self) -> &'static str {
        match self {
            Stage::Pretrain => "pretrain",
            Stage::Knockoff => "knockoff",
            Stage::Score => "score",
            Stage::Decide => "decide",
            Stage::Finetune => "finetune",
            Stage::Export => "export",
            Stage::Sweep => "sweep",
        }
    }

    /// The inverse of [`Stage::as_str`].
    pub fn parse(name: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Stages that run on worker ranks; `decide` runs where the plan is decided
    /// (inside the coordinator, or in `scop-worker run`'s own process), and
    /// `sweep` only waits for its branches.
    pub fn runs_on_workers(self) -> bool {
        !matches!(self, Stage::Decide | Stage::Sweep)
    }

    /// Whether the stage sends the score statistics `decide` ranks channels by.
    pub fn scores_channels(self) -> bool {
        matches!(self, Stage::Knockoff | Stage::Score)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stage names its directory in the job directory; [`crate::job_dir::JobDir`]
/// takes a `Stage` or its name.
impl AsRef<str> for Stage {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::str::FromStr for Stage {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Stage::parse(name).ok_or_else(|| {
            let names: Vec<&str> = Stage::ALL.iter().map(|s| s.as_str()).collect();
            format!("unknown stage {name:?}; expected one of {}", names.join(", "))
        })
    }
}

/// The stages one job runs, decided from its spec: a line, each stage
/// depending on the one before it. At most one stage of the line scores the
/// channels ([`StagePlan::scoring`]): `knockoff` for `prune.criterion: scop`,
/// `score` for every other criterion. A sweep's line ends in `sweep`, which
/// forks one branch per candidate ([`StagePlan::branch`]); a branch's line
/// starts after the stages its sweep ran for it, so the graph of a sweep is
/// its own line, then its branches' lines side by side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagePlan(Vec<Stage>);

impl StagePlan {
    /// `pretrain` only when the spec asks for it; `knockoff` when the criterion
    /// needs it, else `score`; then decide, finetune and export.
    /// For a sweep: `pretrain` when asked for, `knockoff` when a candidate
    /// needs it, then `sweep`.
    pub fn for_spec(spec: &JobSpec) -> Self {
        let mut stages = Vec::with_capacity(5);
        if spec.pretrain.is_some() {
            stages.push(Stage::Pretrain);
        }
        if spec.is_sweep() {
            if spec.needs_knockoff() {
                stages.push(Stage::Knockoff);
            }
            stages.push(Stage::Sweep);
            return StagePlan(stages);
        }
        let scoring = if spec.prune.criterion.needs_knockoff() { Stage::Knockoff } else { Stage::Score };
        stages.extend([scoring, Stage::Decide, Stage::Finetune, Stage::Export]);
        StagePlan(stages)
    }

    /// The line of a sweep's branch, from the branch's spec
    /// ([`JobSpec::candidate_spec`]): the candidate's line without the stages
    /// the sweep ran for every branch (`pretrain`, `knockoff`), whose outputs
    /// the branch starts from.
    pub fn branch(candidate: &JobSpec) -> Self {
        let shared = [Stage::Pretrain, Stage::Knockoff];
        StagePlan(Self::for_spec(candidate).0.into_iter().filter(|s| !shared.contains(s)).collect())
    }

    /// The stages of a sweep's line whose outputs its branches start from
    /// (`pretrain`, `knockoff`: every stage before `sweep`); empty for a line
    /// without them.
    pub fn shared_with_branches(&self) -> Vec<Stage> {
        self.0.iter().copied().filter(|s| s.runs_on_workers()).collect()
    }

    /// Whether the line runs `stage` itself.
    pub fn contains(&self, stage: Stage) -> bool {
        self.0.contains(&stage)
    }

    /// The stage whose score statistics `decide` uses and whose weights finetune
    /// prunes: `knockoff` or `score`. A branch of a sweep that scores by
    /// knockoff uses its sweep's `knockoff` stage, which its own line lacks.
    pub fn scoring(&self) -> Stage {
        self.0.iter().copied().find(|s| s.scores_channels()).unwrap_or(Stage::Knockoff)
    }

    pub fn stages(&self) -> &[Stage] {
        &self.0
    }

    pub fn first(&self) -> Stage {
        self.0[0]
    }

    pub fn last(&self) -> Stage {
        self.0[self.0.len() - 1]
    }

    /// The stage after `stage`, or `None` after the last one.
    pub fn next(&self, stage: Stage) -> Option<Stage> {
        let at = self.0.iter().position(|s| *s == stage)?;
        self.0.get(at + 1).copied()
    }

    /// The stage whose output `stage` starts from: the one before it in the line.
    pub fn previous(&self, stage: Stage) -> Option<Stage> {
        let at = self.0.iter().position(|s| *s == stage)?;
        at.checked_sub(1).map(|i| self.0[i])
    }

    /// Stored form: the names joined by commas.
    pub fn to_stored(&self) -> String {
        let names: Vec<&str> = self.0.iter().map(|s| s.as_str()).collect();
        names.join(",")
    }

    /// Parses [`StagePlan::to_stored`]; `None` for anything else.
    pub fn from_stored(text: &str) -> Option<Self> {
        let stages: Option<Vec<Stage>> = text.split(',').map(Stage::parse).collect();
        stages.filter(|s| !s.is_empty()).map(StagePlan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(pretrain: bool) -> JobSpec {
        spec_with(pretrain, "scop")
    }

    fn spec_with(pretrain: bool, criterion: &str) -> JobSpec {
        let pretrain = if pretrain { "pretrain: {epochs: 1, batch_size: 8}\n" } else { "" };
        JobSpec::from_yaml(&format!(
            "model: {{arch: resnet20, num_classes: 10}}\n\
             data: {{format: idx, root: data}}\n{pretrain}\
             knockoff: {{epochs: 1, batch_size: 8}}\n\
             prune: {{rate: 0.5, criterion: {criterion}}}\n\
             finetune: {{epochs: 1, batch_size: 8}}\n"
        ))
        .unwrap()
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_listed() {
        for stage in Stage::ALL {
            assert_eq!(Stage::parse(stage.as_str()), Some(stage));
            assert_eq!(stage.as_str().parse::<Stage>(), Ok(stage));
        }
        assert_eq!(
            "prune".parse::<Stage>().unwrap_err(),
            "unknown stage \"prune\"; expected one of pretrain, knockoff, score, decide, finetune, export, sweep"
        );
        assert!(!Stage::Decide.runs_on_workers() && Stage::Export.runs_on_workers());
        assert!(!Stage::Sweep.runs_on_workers());
    }

    #[test]
    fn the_spec_decides_whether_pretrain_runs() {
        let with = StagePlan::for_spec(&spec(true));
        assert_eq!(with.to_stored(), "pretrain,knockoff,decide,finetune,export");
        assert_eq!((with.first(), with.last()), (Stage::Pretrain, Stage::Export));
        let without = StagePlan::for_spec(&spec(false));
        assert_eq!(without.to_stored(), "knockoff,decide,finetune,export");
        assert_eq!(without.next(Stage::Decide), Some(Stage::Finetune));
        assert_eq!(without.next(Stage::Export), None);
        assert_eq!(without.previous(Stage::Knockoff), None);
        assert_eq!(with.previous(Stage::Knockoff), Some(Stage::Pretrain));
        assert_eq!(StagePlan::from_stored(&with.to_stored()), Some(with.clone()));
        assert_eq!(StagePlan::from_stored("knockoff,bogus"), None);
        assert_eq!((with.scoring(), without.scoring()), (Stage::Knockoff, Stage::Knockoff));
    }

    #[test]
    fn criteria_without_knockoff_run_the_score_stage_instead() {
        for criterion in crate::spec::Criterion::ALL {
            let plan = StagePlan::for_spec(&spec_with(true, criterion.as_str()));
            let expected = if criterion.needs_knockoff() {
                "pretrain,knockoff,decide,finetune,export"
            } else {
                "pretrain,score,decide,finetune,export"
            };
            assert_eq!(plan.to_stored(), expected, "{criterion:?}");
            assert_eq!(plan.previous(Stage::Decide), Some(plan.scoring()), "{criterion:?}");
            assert_eq!(StagePlan::from_stored(expected), Some(plan));
        }
        assert!(Stage::Score.runs_on_workers() && Stage::Score.scores_channels());
        assert!(!Stage::Finetune.scores_channels());
    }

    #[test]
    fn a_sweep_runs_the_shared_stages_then_one_line_per_candidate() {
        let sweep = |candidates: &str| {
            JobSpec::from_yaml(&format!(
                "model: {{arch: resnet20, num_classes: 10}}\n\
                 data: {{format: idx, root: data}}\n\
                 pretrain: {{epochs: 1, batch_size: 8}}\n\
                 finetune: {{epochs: 1, batch_size: 8}}\n\
                 sweep: {candidates}\n"
            ))
            .unwrap()
        };
        let mixed = sweep("[{criterion: scop, rate: 0.45}, {criterion: l1, rate: 0.45}]");
        assert_eq!(StagePlan::for_spec(&mixed).to_stored(), "pretrain,knockoff,sweep");
        assert_eq!(StagePlan::for_spec(&mixed).shared_with_branches(), [Stage::Pretrain, Stage::Knockoff]);
        let scop = StagePlan::branch(&mixed.candidate_spec("scop-0.45").unwrap());
        assert_eq!(scop.to_stored(), "decide,finetune,export");
        assert!(!scop.contains(Stage::Knockoff));
        assert_eq!(scop.scoring(), Stage::Knockoff, "a SCOP branch decides from its sweep's knockoff");
        let l1 = StagePlan::branch(&mixed.candidate_spec("l1-0.45").unwrap());
        assert_eq!(l1.to_stored(), "score,decide,finetune,export");
        assert_eq!(l1.scoring(), Stage::Score);

        let without_knockoff = sweep("[{criterion: l1, rate: 0.45}, {criterion: random, rate: 0.7}]");
        assert_eq!(StagePlan::for_spec(&without_knockoff).to_stored(), "pretrain,sweep");
    }
}
