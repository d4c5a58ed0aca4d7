//! Physical pruning equals masking: for random scores, the pruned network in eval
//! mode computes what the dense network computes with the dropped channels zeroed
//! after BN, for every architecture, and its parameter count is the analytic one.
//! Under `residual: group` the masks also zero the dropped channels of every
//! residual stream after the stem's and the shortcuts' BN.

use scop_core::arch::ArchDesc;
use scop_core::plan::Plan;
use scop_core::score::random_scores;
use scop_core::spec::{ARCHS, PolicyKind, PruneSpec, ResidualMode};
use scop_worker::models::{ResNet, count_params};
use scop_worker::prune::apply_plan;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// BN statistics and affine parameters far from their initial values, so that
/// copying the wrong channel would show.
pub fn randomise_bn(vs: &VarStore) {
    // Sorted, so that the same seed gives the same values in every run.
    let vars: std::collections::BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    tch::no_grad(|| {
        for (name, var) in vars {
            let mut var = var.shallow_clone();
            let n = var.size()[0];
            let opts = (Kind::Float, var.device());
            if name.ends_with("running_var") || (name.contains("bn") && name.ends_with("weight")) {
                var.copy_(&(Tensor::rand([n], opts) + 0.5));
            } else if name.ends_with("running_mean") || (name.contains("bn") && name.ends_with("bias")) {
                var.copy_(&(Tensor::randn([n], opts) * 0.2));
            } else if name.contains("downsample.1") && !name.ends_with("num_batches_tracked") {
                var.copy_(&(Tensor::rand([n], opts) + 0.5));
            }
        }
    });
}

/// Masks the dense network in place: γ and the BN bias of every channel the plan
/// drops set to 0, so those channels are exactly zero after their BN (and, for a
/// residual stream, after every add and ReLU).
fn mask_in_place(desc: &ArchDesc, vs: &VarStore, plan: &Plan) {
    let vars = vs.variables();
    let mut masks: Vec<(String, u32, &[u32])> = desc
        .units()
        .zip(&plan.units)
        .map(|(unit, up)| (unit.bn.clone(), up.channels, &up.kept[..]))
        .collect();
    for stream in desc.residual_streams() {
        if let Some(group) = plan.groups.iter().find(|g| g.writer == stream.writer) {
            masks.push((stream.writer_bn, group.channels, &group.kept[..]));
        }
    }
    tch::no_grad(|| {
        for (bn, channels, kept) in masks {
            let dropped: Vec<i64> =
                (0..i64::from(channels)).filter(|c| kept.binary_search(&(*c as u32)).is_err()).collect();
            let dropped = Tensor::from_slice(&dropped);
            for field in ["weight", "bias"] {
                let _ = vars[&format!("{bn}.{field}")].shallow_clone().index_fill_(0, &dropped, 0.0);
            }
        }
    });
}

pub fn max_abs(t: &Tensor) -> f64 {
    t.abs().max().double_value(&[])
}

/// A dense `arch` for 5 classes (1 input channel for ResNet-20, else 3), seeded,
/// with its BN statistics randomised.
pub fn random_dense(arch: &str, seed: u64) -> (ArchDesc, ResNet, VarStore) {
    tch::manual_seed(seed as i64);
    let in_channels = if arch == "resnet20" { 1 } else { 3 };
    let desc = ArchDesc::new(arch, 5, in_channels).unwrap();
    let vs = VarStore::new(Device::Cpu);
    let dense = ResNet::new(&vs.root(), &desc).unwrap();
    randomise_bn(&vs);
    (desc, dense, vs)
}

fn check(arch: &str, residual: ResidualMode, policy: PolicyKind, seed: u64) {
    let (desc, dense, vs) = random_dense(arch, seed);
    let prune = PruneSpec { rate: 0.45, policy, residual, ..PruneSpec::default() };
    let plan = Plan::decide(&desc, &random_scores(&desc, seed), &prune, 32).unwrap();
    let (pruned, pruned_vs) = apply_plan(&dense, &vs, &plan).unwrap();

    assert_eq!(count_params(&vs), desc.params(), "{arch} dense params");
    assert_eq!(count_params(&pruned_vs), plan.summary.params_after, "{arch} pruned params");
    assert_eq!(pruned.desc().params(), plan.summary.params_after);
    if residual == ResidualMode::Group {
        assert!(!plan.groups.is_empty(), "{arch}: a group plan without groups");
        assert!(pruned.desc().classifier.in_features < desc.classifier.in_features, "{arch}");
    }

    let x = Tensor::randn([2, i64::from(desc.in_channels), 32, 32], (Kind::Float, Device::Cpu));
    let got = pruned.f_forward_t(&x, false).unwrap();
    let unmasked = dense.f_forward_t(&x, false).unwrap();
    mask_in_place(&desc, &vs, &plan);
    let want = dense.f_forward_t(&x, false).unwrap();
    let scale = max_abs(&want).max(1.0);
    let diff = max_abs(&(&want - &got));
    assert!(
        diff <= 1e-5 * scale,
        "{arch} {residual:?} {policy:?}: pruned differs from masked by {diff} (scale {scale})"
    );
    // The comparison can fail: the unmasked dense network computes something else.
    assert!(max_abs(&(&unmasked - &got)) > 1e-3 * scale, "{arch}: pruning changed nothing");
}

/// One test per architecture and residual mode, so that they run in parallel and fail separately.
macro_rules! equivalence_tests {
    ($($name:ident: $arch:literal, $residual:ident, $seed:literal;)*) => {$(
        #[test]
        fn $name() {
            check($arch, ResidualMode::$residual, PolicyKind::Layer, $seed);
        }
    )*};
}

equivalence_tests! {
    resnet20_pruned_equals_masked: "resnet20", Scatter, 1;
    resnet32_pruned_equals_masked: "resnet32", Scatter, 2;
    resnet56_pruned_equals_masked: "resnet56", Scatter, 3;
    resnet110_pruned_equals_masked: "resnet110", Scatter, 4;
    resnet18_pruned_equals_masked: "resnet18", Scatter, 5;
    resnet34_pruned_equals_masked: "resnet34", Scatter, 6;
    resnet50_pruned_equals_masked: "resnet50", Scatter, 7;
    resnet101_pruned_equals_masked: "resnet101", Scatter, 8;
    resnet152_pruned_equals_masked: "resnet152", Scatter, 9;
    resnet20_group_pruned_equals_masked: "resnet20", Group, 11;
    resnet32_group_pruned_equals_masked: "resnet32", Group, 12;
    resnet56_group_pruned_equals_masked: "resnet56", Group, 13;
    resnet110_group_pruned_equals_masked: "resnet110", Group, 14;
    resnet18_group_pruned_equals_masked: "resnet18", Group, 15;
    resnet34_group_pruned_equals_masked: "resnet34", Group, 16;
    resnet50_group_pruned_equals_masked: "resnet50", Group, 17;
    resnet101_group_pruned_equals_masked: "resnet101", Group, 18;
    resnet152_group_pruned_equals_masked: "resnet152", Group, 19;
}

#[test]
fn the_tests_above_cover_every_architecture() {
    assert_eq!(
        ARCHS,
        [
            "resnet20",
            "resnet32",
            "resnet56",
            "resnet110",
            "resnet18",
            "resnet34",
            "resnet50",
            "resnet101",
            "resnet152"
        ]
    );
}

#[test]
fn pruned_equals_masked_with_residual_keep_and_the_global_policy() {
    for arch in ["resnet20", "resnet18", "resnet50"] {
        check(arch, ResidualMode::Keep, PolicyKind::Layer, 7);
        check(arch, ResidualMode::Scatter, PolicyKind::Global, 8);
        check(arch, ResidualMode::Group, PolicyKind::Global, 9);
    }
}

#[test]
fn a_plan_for_another_network_is_refused() {
    let desc = ArchDesc::new("resnet20", 10, 3).unwrap();
    let vs = VarStore::new(Device::Cpu);
    let dense = ResNet::new(&vs.root(), &desc).unwrap();
    let other = ArchDesc::new("resnet32", 10, 3).unwrap();
    let plan = Plan::decide(&other, &random_scores(&other, 1), &PruneSpec::default(), 32).unwrap();
    let err = apply_plan(&dense, &vs, &plan).unwrap_err().to_string();
    assert_eq!(err, "plan.arch: must be \"resnet20\" to prune this network, got \"resnet32\"");
    let group = PruneSpec { residual: ResidualMode::Group, ..PruneSpec::default() };
    let plan = Plan::decide(&other, &random_scores(&other, 1), &group, 32).unwrap();
    let err = apply_plan(&dense, &vs, &plan).unwrap_err().to_string();
    assert_eq!(err, "plan.arch: must be \"resnet20\" to prune this network, got \"resnet32\"");
    // Pruning twice starts from a pruned network: refused as well.
    let plan = Plan::decide(&desc, &random_scores(&desc, 1), &PruneSpec::default(), 32).unwrap();
    let (pruned, pruned_vs) = apply_plan(&dense, &vs, &plan).unwrap();
    let err = apply_plan(&pruned, &pruned_vs, &plan).unwrap_err().to_string();
    assert_eq!(err, "arch: resnet20 is already pruned; plans apply to the dense network");
}
