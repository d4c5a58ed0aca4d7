//! Throughput of the data-parallel training step: ResNet-20 on random 32x32 RGB
//! batches, SGD, gradients averaged through the collective group. One rank of
//! `cargo xtask bench collectives`'s scaling table.

use std::time::{Duration, Instant};

use scop_core::arch::ArchDesc;
use scop_core::rendezvous::Rendezvous;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::ddp::GroupReplicas;
use super::parallel::Replicas;
use super::trainer::{cross_entropy, sorted_variables};
use crate::collective;
use crate::models::ResNet;
use crate::train::optim::{Optimizer, Rule};

/// What one rank of the benchmark runs.
#[derive(Debug, Clone)]
pub struct StepBench {
    pub rendezvous: Rendezvous,
    /// Samples per rank and step.
    pub batch: usize,
    pub warmup: usize,
    pub steps: usize,
}

/// Runs the warm-up steps, then times `steps` steps as one span (started after a
/// barrier, ended after another, so it is the group's time). Returns that span.
pub fn bench_train_steps(bench: &StepBench) -> Result<Duration, String> {
    let group = collective::connect(&bench.rendezvous).map_err(|e| e.to_string())?;
    let mut replicas = GroupReplicas::new(group);
    let desc = ArchDesc::new("resnet20", 10, 3).map_err(|e| e.to_string())?;
    tch::manual_seed(0);
    let vs = VarStore::new(Device::Cpu);
    let model = ResNet::new(&vs.root(), &desc).map_err(|e| e.to_string())?;
    let vars = sorted_variables(&vs);
    let everything: Vec<Tensor> = vars.iter().map(|(_, t)| t.shallow_clone()).collect();
    replicas.broadcast_from_root(&everything)?;
    let trainable: Vec<(String, Tensor, bool)> =
        vars.into_iter().filter(|(_, t)| t.requires_grad()).map(|(n, t)| (n, t, true)).collect();
    let grads_of: Vec<Tensor> = trainable.iter().map(|(_, t, _)| t.shallow_clone()).collect();
    let rule = Rule::Sgd { momentum: 0.9, nesterov: false, weight_decay: 5e-4 };
    let mut opt = Optimizer::new(rule, trainable);
    let images = Tensor::f_randn([bench.batch as i64, 3, 32, 32], (Kind::Float, Device::Cpu))
        .map_err(|e| e.to_string())?;
    let labels =
        Tensor::f_randint(10, [bench.batch as i64], (Kind::Int64, Device::Cpu)).map_err(|e| e.to_string())?;
    let mut step = |replicas: &mut GroupReplicas| -> Result<(), String> {
        opt.zero_grad();
        let logits = model.f_forward_t(&images, true).map_err(|e| e.to_string())?;
        let loss = cross_entropy(&logits, &labels, 0.0).map_err(|e| e.to_string())?;
        loss.f_backward().map_err(|e| e.to_string())?;
        let grads: Vec<Tensor> = grads_of.iter().map(Tensor::grad).collect();
        replicas.average_gradients(&grads)?;
        opt.step(0.01).map_err(|e| e.to_string())
    };
    for _ in 0..bench.warmup {
        step(&mut replicas)?;
    }
    let mut token = [0.0];
    replicas.sum_scalars(&mut token)?;
    let started = Instant::now();
    for _ in 0..bench.steps {
        step(&mut replicas)?;
    }
    replicas.sum_scalars(&mut token)?;
    Ok(started.elapsed())
}
