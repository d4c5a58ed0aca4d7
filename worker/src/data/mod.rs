//! Datasets and the batch loader: IDX, CIFAR-10 binary and ImageFolder readers,
//! per-sample transforms and augmentation, deterministic shuffling and
//! sharding, and background prefetching of `tch` batches.
//!
//! Typical use by a trainer:
//! ```no_run
//! # fn demo(spec: &scop_core::spec::DataSpec) -> scop_worker::data::Result<()> {
//! use std::sync::Arc;
//! use scop_worker::data::{Dataset, Loader, LoaderConfig, ModelInput, Shard, Split};
//! let input = ModelInput { size: 32, channels: Some(3), num_classes: 10 };
//! let train = Arc::new(Dataset::from_spec(spec, Split::Train, input)?);
//! let loader = Loader::new(train, LoaderConfig::train(128, Shard::SINGLE, 2, 42))?;
//! for batch in loader.epoch(0, 0)? {
//!     let batch = batch?; // batch.images [128, 3, 32, 32] f32, batch.labels [128] i64
//! }
//! # Ok(()) }
//! ```

mod cifar;
mod dataset;
mod error;
mod idx;
mod image_folder;
mod loader;
mod memory;
mod order;
mod pixels;
mod throughput;
mod transform;

pub use dataset::{Dataset, ModelInput, Preprocessing, Split};
pub use error::{DataError, Result};
pub use loader::{Batch, Epoch, Loader, LoaderConfig, PREFETCH_PER_WORKER};
pub use order::{Shard, epoch_indices, sample_rng};
pub use pixels::{Pixels, Rect};
pub use throughput::{Throughput, measure_loader};
pub use transform::{Family, Transform};
