//! A pruned network whose widths take scop's channels-last batch-norm kernel
//! (`scop_worker::models::batch_norm`) trains as it does contiguous, where every
//! BN is libtorch's: the same loss, gradients and running statistics from the
//! same weights and batch.

use std::collections::BTreeMap;

use scop_core::plan::Plan;
use scop_core::score::random_scores;
use scop_core::spec::{PolicyKind, PruneSpec, ResidualMode};
use scop_worker::models::ResNet;
use scop_worker::prune::apply_plan;
use tch::nn::VarStore;
use tch::{Kind, Tensor};

use crate::prune_equivalence::{max_abs, random_dense};

/// The loss of one training-mode pass, then every variable's gradient (or, for
/// buffers, its value after the pass: the running statistics), by name.
fn training_pass(
    net: &ResNet,
    vs: &VarStore,
    x: &Tensor,
    labels: &Tensor,
) -> (f64, BTreeMap<String, Tensor>) {
    for mut var in vs.trainable_variables() {
        var.zero_grad();
    }
    let loss = net.f_forward_t(x, true).unwrap().cross_entropy_for_logits(labels);
    loss.backward();
    let after = vs
        .variables()
        .into_iter()
        .map(|(name, var)| {
            let value = if var.requires_grad() { var.grad() } else { var.detach() };
            (name, value.contiguous().copy())
        })
        .collect();
    (loss.double_value(&[]), after)
}

#[test]
fn a_group_pruned_net_trains_channels_last_as_it_does_contiguous() {
    let (desc, dense, vs) = random_dense("resnet20", 3);
    let prune = PruneSpec {
        rate: 0.45,
        policy: PolicyKind::Layer,
        residual: ResidualMode::Group,
        round_to: 8,
        ..PruneSpec::default()
    };
    let plan = Plan::decide(&desc, &random_scores(&desc, 3), &prune, 32).unwrap();
    let (mut net, pvs) = apply_plan(&dense, &vs, &plan).unwrap();
    let widths: Vec<u32> = net.desc().blocks.iter().flat_map(|b| &b.units).map(|u| u.out_channels).collect();
    assert!(widths.iter().any(|w| w % 16 != 0), "no width takes the kernel: {widths:?}");

    let start: BTreeMap<String, (Tensor, Tensor)> =
        pvs.variables().into_iter().map(|(name, v)| (name, (v.detach().copy(), v))).collect();
    let x = Tensor::randn([24, i64::from(desc.in_channels), 32, 32], (Kind::Float, tch::Device::Cpu));
    let labels = Tensor::randint(5, [24], (Kind::Int64, tch::Device::Cpu));
    let (want_loss, want) = training_pass(&net, &pvs, &x, &labels);

    tch::no_grad(|| {
        for (value, var) in start.values() {
            var.shallow_clone().copy_(value);
        }
    });
    net.use_channels_last(&pvs).unwrap();
    let (got_loss, got) = training_pass(&net, &pvs, &x, &labels);

    assert!((want_loss - got_loss).abs() <= 1e-5 * want_loss.abs(), "loss {want_loss} vs {got_loss}");
    for (name, w) in &want {
        let g = &got[name];
        let scale = max_abs(w).max(1e-3);
        let diff = max_abs(&(w - g));
        assert!(diff <= 1e-4 * scale, "{name}: channels-last differs by {diff} (scale {scale})");
    }
    // The comparison of the statistics can fail: a pass moves them.
    for (name, (before, _)) in start.iter().filter(|(name, _)| name.ends_with("running_mean")) {
        assert!(max_abs(&(before - &want[name])) > 1e-4, "{name} did not move");
    }
}
