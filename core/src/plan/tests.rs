//! Tests of the plan policies and of applying a plan to a description.

use super::*;
use crate::score::random_scores;
use crate::spec::{GlobalTarget, ResidualMode};

fn spec(policy: PolicyKind, rate: f64) -> PruneSpec {
    PruneSpec { rate, policy, ..PruneSpec::default() }
}

fn counts(plan: &Plan) -> Vec<usize> {
    plan.units.iter().map(|u| u.kept.len()).collect()
}

#[test]
fn layer_policy_matches_the_reference_counts() {
    let desc = ArchDesc::new("resnet50", 10, 3).unwrap();
    let plan = Plan::decide(&desc, &random_scores(&desc, 1), &spec(PolicyKind::Layer, 0.45), 32).unwrap();
    // 64 - floor(28.8) = 36, 256 - floor(115.2) = 141, 512 - 230 = 282, ...
    assert_eq!(counts(&plan)[..3], [36, 36, 141]);
    assert_eq!(counts(&plan)[45..], [282, 282, 1127]);
    // The figure PyTorch gives for the reference's scatter-pruned ResNet-50.
    assert_eq!(plan.summary.params_before, 23_528_522);
    assert_eq!(plan.summary.params_after, 10_180_582);
    assert!(plan.units.iter().all(|u| u.kept.windows(2).all(|w| w[0] < w[1])));
}

#[test]
fn kept_channels_are_the_best_scores_with_ties_to_the_lower_index() {
    let desc = ArchDesc::new("resnet20", 10, 3).unwrap();
    let mut scores: ScoreMap =
        desc.units().map(|u| (u.name.clone(), vec![0.0; u.dense_out_channels as usize])).collect();
    let mut first = vec![0.0f32; 16];
    first[15] = 0.9;
    first[3] = -1.0;
    first[7] = 0.5;
    scores.insert("layer1.0.conv1".into(), first);
    let plan = Plan::decide(&desc, &scores, &spec(PolicyKind::Layer, 0.75), 32).unwrap();
    // 16 - floor(12) = 4 kept: 15 and 7 by score, then 0 and 1 win the tie at 0.
    assert_eq!(plan.units[0].kept, [0, 1, 7, 15]);
    // All-equal scores keep the lowest indices.
    assert_eq!(plan.units[1].kept, [0, 1, 2, 3]);
    assert_eq!(plan, Plan::decide(&desc, &scores, &spec(PolicyKind::Layer, 0.75), 32).unwrap());
}

#[test]
fn min_channels_and_round_to_bound_the_kept_count() {
    let desc = ArchDesc::new("resnet20", 10, 3).unwrap();
    let scores = random_scores(&desc, 3);
    let check = |rate: f64, min_channels: u32, round_to: u32, expected: [usize; 3]| {
        let prune = PruneSpec { min_channels, round_to, ..spec(PolicyKind::Layer, rate) };
        let plan = Plan::decide(&desc, &scores, &prune, 32).unwrap();
        // First unit of each stage: 16, 32 and 64 dense channels.
        let got = [plan.units[0].kept.len(), plan.units[6].kept.len(), plan.units[12].kept.len()];
        assert_eq!(got, expected, "rate {rate}, min {min_channels}, round {round_to}");
    };
    check(0.9, 1, 1, [2, 4, 7]);
    check(0.9, 5, 1, [5, 5, 7]);
    // 9, 18 and 36 kept round to the nearest multiples of 8; 36 is half-way and rounds up.
    check(0.45, 1, 8, [8, 16, 40]);
    // 7, 13 and 26 kept: 26 rounds down to 24.
    check(0.6, 1, 8, [8, 16, 24]);
    // 12 kept of 16 is half-way and rounds up; 23 → 24, 45 → 48.
    check(0.3, 1, 8, [16, 24, 48]);
    check(0.9, 1, 8, [8, 8, 8]);
    // min_channels 10 is kept whole, so the multiple above it: 16.
    check(0.9, 10, 8, [16, 16, 16]);
    check(0.0, 1, 1, [16, 32, 64]);
}

#[test]
fn residual_keep_leaves_the_last_unit_of_every_block_whole() {
    let desc = ArchDesc::new("resnet50", 10, 3).unwrap();
    let scores = random_scores(&desc, 1);
    for policy in [PolicyKind::Layer, PolicyKind::Global] {
        let prune = PruneSpec { residual: ResidualMode::Keep, ..spec(policy, 0.3) };
        let plan = Plan::decide(&desc, &scores, &prune, 32).unwrap();
        for (unit, up) in desc.units().zip(&plan.units) {
            if desc.is_residual_unit(&unit.name) {
                assert_eq!(up.kept.len() as u32, unit.dense_out_channels, "{}", unit.name);
            }
        }
        let pruned = desc.pruned(&plan).unwrap();
        assert!(pruned.blocks.iter().all(|b| b.scatter().is_none()));
    }
}

#[test]
fn global_policy_meets_its_target_tightly() {
    let desc = ArchDesc::new("resnet56", 10, 3).unwrap();
    let scores = random_scores(&desc, 11);
    for (target, round_to) in [(GlobalTarget::Params, 1), (GlobalTarget::Flops, 1), (GlobalTarget::Flops, 4)]
    {
        let prune = PruneSpec { target, round_to, ..spec(PolicyKind::Global, 0.5) };
        let plan = Plan::decide(&desc, &scores, &prune, 32).unwrap();
        let reduction = match target {
            GlobalTarget::Params => plan.summary.params_reduction(),
            GlobalTarget::Flops => plan.summary.flops_reduction(),
        };
        assert!((0.5..0.51).contains(&reduction), "{target:?}/{round_to}: {reduction}");
        for (u, up) in desc.units().zip(&plan.units) {
            let n = up.kept.len() as u32;
            assert!(n == u.dense_out_channels || n.is_multiple_of(round_to), "{}: {n}", u.name);
        }
    }
}

#[test]
fn global_policy_prunes_the_channels_the_knockoffs_beat_first() {
    let desc = ArchDesc::new("resnet20", 10, 3).unwrap();
    let mut scores = random_scores(&desc, 5);
    for values in scores.values_mut() {
        values.iter_mut().for_each(|v| *v = 0.5 + v.abs());
    }
    // Raw magnitudes are tiny, but every channel here lost against its knockoff.
    scores.insert("layer2.1.conv1".into(), (0..32).map(|i| -1e-3 * (i as f32 + 1.0)).collect());
    let prune = PruneSpec { target: GlobalTarget::Params, ..spec(PolicyKind::Global, 0.01) };
    let plan = Plan::decide(&desc, &scores, &prune, 32).unwrap();
    for up in &plan.units {
        if up.name == "layer2.1.conv1" {
            assert!(up.kept.len() < 32);
            // The most negative (highest indices) go first.
            assert_eq!(up.kept, (0..up.kept.len() as u32).collect::<Vec<_>>());
        } else {
            assert_eq!(up.kept.len() as u32, up.channels, "{}", up.name);
        }
    }
}

#[test]
fn unreachable_targets_and_bad_plans_are_errors() {
    let desc = ArchDesc::new("resnet50", 10, 3).unwrap();
    let scores = random_scores(&desc, 1);
    let prune = PruneSpec { target: GlobalTarget::Params, ..spec(PolicyKind::Global, 0.99) };
    let err = Plan::decide(&desc, &scores, &prune, 32).unwrap_err().to_string();
    assert!(err.starts_with("prune.rate: a params reduction of 0.99 is out of reach; at most 0.8"), "{err}");

    let err = Plan::decide(&desc, &scores, &spec(PolicyKind::Layer, 1.5), 32).unwrap_err().to_string();
    assert_eq!(err, "prune.rate: must be in [0, 1), got 1.5");

    let mut plan = Plan::decide(&desc, &scores, &spec(PolicyKind::Layer, 0.45), 32).unwrap();
    let back = Plan::from_json(&plan.to_json(), "plan.json").unwrap();
    assert_eq!(back, plan);
    plan.units[2].kept = vec![5, 3];
    plan.units[4].name = "layer1.1.convX".into();
    let err = desc.pruned(&plan).unwrap_err().to_string();
    assert_eq!(
        err,
        "plan.units[2].kept: layer1.0.conv3: must be 1 to 256 ascending channel indices below 256\n\
         plan.units[4].name: expected \"layer1.1.conv2\", got \"layer1.1.convX\""
    );
    plan.arch = "resnet18".into();
    let err = desc.pruned(&plan).unwrap_err().to_string();
    assert_eq!(err, "plan.arch: must be \"resnet50\" to prune this network, got \"resnet18\"");
}

#[test]
fn pruned_descriptions_chain_and_scatter() {
    let desc = ArchDesc::new("resnet18", 10, 3).unwrap();
    let plan = Plan::decide(&desc, &random_scores(&desc, 2), &spec(PolicyKind::Layer, 0.5), 32).unwrap();
    let pruned = desc.pruned(&plan).unwrap();
    pruned.validate().unwrap();
    assert_eq!(ArchDesc::from_json(&pruned.to_json(), "arch.json").unwrap(), pruned);
    let block = &pruned.blocks[2];
    assert_eq!((block.units[0].in_channels, block.units[0].out_channels), (64, 64));
    assert_eq!((block.units[1].in_channels, block.units[1].out_channels), (64, 64));
    assert_eq!(block.out_channels, 128);
    assert_eq!(block.scatter(), Some(&plan.units[5].kept[..]));
    let err = Plan::decide(&pruned, &random_scores(&desc, 2), &spec(PolicyKind::Layer, 0.5), 32).unwrap_err();
    assert_eq!(err.to_string(), "arch: resnet18 is already pruned; plans start from the dense network");
}

#[test]
fn residual_groups_keep_one_set_of_channels_per_stream() {
    for arch in ["resnet20", "resnet50"] {
        let desc = ArchDesc::new(arch, 10, 3).unwrap();
        let scores = random_scores(&desc, 4);
        for policy in [PolicyKind::Layer, PolicyKind::Global] {
            let prune = PruneSpec { residual: ResidualMode::Group, ..spec(policy, 0.45) };
            let plan = Plan::decide(&desc, &scores, &prune, 32).unwrap();
            let streams = desc.residual_streams();
            let scored = streams.iter().filter(|s| !s.members.is_empty()).count();
            assert_eq!(plan.groups.len(), scored, "{arch} {policy:?}");
            for group in &plan.groups {
                assert!(group.kept.len() < group.channels as usize, "{arch} {policy:?}: {}", group.writer);
                for member in &group.members {
                    assert_eq!(plan.unit(member).unwrap().kept, group.kept, "{member}");
                }
            }
            let pruned = desc.pruned(&plan).unwrap();
            pruned.validate().unwrap();
            assert_eq!(ArchDesc::from_json(&pruned.to_json(), "arch.json").unwrap(), pruned);
            assert!(pruned.blocks.iter().all(|b| b.scatter().is_none()));
            let last = plan.groups.last().unwrap();
            assert_eq!(pruned.classifier.in_features as usize, last.kept.len());
            assert_eq!(pruned.cost(32).params, plan.summary.params_after);
            // The stem writes the first stream of a BasicBlock network only.
            assert_eq!(pruned.stem.kept.is_some(), arch == "resnet20");
        }
    }
}

#[test]
fn a_group_drops_the_channels_its_members_score_low_together() {
    let desc = ArchDesc::new("resnet20", 10, 3).unwrap();
    let mut scores: ScoreMap =
        desc.units().map(|u| (u.name.clone(), vec![1.0; u.dense_out_channels as usize])).collect();
    // Channel 5 loses in every member; channel 9 loses badly in one member only,
    // whose raw scale is 100× the others': normalised, it still counts once.
    for (i, member) in ["layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2"].into_iter().enumerate() {
        let values = scores.get_mut(member).unwrap();
        values[5] = -0.5;
        if i == 0 {
            values.iter_mut().for_each(|v| *v *= 100.0);
            values[9] = -20.0;
        }
    }
    let prune = PruneSpec { residual: ResidualMode::Group, ..spec(PolicyKind::Layer, 1.0 / 16.0) };
    let plan = Plan::decide(&desc, &scores, &prune, 32).unwrap();
    let first = &plan.groups[0];
    assert_eq!((first.writer.as_str(), first.kept.len()), ("conv1", 15));
    assert!(!first.kept.contains(&5) && first.kept.contains(&9), "{:?}", first.kept);
}

#[test]
fn group_plans_meet_a_flops_target_and_disagreeing_members_are_refused() {
    let desc = ArchDesc::new("resnet56", 10, 3).unwrap();
    let scores = random_scores(&desc, 12);
    for round_to in [1, 8] {
        let prune = PruneSpec { residual: ResidualMode::Group, round_to, ..spec(PolicyKind::Global, 0.5) };
        let plan = Plan::decide(&desc, &scores, &prune, 32).unwrap();
        let reduction = plan.summary.flops_reduction();
        assert!((0.5..0.52).contains(&reduction), "round_to {round_to}: {reduction}");
        for up in &plan.units {
            let n = up.kept.len() as u32;
            assert!(n == up.channels || n.is_multiple_of(round_to), "{}: {n}", up.name);
        }
    }
    let prune = PruneSpec { residual: ResidualMode::Group, ..spec(PolicyKind::Layer, 0.45) };
    let mut plan = Plan::decide(&desc, &scores, &prune, 32).unwrap();
    plan.units[3].kept = (0..9).collect();
    let err = desc.pruned(&plan).unwrap_err().to_string();
    assert_eq!(
        err,
        "plan.units[3].kept: layer1.1.conv2: must keep the channels layer1.0.conv2 keeps: both add into \
         the residual stream of conv1 (residual: group)"
    );
    let mut pruned = desc.pruned(&Plan::decide(&desc, &scores, &prune, 32).unwrap()).unwrap();
    pruned.blocks[1].kept = None;
    let err = ArchDesc::from_json(&pruned.to_json(), "arch.json").unwrap_err().to_string();
    assert!(err.starts_with("arch.json: blocks[1].kept: must equal the channels of the stream"), "{err}");
}
