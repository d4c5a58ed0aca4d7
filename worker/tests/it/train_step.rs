//! A tiny conv net trains through tch on CPU: the loss goes down.

use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor};

#[test]
fn sgd_steps_lower_the_loss_of_a_tiny_conv_net() {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let net = nn::seq_t()
        .add(nn::conv2d(&root / "conv", 1, 4, 3, nn::ConvConfig { padding: 1, ..Default::default() }))
        .add(nn::batch_norm2d(&root / "bn", 4, Default::default()))
        .add_fn(|x| x.relu().adaptive_avg_pool2d([1, 1]).flatten(1, -1))
        .add(nn::linear(&root / "fc", 4, 2, Default::default()));
    // Two separable classes: bright images versus dark ones.
    let bright = Tensor::rand([16, 1, 8, 8], (Kind::Float, Device::Cpu)) + 1.0;
    let dark = Tensor::rand([16, 1, 8, 8], (Kind::Float, Device::Cpu)) - 1.0;
    let images = Tensor::cat(&[bright, dark], 0);
    let labels = Tensor::cat(
        &[Tensor::ones([16], (Kind::Int64, Device::Cpu)), Tensor::zeros([16], (Kind::Int64, Device::Cpu))],
        0,
    );
    let mut opt = nn::Sgd { momentum: 0.9, ..Default::default() }.build(&vs, 0.1).unwrap();

    let loss_at = |net: &nn::SequentialT| {
        net.forward_t(&images, false).cross_entropy_for_logits(&labels).double_value(&[])
    };
    let before = loss_at(&net);
    for _ in 0..20 {
        let loss = net.forward_t(&images, true).cross_entropy_for_logits(&labels);
        opt.backward_step(&loss);
    }
    let after = loss_at(&net);
    assert!(after < before * 0.5, "loss went from {before} to {after}");
}
