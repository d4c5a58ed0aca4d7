//! Measures how many images per second a loader delivers (decode + transform +
//! batch + prefetch), for the training benchmark's loader-vs-step comparison.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::error::Result;
use super::loader::Loader;

/// Images delivered and the time it took.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Throughput {
    pub batches: usize,
    pub images: usize,
    pub elapsed: Duration,
}

impl Throughput {
    pub fn images_per_second(&self) -> f64 {
        self.images as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// Pulls up to `batches` batches of `epoch` from `loader` as fast as the
/// consumer can take them (continuing into later epochs if one is shorter),
/// and times it from the start of the epoch, thread start-up included.
pub fn measure_loader(loader: &Loader, batches: usize) -> Result<Throughput> {
    let start = Instant::now();
    let (mut taken, mut images) = (0, 0);
    let mut epoch = 0;
    while taken < batches {
        let mut batches_in_epoch = loader.epoch(epoch, 0)?.take(batches - taken).peekable();
        if batches_in_epoch.peek().is_none() {
            break;
        }
        for batch in batches_in_epoch {
            let batch = batch?;
            images += usize::try_from(batch.labels.size1()?).unwrap_or(0);
            taken += 1;
        }
        epoch += 1;
    }
    Ok(Throughput { batches: taken, images, elapsed: start.elapsed() })
}
