//! The chaos suite's job: the Fashion-MNIST example on two CPU ranks with a
//! tiny schedule (512 training images, 4 steps an epoch per rank), a
//! checkpoint every 2 steps and a progress report every step, so a scenario
//! takes well under a minute on a small machine and recomputation is measured
//! to the step.

use std::path::Path;

use anyhow::Context;
use scop_core::spec::{JobSpec, TrainSpec};

const EXAMPLE: &str = "examples/fashion-mnist-resnet20.yaml";

/// Steps between checkpoints in every training stage.
pub const CHECKPOINT_EVERY: u64 = 2;
/// Steps of one epoch on each rank: 512 images, two ranks, batches of 64.
pub const STEPS_PER_EPOCH: u64 = 4;

pub fn tiny(dir: &Path) -> anyhow::Result<JobSpec> {
    let root = crate::shell::root();
    let mut spec = JobSpec::from_file(&root.join(EXAMPLE)).map_err(|e| anyhow::anyhow!("{EXAMPLE}: {e}"))?;
    spec.name = Some("chaos".into());
    spec.data.root = root.join("data/fashion-mnist").canonicalize().context("data/fashion-mnist")?;
    spec.data.train_subset = Some(512);
    spec.data.test_subset = Some(128);
    spec.data.loader_workers = 1;
    let shrink = |stage: &mut TrainSpec| {
        stage.epochs = 1;
        stage.batch_size = 64;
        stage.checkpoint_every_steps = CHECKPOINT_EVERY;
        stage.bn_recalibration_batches = 2;
    };
    if let Some(pretrain) = &mut spec.pretrain {
        shrink(pretrain);
    }
    shrink(&mut spec.finetune);
    // Two knockoff epochs, so that "the final epoch's statistics" means something.
    spec.knockoff.epochs = 2;
    spec.knockoff.batch_size = 64;
    spec.knockoff.checkpoint_every_steps = CHECKPOINT_EVERY;
    spec.resources.threads = 1;
    spec.output.dir = dir.join("out");
    spec.output.log_every_steps = 1;
    spec.max_restarts = 3;
    Ok(spec)
}
