//! A dataset split as the trainer sees it: stored samples plus the transform
//! that turns each one into a normalised model input, built from the job's `DataSpec`.

use scop_core::spec::{DataFormat, DataSpec};
use serde::Serialize;

use super::error::{DataError, Result};
use super::image_folder::{self, ImageFiles};
use super::memory::InMemory;
use super::order::sample_rng;
use super::pixels::{Pixels, convertible};
use super::transform::{Family, Transform, pads_to};
use super::{cifar, idx};

/// Which half of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    Test,
}

/// What the model expects: the side of its square input, its input channels
/// (`None`: the dataset's own, 1 for IDX and 3 otherwise) and its classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelInput {
    pub size: usize,
    pub channels: Option<usize>,
    pub num_classes: usize,
}

/// Default normalisation per format: Fashion-MNIST, CIFAR-10, ImageNet.
fn default_mean_std(format: DataFormat) -> (&'static [f32], &'static [f32]) {
    match format {
        DataFormat::Idx => (&[0.2860], &[0.3530]),
        DataFormat::Cifar10 => (&[0.4914, 0.4822, 0.4465], &[0.2470, 0.2435, 0.2616]),
        DataFormat::ImageFolder => (&[0.485, 0.456, 0.406], &[0.229, 0.224, 0.225]),
    }
}

#[derive(Debug)]
enum Samples {
    Memory(InMemory),
    Files(ImageFiles),
}

/// One split of a dataset, ready to produce transformed samples.
#[derive(Debug)]
pub struct Dataset {
    format: DataFormat,
    samples: Samples,
    transform: Transform,
    num_classes: usize,
}

impl Dataset {
    /// Reads (IDX, CIFAR-10) or lists (ImageFolder) `split` under `spec.root`
    /// and sets up its transform; `spec.root` is used as given (the spec loader
    /// resolves relative roots). Augmentation applies to the training split when
    /// `spec.augment` is set; `train_subset`/`test_subset` keep the first N
    /// samples (ImageFolder: N spread evenly over the sorted files, so every class stays).
    pub fn from_spec(spec: &DataSpec, split: Split, input: ModelInput) -> Result<Self> {
        if input.size == 0 {
            return Err(DataError::spec("model.input_size", "must be > 0, got 0"));
        }
        if input.num_classes == 0 {
            return Err(DataError::spec("model.num_classes", "must be > 0, got 0"));
        }
        let stored_channels = match spec.format {
            DataFormat::Idx => 1,
            DataFormat::Cifar10 | DataFormat::ImageFolder => 3,
        };
        let channels = input.channels.unwrap_or(stored_channels);
        if channels == 0 || !convertible(stored_channels, channels) {
            return Err(DataError::spec(
                "model.in_channels",
                format!(
                    "cannot feed {stored_channels}-channel images to a model with {channels} input channels"
                ),
            ));
        }
        let mut samples = match spec.format {
            DataFormat::Idx => Samples::Memory(idx::read(&spec.root, split, input.num_classes)?),
            DataFormat::Cifar10 => Samples::Memory(cifar::read(&spec.root, split, input.num_classes)?),
            DataFormat::ImageFolder => {
                Samples::Files(ImageFiles::scan(&spec.root, split, input.num_classes)?)
            }
        };
        let subset = match split {
            Split::Train => spec.train_subset,
            Split::Test => spec.test_subset,
        };
        if let Some(n) = subset {
            match &mut samples {
                Samples::Memory(m) => m.truncate(n),
                Samples::Files(f) => f.spread_subset(n),
            }
        }
        let (default_mean, default_std) = default_mean_std(spec.format);
        let mean = per_channel("data.mean", spec.mean.as_deref(), default_mean, channels)?;
        let std = per_channel("data.std", spec.std.as_deref(), default_std, channels)?;
        if let Some(bad) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(DataError::spec("data.std", format!("must be > 0, got {bad}")));
        }
        let family = match spec.format {
            DataFormat::Idx | DataFormat::Cifar10 => Family::Small,
            DataFormat::ImageFolder => Family::Large,
        };
        let augment = spec.augment && split == Split::Train;
        let transform = Transform { family, size: input.size, channels, mean, std, augment };
        Ok(Self { format: spec.format, samples, transform, num_classes: input.num_classes })
    }

    /// Number of samples (after any subset).
    pub fn len(&self) -> usize {
        match &self.samples {
            Samples::Memory(m) => m.len(),
            Samples::Files(f) => f.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Class names: the folder names for ImageFolder, `"0"`, `"1"`, … otherwise.
    pub fn class_names(&self) -> Vec<String> {
        match &self.samples {
            Samples::Files(f) => f.classes.clone(),
            Samples::Memory(_) => (0..self.num_classes).map(|c| c.to_string()).collect(),
        }
    }

    pub fn transform(&self) -> &Transform {
        &self.transform
    }

    /// Shape `[channels, size, size]` of one transformed sample.
    pub fn sample_shape(&self) -> [usize; 3] {
        [self.transform.channels, self.transform.size, self.transform.size]
    }

    /// Label of sample `index` (< `len()`).
    pub fn label(&self, index: usize) -> i64 {
        match &self.samples {
            Samples::Memory(m) => m.labels[index].into(),
            Samples::Files(f) => f.labels[index].into(),
        }
    }

    /// Writes the transformed sample `index` into `out` (length `C·H·W`) and
    /// returns its label. Augmentation is drawn from `(seed, epoch, index)`
    /// alone, so the same call always yields the same values.
    pub fn sample_into(&self, index: usize, seed: u64, epoch: u64, out: &mut [f32]) -> Result<i64> {
        if index >= self.len() {
            return Err(DataError::Loader(format!("sample {index} out of range: {} samples", self.len())));
        }
        let pixels = match &self.samples {
            Samples::Memory(m) => Pixels::planar(m.channels, m.height, m.width, m.image(index).to_vec()),
            Samples::Files(f) => image_folder::decode(&f.files[index], self.transform.channels)?,
        };
        self.transform.apply(pixels, &mut sample_rng(seed, epoch, index), out);
        Ok(self.label(index))
    }

    /// What a user must do to a raw image before feeding the trained model.
    pub fn preprocessing(&self) -> Preprocessing {
        let t = &self.transform;
        let s = t.size;
        let stored_channels = match self.format {
            DataFormat::Idx => 1,
            _ => 3,
        };
        let color = match (stored_channels, t.channels) {
            (1, 1) => "grayscale".to_owned(),
            (1, n) => format!("grayscale, replicated to {n} channels"),
            (3, 1) => "RGB converted to grayscale (0.299 R + 0.587 G + 0.114 B)".to_owned(),
            _ => "RGB".to_owned(),
        };
        let resize = match (&self.samples, t.family) {
            (Samples::Memory(m), Family::Small) if pads_to(m.height, s) && pads_to(m.width, s) => {
                if m.height == s && m.width == s {
                    "none".to_owned()
                } else {
                    format!("pad {}×{} with zeros to {s}×{s}, centred", m.height, m.width)
                }
            }
            (_, Family::Small) => format!("resize to {s}×{s} (bilinear, antialiased)"),
            (_, Family::Large) => format!(
                "resize the short side to {} (bilinear, antialiased), then centre-crop {s}×{s}",
                t.resize_short_side()
            ),
        };
        Preprocessing {
            input_size: s,
            channels: t.channels,
            layout: "NCHW float32".to_owned(),
            color,
            resize,
            scale: "divide 0–255 pixel values by 255".to_owned(),
            mean: t.mean.clone(),
            std: t.std.clone(),
        }
    }
}

/// The evaluation preprocessing, as recorded in a model card.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Preprocessing {
    pub input_size: usize,
    pub channels: usize,
    pub layout: String,
    pub color: String,
    pub resize: String,
    pub scale: String,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

/// One value per model channel: a single given value is broadcast; the RGB
/// defaults become their luma-weighted value for a one-channel model.
fn per_channel(
    field: &'static str,
    given: Option<&[f32]>,
    default: &[f32],
    channels: usize,
) -> Result<Vec<f32>> {
    match given {
        Some(v) if v.len() == channels => Ok(v.to_vec()),
        Some([one]) => Ok(vec![*one; channels]),
        Some(v) => Err(DataError::spec(field, format!("expected 1 or {channels} values, got {}", v.len()))),
        None if default.len() == channels => Ok(default.to_vec()),
        None if default.len() == 1 => Ok(vec![default[0]; channels]),
        None => {
            let luma = 0.299 * default[0] + 0.587 * default[1] + 0.114 * default[2];
            Ok(vec![luma; channels])
        }
    }
}
