//! The ImageFolder loader benchmark behind the hidden `scop-worker bench-loader`
//! (`cargo xtask bench loader` runs it beside torchvision): the training loader
//! as a stage builds it (decode, random-resized crop, flip, normalise, batch) on
//! a folder of JPEGs, pulled as fast as a consumer can take the batches
//! (`--eval`: the evaluation transform instead).

use std::path::PathBuf;
use std::sync::Arc;

use scop_core::spec::{DataFormat, DataSpec};
use serde::Serialize;

use crate::data::{Dataset, Loader, LoaderConfig, ModelInput, Shard, Split, measure_loader};
use crate::stages::{Error, Result};

/// The options of `scop-worker bench-loader`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoaderBenchArgs {
    /// An ImageFolder root: `train/` with one sub-folder of images per class.
    #[arg(long)]
    pub root: PathBuf,
    /// Number of class folders under `train/`.
    #[arg(long, default_value_t = 10)]
    pub classes: usize,
    /// Decoding threads.
    #[arg(long, default_value_t = 2)]
    pub workers: u32,
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    #[arg(long, default_value_t = 224)]
    pub size: usize,
    /// Batches to pull (continuing into the next epoch if needed).
    #[arg(long, default_value_t = 40)]
    pub batches: usize,
    /// The evaluation transform (short side resized, centre crop) instead of
    /// the training augmentation.
    #[arg(long)]
    pub eval: bool,
}

/// What `bench-loader` prints, as one JSON object.
#[derive(Debug, Clone, Serialize)]
pub struct LoaderBenchReport {
    pub images: usize,
    pub seconds: f64,
    pub images_per_second: f64,
    pub workers: u32,
}

/// Builds the augmenting training loader on `--root` and measures it.
pub fn measure(args: &LoaderBenchArgs) -> Result<LoaderBenchReport> {
    if args.workers == 0 || args.batch == 0 || args.batches == 0 {
        return Err(Error::Input("bench-loader: --workers, --batch and --batches must be >= 1".to_owned()));
    }
    // Batching copies go through libtorch; keep its own threads out of the count.
    tch::set_num_threads(1);
    let spec = DataSpec {
        format: DataFormat::ImageFolder,
        root: args.root.clone(),
        mean: None,
        std: None,
        train_subset: None,
        test_subset: None,
        augment: !args.eval,
        loader_workers: args.workers,
    };
    let input = ModelInput { size: args.size, channels: Some(3), num_classes: args.classes };
    let dataset = Dataset::from_spec(&spec, Split::Train, input)?;
    let config = LoaderConfig::train(args.batch, Shard::SINGLE, args.workers as usize, 0);
    let loader = Loader::new(Arc::new(dataset), config)?;
    let measured = measure_loader(&loader, args.batches)?;
    Ok(LoaderBenchReport {
        images: measured.images,
        seconds: measured.elapsed.as_secs_f64(),
        images_per_second: measured.images_per_second(),
        workers: args.workers,
    })
}
