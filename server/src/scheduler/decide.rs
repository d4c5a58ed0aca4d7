//! The `decide` stage, run inside the coordinator: the final score statistics of
//! the scoring stage's attempt that succeeded in (the last knockoff epoch, or
//! the one pass of the `score` stage for criteria other than SCOP),
//! `scop-core`'s plan out, as the persisted record and as `plan.json`.

use std::path::Path;

use scop_core::job_dir::JobDir;
use scop_core::plan::{Plan as CorePlan, decide_for_spec};
use scop_core::spec::JobSpec;
use scop_core::stats::ScoreStatistics;

use crate::domain::{Attempt, Plan, PlanGroup, PlanUnit, ScoreSummary, UnitStatistics};
use crate::error::{Error, Result};

/// Decides the plan of `job_id` from the statistics of the scoring stage's epoch `epoch`.
/// Returns the core plan (what `plan.json` holds) and the inspectable record.
pub fn decide(
    job_id: &str,
    spec: &JobSpec,
    epoch: u32,
    units: Vec<UnitStatistics>,
    now_ms: i64,
) -> Result<(CorePlan, Plan)> {
    let stats = ScoreStatistics { epoch, units };
    if let Some(problem) = stats.check() {
        return Err(Error::Decide(format!("score statistics of epoch {epoch}: {problem}")));
    }
    let plan = decide_for_spec(spec, &stats).map_err(|e| Error::Decide(e.to_string()))?;
    let scores = stats.scores();
    let units = plan
        .units
        .iter()
        .map(|u| {
            let unit_scores: Vec<f64> =
                scores.get(&u.name).map(|s| s.iter().map(|v| f64::from(*v)).collect()).unwrap_or_default();
            let kept: Vec<bool> = (0..u.channels).map(|c| u.kept.binary_search(&c).is_ok()).collect();
            let score = ScoreSummary::of(&unit_scores, &kept).ok_or_else(|| {
                Error::Decide(format!("unit {}: no scores or no kept channel to summarise", u.name))
            })?;
            Ok(PlanUnit {
                unit: u.name.clone(),
                channels_before: u.channels,
                channels_after: u32::try_from(u.kept.len()).unwrap_or(u32::MAX),
                score,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let record = Plan {
        job_id: job_id.to_owned(),
        decided_at_ms: now_ms,
        policy: format!("{:?}", spec.prune.policy).to_lowercase(),
        criterion: spec.prune.criterion.as_str().to_owned(),
        rate: spec.prune.rate,
        statistics_epoch: epoch,
        units,
        totals: Some(plan.summary),
        residual: format!("{:?}", spec.prune.residual).to_lowercase(),
        round_to: plan.prune.round_to,
        groups: plan
            .groups
            .iter()
            .map(|g| PlanGroup {
                writer: g.writer.clone(),
                channels_before: g.channels,
                channels_after: u32::try_from(g.kept.len()).unwrap_or(u32::MAX),
                members: g.members.clone(),
            })
            .collect(),
    };
    Ok((plan, record))
}

/// Writes the plan where the finetune stage reads it ([`JobDir::plan`]), atomically
/// and durably: finetune never reads half a plan.
pub fn write_plan(output: &Path, plan: &CorePlan) -> Result<()> {
    JobDir::new(output).write_plan(plan).map_err(|e| match e {
        scop_core::Error::Io { path, source } => Error::Io { path, source },
        other => Error::Decide(other.to_string()),
    })
}

/// The scoring stage's attempt whose statistics `decide` may use, and the
/// checks on what arrived: only the final epoch (`final_epoch`: the spec's
/// `knockoff.epochs`, or 1 for `score`) of the attempt of `stage` that
/// succeeded counts. `received` is every (epoch, attempt id) the store holds.
/// The error says what is missing.
pub fn check_final_statistics(
    stage: crate::domain::Stage,
    final_epoch: u32,
    succeeded: Option<&Attempt>,
    received: &[(u32, String)],
) -> std::result::Result<(), String> {
    let Some(attempt) = succeeded else {
        return Err(format!("decide: no {stage} attempt succeeded, so there are no final score statistics"));
    };
    let epochs: Vec<String> = received.iter().map(|(e, _)| e.to_string()).collect();
    let received_text = if epochs.is_empty() { "none".to_owned() } else { epochs.join(", ") };
    match received.iter().find(|(epoch, _)| *epoch == final_epoch) {
        None => Err(format!(
            "decide: the score statistics of the final {stage} epoch {final_epoch} never arrived from attempt {} \
             (epochs received: {received_text}); refusing to prune from an earlier epoch",
            attempt.number
        )),
        Some((_, from)) if *from != attempt.id => Err(format!(
            "decide: the score statistics of the final {stage} epoch {final_epoch} came from a failed attempt, \
             not from attempt {} that succeeded",
            attempt.number
        )),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use scop_core::arch::ArchDesc;

    use super::*;

    const SPEC: &str = "model: {arch: resnet20, num_classes: 10}\n\
        data: {format: idx, root: data}\n\
        knockoff: {epochs: 1, batch_size: 32}\n\
        prune: {rate: 0.5}\n\
        finetune: {epochs: 1, batch_size: 32}\n";

    fn statistics(desc: &ArchDesc) -> Vec<UnitStatistics> {
        let mut units = Vec::new();
        for block in &desc.blocks {
            for unit in &block.units {
                let n = unit.out_channels as usize;
                // Channel c gets β = c/n, so higher channels score higher.
                let beta = (0..n).map(|c| c as f32 / n as f32).collect();
                units.push(UnitStatistics::scop(unit.name.clone(), beta, vec![1.0; n]));
            }
        }
        units
    }

    #[test]
    fn decides_the_same_plan_as_core_and_writes_it() {
        let spec = JobSpec::from_yaml(SPEC).unwrap();
        assert_eq!((spec.in_channels(), spec.input_size()), (1, 32));
        let desc = ArchDesc::new("resnet20", 10, 1).unwrap();
        let units = statistics(&desc);
        let (plan, record) = decide("j1", &spec, 3, units.clone(), 7).unwrap();
        let scores = ScoreStatistics { epoch: 3, units }.scores();
        assert_eq!(plan, CorePlan::decide(&desc, &scores, &spec.prune, 32).unwrap());
        assert_eq!(record.statistics_epoch, 3);
        assert_eq!(record.units.len(), plan.units.len());
        assert!(record.channels_after() < record.channels_before());
        let first = &record.units[0];
        assert!(first.score.pruned_max.unwrap() <= first.score.kept_min);

        let dir = tempfile::tempdir().unwrap();
        write_plan(&dir.path().join("job"), &plan).unwrap();
        assert_eq!(JobDir::new(dir.path().join("job")).read_plan().unwrap(), plan);
    }

    #[test]
    fn a_grouped_plan_records_its_streams_residual_mode_and_rounding() {
        let grouped = SPEC.replace("prune: {rate: 0.5}", "prune: {rate: 0.5, residual: group, round_to: 4}");
        let spec = JobSpec::from_yaml(&grouped).unwrap();
        let desc = ArchDesc::new("resnet20", 10, 1).unwrap();
        let (plan, record) = decide("j1", &spec, 1, statistics(&desc), 0).unwrap();
        assert_eq!((record.residual.as_str(), record.round_to), ("group", 4));
        // ResNet-20: the stem's stream and the two downsample streams.
        assert_eq!(record.groups.len(), 3, "{:?}", record.groups);
        assert_eq!(record.groups.len(), plan.groups.len());
        for (shown, decided) in record.groups.iter().zip(&plan.groups) {
            assert_eq!(shown.writer, decided.writer);
            assert_eq!(shown.channels_after as usize, decided.kept.len());
            assert!(shown.channels_after < shown.channels_before, "{shown:?}");
            assert_eq!(shown.channels_after % 4, 0, "{shown:?}");
            assert!(!shown.members.is_empty());
        }
        assert_eq!(record.groups[0].writer, "conv1");
        // Without groups the record says so.
        let (_, scattered) =
            decide("j1", &JobSpec::from_yaml(SPEC).unwrap(), 1, statistics(&desc), 0).unwrap();
        assert_eq!((scattered.residual.as_str(), scattered.groups.len()), ("scatter", 0));
    }

    #[test]
    fn malformed_statistics_name_the_unit() {
        let spec = JobSpec::from_yaml(SPEC).unwrap();
        let bad = vec![UnitStatistics::scop("layer1.0.conv1", vec![0.5, 2.0], vec![1.0; 2])];
        let error = decide("j1", &spec, 1, bad, 0).unwrap_err().to_string();
        assert!(error.contains("layer1.0.conv1: β must be in [0, 1], got 2"), "{error}");
    }

    #[test]
    fn residual_groups_aggregate_another_criterions_normalised_member_scores() {
        let yaml = SPEC.replace("rate: 0.5", "rate: 0.5, criterion: l1, residual: group");
        let spec = JobSpec::from_yaml(&yaml).unwrap();
        let desc = ArchDesc::new("resnet20", 10, 1).unwrap();
        // The first stream's three members disagree: layer1.0.conv2 prefers the
        // low channels with scores 100× larger, the other two the high ones.
        let units: Vec<UnitStatistics> = desc
            .units()
            .map(|u| {
                let n = u.out_channels as usize;
                let score = (0..n)
                    .map(|c| if u.name == "layer1.0.conv2" { 100.0 * (n - c) as f32 } else { (c + 1) as f32 })
                    .collect();
                UnitStatistics::scored(u.name.clone(), score, vec![1.0; n])
            })
            .collect();
        let (plan, _) = decide("j1", &spec, 1, units, 7).unwrap();
        let stream = plan.groups.iter().find(|g| g.writer == "conv1").expect("the stem's stream is a group");
        assert_eq!(stream.members, ["layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2"]);
        // Normalised per member, two votes of three for the high channels win;
        // summing the raw scores would have kept the low ones.
        assert_eq!(stream.kept, (8..16).collect::<Vec<u32>>());
    }

    fn attempt(id: &str, number: u32) -> Attempt {
        Attempt {
            id: id.into(),
            job_id: "j1".into(),
            stage: crate::domain::Stage::Knockoff,
            number,
            state: crate::domain::AttemptState::Succeeded,
            world_size: 2,
            resume_from: None,
            last_checkpoint: None,
            rendezvous_json: None,
            created_at_ms: 0,
            finished_at_ms: None,
            error: None,
            ranks: Vec::new(),
        }
    }

    #[test]
    fn only_the_final_epoch_of_the_succeeded_attempt_is_decided_from() {
        let second = attempt("a2", 2);
        let check = |succeeded: Option<&Attempt>, received: &[(u32, &str)], expected: Result<(), &str>| {
            let received: Vec<(u32, String)> = received.iter().map(|(e, a)| (*e, (*a).to_owned())).collect();
            match (check_final_statistics(crate::domain::Stage::Knockoff, 3, succeeded, &received), expected)
            {
                (Ok(()), Ok(())) => {}
                (Err(got), Err(want)) => assert!(got.contains(want), "{got:?} lacks {want:?}"),
                (got, want) => panic!("{received:?}: got {got:?}, expected {want:?}"),
            }
        };
        check(Some(&second), &[(1, "a1"), (2, "a2"), (3, "a2")], Ok(()));
        // The final epoch's statistics were lost (a network blip, a full disk).
        check(
            Some(&second),
            &[(1, "a1"), (2, "a2")],
            Err("final knockoff epoch 3 never arrived from attempt 2 (epochs received: 1, 2)"),
        );
        check(Some(&second), &[], Err("(epochs received: none)"));
        // Only a failed attempt got that far.
        check(Some(&second), &[(3, "a1")], Err("came from a failed attempt, not from attempt 2"));
        check(None, &[(3, "a1")], Err("no knockoff attempt succeeded"));
        let score = check_final_statistics(crate::domain::Stage::Score, 1, None, &[]).unwrap_err();
        assert!(score.contains("no score attempt succeeded"), "{score}");
    }

    #[test]
    fn another_criterions_scores_are_decided_from_as_sent() {
        let spec = JobSpec::from_yaml(&SPEC.replace("rate: 0.5", "rate: 0.5, criterion: l1")).unwrap();
        let desc = ArchDesc::new("resnet20", 10, 1).unwrap();
        // Channel c scores -c: the lowest channels are the best, unlike SCOP's β = c/n above.
        let units: Vec<UnitStatistics> = desc
            .units()
            .map(|u| {
                let n = u.out_channels as usize;
                UnitStatistics::scored(u.name.clone(), (0..n).map(|c| -(c as f32)).collect(), vec![1.0; n])
            })
            .collect();
        let (plan, record) = decide("j1", &spec, 1, units, 7).unwrap();
        assert_eq!(record.criterion, "l1");
        let first = &plan.units[0];
        assert_eq!(first.kept, (0..first.kept.len() as u32).collect::<Vec<_>>(), "{}", first.name);
    }
}
