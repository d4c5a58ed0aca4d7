//! Batches for the training step, built ahead of time on background threads.
//!
//! An epoch's batches are numbered `0..batches_per_epoch()`. Worker thread `w`
//! of `W` builds batches `start + w, start + w + W, …` and sends each into its
//! own bounded channel of [`PREFETCH_PER_WORKER`] batches; the consumer reads the
//! channels round-robin, so batches arrive in order while up to `W × (1 +
//! PREFETCH_PER_WORKER)` are being built or waiting. Every batch is a pure
//! function of `(seed, epoch, batch index)`, so starting an epoch at batch `k`
//! (resuming from a checkpoint) gives exactly the batches an uninterrupted run
//! gives from `k` on. Dropping an [`Epoch`] stops and joins its threads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use tch::{Device, Kind, Tensor};

use super::dataset::Dataset;
use super::error::{DataError, Result};
use super::order::{Shard, epoch_indices};

/// Batches each worker may have finished ahead of the consumer.
pub const PREFETCH_PER_WORKER: usize = 2;

/// How a [`Loader`] walks its dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoaderConfig {
    pub batch_size: usize,
    pub shard: Shard,
    /// Shuffle every epoch (training); evaluation walks the data in order.
    pub shuffle: bool,
    /// Drop a final batch smaller than `batch_size`.
    pub drop_last: bool,
    /// Background threads building batches (`data.loader_workers`).
    pub workers: usize,
    /// Seed of the data order and of the augmentation.
    pub seed: u64,
}

impl LoaderConfig {
    /// Training: shuffled, equal shards, full batches only.
    pub fn train(batch_size: usize, shard: Shard, workers: usize, seed: u64) -> Self {
        Self { batch_size, shard, shuffle: true, drop_last: true, workers, seed }
    }

    /// Evaluation: in order, every sample of the shard once, last batch may be short.
    pub fn eval(batch_size: usize, shard: Shard, workers: usize) -> Self {
        Self { batch_size, shard, shuffle: false, drop_last: false, workers, seed: 0 }
    }
}

/// One batch: `images` `[B, C, H, W]` f32 and `labels` `[B]` i64, on the CPU.
#[derive(Debug)]
pub struct Batch {
    /// Position of this batch in its epoch.
    pub index: usize,
    pub images: Tensor,
    pub labels: Tensor,
}

/// Produces the batches of one dataset shard, epoch after epoch.
#[derive(Debug, Clone)]
pub struct Loader {
    dataset: Arc<Dataset>,
    config: LoaderConfig,
}

impl Loader {
    pub fn new(dataset: Arc<Dataset>, config: LoaderConfig) -> Result<Self> {
        let LoaderConfig { batch_size, shard, workers, .. } = config;
        if batch_size == 0 {
            return Err(DataError::spec("batch_size", "must be > 0, got 0"));
        }
        if workers == 0 {
            return Err(DataError::spec("data.loader_workers", "must be > 0, got 0"));
        }
        if shard.world == 0 || shard.rank >= shard.world {
            return Err(DataError::Loader(format!(
                "rank {} is not in a world of {}",
                shard.rank, shard.world
            )));
        }
        if dataset.is_empty() {
            return Err(DataError::Loader("the dataset has no samples".into()));
        }
        if dataset.len() / shard.world == 0 {
            return Err(DataError::Loader(format!(
                "{} samples cannot be shared among {} ranks",
                dataset.len(),
                shard.world
            )));
        }
        Ok(Self { dataset, config })
    }

    pub fn dataset(&self) -> &Arc<Dataset> {
        &self.dataset
    }

    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    /// Samples this rank sees per epoch (the same for every epoch).
    pub fn samples_per_epoch(&self) -> usize {
        let (len, world) = (self.dataset.len(), self.config.shard.world);
        if self.config.shuffle { len / world } else { (len + world - 1 - self.config.shard.rank) / world }
    }

    /// Batches per epoch. With shuffling it is the same on every rank.
    pub fn batches_per_epoch(&self) -> usize {
        let (n, b) = (self.samples_per_epoch(), self.config.batch_size);
        if self.config.drop_last { n / b } else { n.div_ceil(b) }
    }

    /// The dataset indices this rank visits in `epoch`, in batch order.
    pub fn epoch_indices(&self, epoch: u64) -> Vec<usize> {
        let c = &self.config;
        let mut indices = epoch_indices(self.dataset.len(), c.shard, c.shuffle, c.seed, epoch);
        indices.truncate(self.batches_per_epoch() * c.batch_size);
        indices
    }

    /// Starts `epoch` at batch `start_batch` (0 for a fresh epoch).
    pub fn epoch(&self, epoch: u64, start_batch: usize) -> Result<Epoch> {
        let total = self.batches_per_epoch();
        if start_batch > total {
            return Err(DataError::Loader(format!(
                "cannot start at batch {start_batch}: the epoch has {total}"
            )));
        }
        let plan = Arc::new(EpochPlan {
            dataset: Arc::clone(&self.dataset),
            indices: self.epoch_indices(epoch),
            batch_size: self.config.batch_size,
            seed: self.config.seed,
            epoch,
        });
        let stop = Arc::new(AtomicBool::new(false));
        let workers = self.config.workers.min(total - start_batch).max(1);
        let mut receivers = Vec::with_capacity(workers);
        let mut threads = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = sync_channel(PREFETCH_PER_WORKER);
            let (plan, stop) = (Arc::clone(&plan), Arc::clone(&stop));
            let batches = (start_batch + w..total).step_by(workers);
            let thread = std::thread::Builder::new()
                .name(format!("scop-loader-{w}"))
                .spawn(move || produce(&plan, batches, &tx, &stop))
                .map_err(|e| DataError::Loader(format!("cannot start a loader thread: {e}")))?;
            receivers.push(rx);
            threads.push(thread);
        }
        Ok(Epoch { receivers, threads, stop, next: start_batch, start: start_batch, end: total })
    }
}

/// What the worker threads of one epoch share.
#[derive(Debug)]
struct EpochPlan {
    dataset: Arc<Dataset>,
    indices: Vec<usize>,
    batch_size: usize,
    seed: u64,
    epoch: u64,
}

impl EpochPlan {
    fn build(&self, batch: usize) -> Result<Batch> {
        let lo = batch * self.batch_size;
        let hi = (lo + self.batch_size).min(self.indices.len());
        let [c, h, w] = self.dataset.sample_shape();
        let sample_len = c * h * w;
        let n = i64::try_from(hi - lo).unwrap_or(i64::MAX);
        // The samples are written straight into the batch tensor: a batch of
        // 224-pixel images is tens of megabytes, and building it in a vector and
        // copying it over doubled the memory touched (and the page faults) per batch.
        let (images, labels) = new_float_tensor([n, c as i64, h as i64, w as i64], |written| {
            let mut labels = Vec::with_capacity(hi - lo);
            for (out, &index) in written.chunks_exact_mut(sample_len).zip(&self.indices[lo..hi]) {
                labels.push(self.dataset.sample_into(index, self.seed, self.epoch, out)?);
            }
            Ok(labels)
        })?;
        let labels = Tensor::f_from_slice(&labels)?;
        Ok(Batch { index: batch, images, labels })
    }
}

/// A new contiguous CPU float tensor of shape `dims`, every element of which
/// `fill` writes (the memory starts uninitialised).
fn new_float_tensor<T>(dims: [i64; 4], fill: impl FnOnce(&mut [f32]) -> Result<T>) -> Result<(Tensor, T)> {
    let tensor = Tensor::f_empty(dims, (Kind::Float, Device::Cpu))?;
    let len = tensor.numel();
    let filled = if len == 0 {
        fill(&mut [])?
    } else {
        // SAFETY: `tensor` was created just above as `len` contiguous f32
        // elements on the CPU and no other handle to it exists, so nothing else
        // reads or writes its memory while `fill` holds the slice; the storage
        // outlives the slice, which does not escape `fill`.
        #[allow(unsafe_code)]
        let elements = unsafe { std::slice::from_raw_parts_mut(tensor.data_ptr().cast::<f32>(), len) };
        fill(elements)?
    };
    Ok((tensor, filled))
}

fn produce(
    plan: &EpochPlan,
    batches: impl Iterator<Item = usize>,
    tx: &SyncSender<Result<Batch>>,
    stop: &AtomicBool,
) {
    for batch in batches {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let result = plan.build(batch);
        let failed = result.is_err();
        if tx.send(result).is_err() || failed {
            return;
        }
    }
}

/// The batches of one epoch, in order; yields an error at most once, then ends.
#[derive(Debug)]
pub struct Epoch {
    receivers: Vec<Receiver<Result<Batch>>>,
    threads: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    next: usize,
    start: usize,
    end: usize,
}

impl Epoch {
    /// Batches still to come.
    pub fn remaining(&self) -> usize {
        self.end - self.next
    }
}

impl Iterator for Epoch {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.end {
            return None;
        }
        let worker = (self.next - self.start) % self.receivers.len();
        let received = self.receivers[worker].recv();
        let item = match received {
            Ok(Ok(batch)) => {
                self.next += 1;
                return Some(Ok(batch));
            }
            Ok(Err(e)) => e,
            Err(_) => DataError::Loader(format!("loader thread {worker} stopped before batch {}", self.next)),
        };
        self.next = self.end;
        Some(Err(item))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining(), Some(self.remaining()))
    }
}

impl ExactSizeIterator for Epoch {}

impl Drop for Epoch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receivers unblocks workers waiting on a full channel.
        self.receivers.clear();
        for thread in self.threads.drain(..) {
            // A worker that panicked has already reported through its closed channel.
            let _ = thread.join();
        }
    }
}
