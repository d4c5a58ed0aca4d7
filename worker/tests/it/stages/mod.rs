//! The training stages and `scop-worker run` on small Fashion-MNIST subsets:
//! resume determinism, what each stage may change, whole jobs and failures.

mod criteria;
mod job;
mod knockoff_stage;
mod resume;

use std::path::{Path, PathBuf};

use scop_core::spec::JobSpec;
use scop_worker::events::{Event, Recorder};
use scop_worker::stages::parallel::Single;
use scop_worker::stages::{Result, StageContext};
use tch::Device;

/// The repository's `data/fashion-mnist`.
pub fn fashion_mnist() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/fashion-mnist");
    assert!(
        dir.join("train-images-idx3-ubyte.gz").exists(),
        "{} lacks Fashion-MNIST; run `cargo xtask data`",
        dir.display()
    );
    dir.canonicalize().expect("data dir resolves")
}

/// A tiny job: ResNet-20 at 32×32 on 256 training and 128 test images,
/// batches of 32, one epoch per stage, one thread, a progress event per step.
pub fn tiny_yaml(data: &Path, out: &Path) -> String {
    format!(
        "name: tiny
model: {{ arch: resnet20, num_classes: 10, in_channels: 1, input_size: 32 }}
data: {{ format: idx, root: {data}, train_subset: 256, test_subset: 128, loader_workers: 1 }}
pretrain: {{ epochs: 1, batch_size: 32, lr: 0.05, schedule: cosine, nesterov: true }}
knockoff: {{ epochs: 1, batch_size: 32 }}
prune: {{ rate: 0.45, policy: layer, residual: scatter }}
finetune: {{ epochs: 1, batch_size: 32, lr: 0.02, bn_recalibration_batches: 2 }}
resources: {{ device: cpu, threads: 1 }}
output: {{ dir: {out}, log_every_steps: 1 }}
seed: 7
",
        data = data.display(),
        out = out.display()
    )
}

/// The tiny job as a parsed spec writing to `out`.
pub fn tiny_spec(out: &Path) -> JobSpec {
    JobSpec::from_yaml(&tiny_yaml(&fashion_mnist(), out)).expect("the tiny spec is valid")
}

/// Runs one stage in this process on the CPU with one thread; returns its result and events.
pub fn run_stage<T>(
    spec: &JobSpec,
    resume: bool,
    stage: impl FnOnce(&mut StageContext<'_>) -> Result<T>,
) -> (Result<T>, Vec<Event>) {
    tch::set_num_threads(1);
    let mut replicas = Single;
    let mut recorder = Recorder::default();
    let result = {
        let mut ctx = StageContext::new(spec, Device::Cpu, &mut replicas, &mut recorder, resume);
        stage(&mut ctx)
    };
    (result, recorder.events)
}

/// `(epoch, step, loss)` of every progress event (one per step with `log_every_steps: 1`).
pub fn step_losses(events: &[Event]) -> Vec<(u32, u64, f64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Progress { epoch, step, loss, .. } => Some((*epoch, *step, *loss)),
            _ => None,
        })
        .collect()
}

/// Every tensor of a safetensors file, by name.
pub fn read_weights(path: &Path) -> Vec<(String, tch::Tensor)> {
    let mut tensors =
        tch::Tensor::read_safetensors(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    tensors
}

/// Whether two tensors have the same shape, kind and exactly the same values.
pub fn identical(a: &tch::Tensor, b: &tch::Tensor) -> bool {
    a.size() == b.size() && a.kind() == b.kind() && a.equal(b)
}
