//! Knockoff units: the mixing formula, eval = plain, freezing, clamping and scores.

use scop_core::arch::ArchDesc;
use scop_core::plan::Plan;
use scop_core::score::random_scores;
use scop_core::spec::PruneSpec;
use scop_worker::models::{ResNet, UnitMode, freeze_all_but_kfscale};
use scop_worker::prune::apply_plan;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

fn resnet20(vs: &VarStore) -> ResNet {
    ResNet::new(&vs.root(), &ArchDesc::new("resnet20", 10, 3).unwrap()).unwrap()
}

fn batch(n: i64) -> Tensor {
    Tensor::randn([n, 3, 16, 16], (Kind::Float, Device::Cpu))
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn training_forward_mixes_the_real_half_with_beta() {
    tch::manual_seed(1);
    let vs = VarStore::new(Device::Cpu);
    let mut model = resnet20(&vs);
    model.enable_knockoff(&vs.root()).unwrap();
    let unit = model.unit("layer1.0.conv2").unwrap();
    assert_eq!(unit.mode(), UnitMode::Knockoff);
    let beta = unit.kfscale().unwrap();
    assert_eq!(beta.size(), [1, 16, 1, 1]);
    assert_eq!(beta.mean(Kind::Float).double_value(&[]), 0.5);
    tch::no_grad(|| beta.shallow_clone().copy_(&Tensor::rand([1, 16, 1, 1], (Kind::Float, Device::Cpu))));

    let x = Tensor::randn([8, 16, 8, 8], (Kind::Float, Device::Cpu));
    let got = unit.f_forward_t(&x, true).unwrap();
    let layer = unit.layer();
    let y = x.conv2d(&layer.weight, None::<&Tensor>, [1, 1], [1, 1], [1, 1], 1);
    let (real, knockoff) = (y.narrow(0, 0, 4), y.narrow(0, 4, 4));
    let mixed = beta * &real + (1.0 - beta) * &knockoff;
    let bn = &layer.bn;
    let want = Tensor::cat(&[mixed, knockoff], 0).batch_norm(
        Some(&bn.weight),
        Some(&bn.bias),
        Some(&bn.running_mean),
        Some(&bn.running_var),
        true,
        0.1,
        1e-5,
        false,
    );
    assert!(max_diff(&got, &want) < 1e-5);

    // Eval mode is plain conv + BN.
    let plain = layer.f_forward_t(&x, false).unwrap();
    assert!(max_diff(&unit.f_forward_t(&x, false).unwrap(), &plain) < 1e-6);
}

#[test]
fn beta_one_is_the_plain_network_and_eval_ignores_beta() {
    tch::manual_seed(2);
    let vs = VarStore::new(Device::Cpu);
    let mut model = resnet20(&vs);
    let x = batch(6);
    let plain_train = model.f_forward_t(&x, true).unwrap();
    let plain_eval = model.f_forward_t(&x, false).unwrap();
    model.enable_knockoff(&vs.root()).unwrap();
    assert!(max_diff(&model.f_forward_t(&x, false).unwrap(), &plain_eval) < 1e-6);
    for unit in model.units() {
        let _ = tch::no_grad(|| unit.kfscale().unwrap().shallow_clone().fill_(1.0));
    }
    // Running stats moved during the plain training pass; training-mode BN does not read them.
    assert!(max_diff(&model.f_forward_t(&x, true).unwrap(), &plain_train) < 1e-5);
    let _ =
        tch::no_grad(|| model.unit("layer3.2.conv2").unwrap().kfscale().unwrap().shallow_clone().fill_(0.0));
    assert!(max_diff(&model.f_forward_t(&x, true).unwrap(), &plain_train) > 1e-4);
}

#[test]
fn frozen_networks_compute_gradients_for_beta_only() {
    tch::manual_seed(3);
    let vs = VarStore::new(Device::Cpu);
    let mut model = resnet20(&vs);
    model.enable_knockoff(&vs.root()).unwrap();
    let trainable = freeze_all_but_kfscale(&vs);
    assert_eq!(trainable, 18);
    let real = batch(4);
    let knockoff = real.index_select(0, &Tensor::from_slice(&[3i64, 2, 1, 0]));
    let logits = model.f_forward_t(&Tensor::cat(&[real, knockoff], 0), true).unwrap();
    let labels = Tensor::from_slice(&[1i64, 2, 3, 4]);
    logits.narrow(0, 0, 4).cross_entropy_for_logits(&labels).backward();
    let mut with_grad = 0;
    for (name, var) in vs.variables() {
        let grad = var.grad();
        if name.ends_with(".kfscale") {
            assert!(grad.defined(), "{name} has no gradient");
            assert!(grad.abs().sum(Kind::Float).double_value(&[]) > 0.0, "{name} has a zero gradient");
            with_grad += 1;
        } else {
            assert!(!var.requires_grad(), "{name} still requires grad");
            assert!(!grad.defined(), "{name} got a gradient");
        }
    }
    assert_eq!(with_grad, 18);
}

#[test]
fn beta_clamps_and_scores_follow_the_formula() {
    tch::manual_seed(4);
    let vs = VarStore::new(Device::Cpu);
    let mut model = resnet20(&vs);
    model.enable_knockoff(&vs.root()).unwrap();
    let unit = model.unit("layer2.0.conv1").unwrap();
    let opts = (Kind::Float, Device::Cpu);
    tch::no_grad(|| {
        unit.kfscale()
            .unwrap()
            .shallow_clone()
            .copy_(&(Tensor::arange(32, opts) / 10.0 - 1.0).view([1, 32, 1, 1]));
        unit.layer().bn.weight.shallow_clone().copy_(&(Tensor::arange(32, opts) - 16.0));
    });
    model.clamp_kfscale().unwrap();
    let state = model.knockoff_state().unwrap();
    assert_eq!(state.len(), 18);
    let s = state.iter().find(|s| s.name == "layer2.0.conv1").unwrap();
    assert_eq!(s.beta[..3], [0.0, 0.0, 0.0]);
    assert!((s.beta[15] - 0.5).abs() < 1e-6);
    assert_eq!(s.beta[31], 1.0);
    assert_eq!(s.gamma_abs[..2], [16.0, 15.0]);
    let scores = model.scores().unwrap();
    let want: Vec<f32> = s.gamma_abs.iter().zip(&s.beta).map(|(g, b)| g * (2.0 * b - 1.0)).collect();
    assert_eq!(scores["layer2.0.conv1"], want);
    assert_eq!(scores["layer2.0.conv1"][0], -16.0);
    assert_eq!(scores["layer2.0.conv1"][31], 15.0);
}

#[test]
fn knockoff_misuse_is_an_error() {
    tch::manual_seed(5);
    let vs = VarStore::new(Device::Cpu);
    let mut model = resnet20(&vs);
    let err = model.scores().unwrap_err().to_string();
    assert_eq!(err, "scores need every unit in knockoff mode");
    model.enable_knockoff(&vs.root()).unwrap();
    let err = model.f_forward_t(&batch(5), true).unwrap_err().to_string();
    assert_eq!(
        err,
        "input: layer1.0.conv1: knockoff training needs the batch [real; knockoff] of even size, got 5"
    );
    let err = model.f_forward_t(&Tensor::zeros([2, 1, 8, 8], (Kind::Float, Device::Cpu)), false).unwrap_err();
    assert_eq!(err.to_string(), "input: resnet20 expects [N, 3, H, W], got [2, 1, 8, 8]");

    let desc = model.desc().clone();
    let plan = Plan::decide(&desc, &random_scores(&desc, 1), &PruneSpec::default(), 32).unwrap();
    let (mut pruned, pruned_vs) = apply_plan(&model, &vs, &plan).unwrap();
    assert_eq!(pruned.unit("layer1.0.conv1").unwrap().mode(), UnitMode::Pruned);
    assert!(pruned_vs.variables().keys().all(|k| !k.ends_with("kfscale")));
    let err = pruned.enable_knockoff(&pruned_vs.root()).unwrap_err().to_string();
    assert_eq!(err, "layer1.0.conv1: knockoff mode needs the dense unit; this one is pruned");
}
