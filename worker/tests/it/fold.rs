//! Folding every BN into its conv for inference computes what the eval-mode
//! forward computes: for both block families and both stems, dense and pruned
//! in every residual mode, contiguous, channels-last, on oneDNN's blocked
//! tensors (where the network can run there) and in bf16.

use scop_core::arch::ArchDesc;
use scop_core::plan::Plan;
use scop_core::score::random_scores;
use scop_core::spec::{PolicyKind, PruneSpec, ResidualMode};
use scop_worker::models::{Folded, ResNet};
use scop_worker::prune::apply_plan;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::prune_equivalence::{max_abs, random_dense, randomise_bn};

/// The folded forward's logits against the eval-mode forward's, within `tolerance`
/// of the logits' scale.
fn assert_folded_matches(model: &ResNet, x: &Tensor, tolerance: f64, what: &str) {
    assert_same_logits(model, &model.fold_batch_norm().unwrap(), x, tolerance, what);
}

fn assert_same_logits(model: &ResNet, folded: &Folded<'_>, x: &Tensor, tolerance: f64, what: &str) {
    let want = model.f_forward_t(x, false).unwrap();
    let got = folded.f_forward(x).unwrap();
    assert!(!got.requires_grad(), "{what}: the folded forward recorded a gradient");
    assert_eq!(got.kind(), Kind::Float, "{what}: logits in fp32");
    let scale = max_abs(&want).max(1.0);
    let diff = max_abs(&(&want - &got));
    assert!(diff <= tolerance * scale, "{what}: folded differs by {diff} (scale {scale})");
}

/// The folded network on oneDNN's blocked tensors computes the same logits; a
/// network that scatters into its residual is refused, saying why.
fn assert_blocked_matches(model: &ResNet, x: &Tensor, what: &str) {
    let folded = model.fold_batch_norm().unwrap();
    if model.desc().blocks.iter().any(|b| b.scatter().is_some()) {
        let why = folded.blocked_refusal().unwrap_or_default();
        assert!(why.contains("residual: scatter"), "{what}: refusal {why:?}");
        let err = folded.into_blocked().unwrap_err().to_string();
        assert!(err.contains("blocked layout"), "{what}: {err}");
        return;
    }
    assert_eq!(folded.blocked_refusal(), None, "{what}");
    let blocked = folded.into_blocked().unwrap();
    assert!(blocked.is_blocked());
    assert_same_logits(model, &blocked, x, 1e-5, &format!("{what}, blocked"));
}

/// The dense network and its three pruned variants, BN statistics randomised.
fn variants(arch: &str, seed: u64) -> (ArchDesc, Vec<(String, ResNet, VarStore)>) {
    let (desc, dense, vs) = random_dense(arch, seed);
    let scores = random_scores(&desc, seed);
    let mut out = Vec::new();
    for residual in [ResidualMode::Scatter, ResidualMode::Keep, ResidualMode::Group] {
        let prune = PruneSpec { rate: 0.45, policy: PolicyKind::Global, residual, ..PruneSpec::default() };
        let plan = Plan::decide(&desc, &scores, &prune, 32).unwrap();
        let (model, pruned_vs) = apply_plan(&dense, &vs, &plan).unwrap();
        out.push((format!("{arch} {residual:?}"), model, pruned_vs));
    }
    out.insert(0, (format!("{arch} dense"), dense, vs));
    (desc, out)
}

fn check(arch: &str, seed: u64) {
    let (desc, mut variants) = variants(arch, seed);
    let x = Tensor::randn([2, i64::from(desc.in_channels), 32, 32], (Kind::Float, Device::Cpu));
    for (what, model, vs) in &mut variants {
        assert_folded_matches(model, &x, 1e-5, what);
        assert_blocked_matches(model, &x, what);
        model.use_channels_last(vs).unwrap();
        assert_folded_matches(model, &x, 1e-5, &format!("{what}, channels-last"));
        // The blocked layout starts from the weights as they are, channels-last or not.
        assert_blocked_matches(model, &x, &format!("{what}, channels-last"));
        model.use_contiguous(vs).unwrap();
        model.use_bf16();
        // bf16 keeps about 3 significant digits, and the folded weights round differently.
        assert_folded_matches(model, &x, 5e-2, &format!("{what}, bf16"));
        let why = model.fold_batch_norm().unwrap().blocked_refusal().unwrap_or_default();
        assert!(why.contains("bf16"), "{what}: a bf16 network runs blocked? {why:?}");
    }
}

#[test]
fn folded_equals_eval_mode_for_resnet20() {
    check("resnet20", 1);
}

#[test]
fn folded_equals_eval_mode_for_resnet18() {
    check("resnet18", 2);
}

#[test]
fn folded_equals_eval_mode_for_resnet50() {
    check("resnet50", 3);
}

#[test]
fn a_fold_is_a_snapshot_of_the_statistics_it_was_made_from() {
    let (desc, variants) = variants("resnet20", 4);
    let (_, model, vs) = &variants[0];
    let x = Tensor::randn([2, i64::from(desc.in_channels), 32, 32], (Kind::Float, Device::Cpu));
    let before = model.fold_batch_norm().unwrap();
    let old = before.f_forward(&x).unwrap();
    randomise_bn(vs);
    // The old fold still computes the old network; a new fold follows the change.
    assert!(max_abs(&(&before.f_forward(&x).unwrap() - &old)) == 0.0);
    assert!(max_abs(&(&model.fold_batch_norm().unwrap().f_forward(&x).unwrap() - &old)) > 1e-3);
    assert_folded_matches(model, &x, 1e-5, "resnet20 after new statistics");
}
