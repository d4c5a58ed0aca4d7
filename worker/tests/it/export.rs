//! Export round trips: safetensors + arch.json rebuild exactly, TorchScript gives
//! the same outputs through tch and holds the weights as named parameters, the
//! model card has the figures; strict loading names every problem.

use scop_core::arch::ArchDesc;
use scop_core::plan::Plan;
use scop_core::score::random_scores;
use scop_core::spec::{ARCHS, PruneSpec, ResidualMode};
use scop_worker::export::{ModelCard, export, load_export};
use scop_worker::models::{ResNet, load_strict};
use scop_worker::prune::apply_plan;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::prune_equivalence::randomise_bn;

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

fn check(arch: &str) {
    check_with(arch, PruneSpec::default());
}

fn check_with(arch: &str, prune: PruneSpec) {
    tch::manual_seed(11);
    let desc = ArchDesc::new(arch, 4, 3).unwrap();
    let vs = VarStore::new(Device::Cpu);
    let dense = ResNet::new(&vs.root(), &desc).unwrap();
    randomise_bn(&vs);
    let plan = Plan::decide(&desc, &random_scores(&desc, 3), &prune, 32).unwrap();
    let (pruned, pruned_vs) = apply_plan(&dense, &vs, &plan).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let paths = export(dir.path(), &pruned, &pruned_vs, Some(&plan), 32).unwrap();

    let x = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
    let want = pruned.f_forward_t(&x, false).unwrap();
    let (rebuilt, _rebuilt_vs) = load_export(dir.path(), Device::Cpu).unwrap();
    assert_eq!(rebuilt.desc(), pruned.desc());
    assert_eq!(max_diff(&rebuilt.f_forward_t(&x, false).unwrap(), &want), 0.0, "{arch}: safetensors");

    // The graph executor's optimisation passes cost more than the whole check on
    // ResNet-152 and do not change what the module computes.
    tch::jit::set_graph_executor_optimize(false);
    let script = tch::CModule::load(&paths.torchscript).unwrap();
    let traced = tch::no_grad(|| script.forward_ts(&[&x]).unwrap());
    assert!(max_diff(&traced, &want) < 1e-5, "{arch}: TorchScript");
    // The weights are parameters under the names of model.safetensors, not constants.
    let variables = pruned_vs.variables();
    let mut expected: Vec<&String> =
        variables.keys().filter(|n| !n.ends_with(".running_mean") && !n.ends_with(".running_var")).collect();
    expected.sort();
    let parameters = script.named_parameters().unwrap();
    let mut names: Vec<&String> = parameters.iter().map(|(n, _)| n).collect();
    names.sort();
    assert_eq!(names, expected, "{arch}: TorchScript parameters");
    for (name, value) in &parameters {
        assert_eq!(max_diff(value, &variables[name]), 0.0, "{arch}: {name}");
    }

    let card = ModelCard::read(&paths.card).unwrap();
    assert_eq!((card.params, card.flops), (plan.summary.params_after, plan.summary.flops_after));
    assert_eq!(
        (card.dense_params, card.dense_flops),
        (plan.summary.params_before, plan.summary.flops_before)
    );
    assert_eq!(card.plan, Some(plan.summary));
    assert!(card.metrics.is_empty());
}

#[test]
fn cifar_family_exports_round_trip() {
    for arch in &ARCHS[..4] {
        check(arch);
    }
}

#[test]
fn small_imagenet_family_exports_round_trip() {
    for arch in ["resnet18", "resnet34", "resnet50"] {
        check(arch);
    }
}

#[test]
fn large_imagenet_family_exports_round_trip() {
    for arch in ["resnet101", "resnet152"] {
        check(arch);
    }
}

#[test]
fn group_pruned_exports_round_trip() {
    for arch in ["resnet20", "resnet18", "resnet50"] {
        check_with(arch, PruneSpec { residual: ResidualMode::Group, ..PruneSpec::default() });
    }
}

#[test]
fn strict_loading_lists_every_mismatch() {
    tch::manual_seed(12);
    let desc = ArchDesc::new("resnet20", 10, 3).unwrap();
    let vs = VarStore::new(Device::Cpu);
    let _model = ResNet::new(&vs.root(), &desc).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("init.safetensors");

    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    // torchvision's BN counters are accepted and ignored.
    named.push(("bn1.num_batches_tracked".into(), Tensor::from(0i64)));
    Tensor::write_safetensors(&named, &file).unwrap();
    load_strict(&vs, &file).unwrap();

    named.retain(|(n, _)| n != "fc.bias" && n != "layer3.2.bn2.running_var");
    named.push(("layer4.0.conv1.weight".into(), Tensor::zeros([1], (Kind::Float, Device::Cpu))));
    for (name, t) in &mut named {
        if name == "conv1.weight" {
            *t = Tensor::zeros([16, 1, 3, 3], (Kind::Float, Device::Cpu));
        }
    }
    Tensor::write_safetensors(&named, &file).unwrap();
    let err = load_strict(&vs, &file).unwrap_err().to_string();
    let shown = file.display();
    assert_eq!(
        err,
        format!(
            "{shown}: does not match the network\n  \
             missing (2): fc.bias, layer3.2.bn2.running_var\n  \
             unexpected (1): layer4.0.conv1.weight\n  \
             shape mismatch (1): conv1.weight: expected shape [16, 3, 3, 3], found [16, 1, 3, 3]"
        )
    );
    let missing = dir.path().join("nope.safetensors");
    let err = load_strict(&vs, &missing).unwrap_err().to_string();
    assert_eq!(err, format!("{}: no such file", missing.display()));
}
