//! Datasets and the batch loader: IDX, CIFAR-10 binary and ImageFolder readers,
//! per-sample transforms and augmentation, deterministic shuffling and
//! sharding, and background prefetching of `tch` batches.

mod cifar;
mod dataset;
mod error;
mod idx;
mod image_folder;
mod memory;
mod order;
mod pixels;
mod transform;

pub use dataset::{Dataset, ModelInput, Preprocessing, Split};
pub use error::{DataError, Result};
pub use order::{Shard, epoch_indices, sample_rng};
pub use pixels::{Pixels, Rect};
pub use transform::{Family, Transform};
