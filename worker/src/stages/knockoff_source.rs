//! Knockoff samples: inputs that look like the real batch but carry no
//! information about its labels.
//!
//! Three sources, as the spec's `knockoff.source` names them:
//! - `permute`: the local batch in a random order (Golden Stick). With `loss: both`
//!   the knockoff half is scored against the permuted labels.
//! - `gaussian`: per-pixel noise with each channel's batch mean and std.
//! - `generator`: a TorchScript module mapping noise `[N, 128]` to images (the
//!   reference uses a GAN generator); its output is resized to the input size and
//!   taken as already normalised.
//!
//! Randomness comes from a generator seeded per step, so a resumed stage builds
//! exactly the knockoffs an uninterrupted one would.

use std::path::Path;

use scop_core::spec::KnockoffSource;
use tch::{Kind, Tensor};

/// Noise dimension a generator takes.
pub const GENERATOR_NOISE: i64 = 128;

/// A ready-to-use knockoff source.
#[derive(Debug)]
pub enum Knockoffs {
    Permute,
    Gaussian,
    Generator(tch::CModule),
}

/// Errors building knockoffs; each names what failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("knockoff.source.path {path}: cannot load the TorchScript generator: {source}")]
    LoadGenerator {
        path: String,
        #[source]
        source: tch::TchError,
    },
    #[error("knockoff generator {what}")]
    Generator { what: String },
    #[error("building knockoffs: {0}")]
    Torch(#[from] tch::TchError),
}

/// A knockoff batch and the labels it is scored against with `loss: both`.
#[derive(Debug)]
pub struct KnockoffBatch {
    pub images: Tensor,
    pub labels: Tensor,
}

impl Knockoffs {
    pub fn from_spec(source: &KnockoffSource, device: tch::Device) -> Result<Self, Error> {
        Ok(match source {
            KnockoffSource::Permute => Self::Permute,
            KnockoffSource::Gaussian => Self::Gaussian,
            KnockoffSource::Generator { path } => Self::Generator(load_generator(path, device)?),
        })
    }

    /// Knockoffs for `images` `[B, C, H, W]` with `labels` `[B]`, using the seed of this step.
    pub fn make(&self, images: &Tensor, labels: &Tensor, step_seed: u64) -> Result<KnockoffBatch, Error> {
        tch::no_grad(|| {
            // A per-step seed makes the knockoffs a function of (job seed, step).
            tch::manual_seed(step_seed as i64);
            let batch = images.size()[0];
            let device = images.device();
            match self {
                Self::Permute => {
                    let order = Tensor::f_randperm(batch, (Kind::Int64, device))?;
                    Ok(KnockoffBatch {
                        images: images.f_index_select(0, &order)?,
                        labels: labels.f_index_select(0, &order)?,
                    })
                }
                Self::Gaussian => {
                    let dims: &[i64] = &[0, 2, 3];
                    let mean = images.f_mean_dim(dims, true, Kind::Float)?;
                    let std = images.f_std_dim(dims, false, true)?;
                    let noise = images.f_randn_like()?;
                    let fake = noise.f_mul(&std)?.f_add(&mean)?;
                    Ok(KnockoffBatch { images: fake, labels: permuted_labels(labels)? })
                }
                Self::Generator(module) => {
                    let noise = Tensor::f_randn([batch, GENERATOR_NOISE], (Kind::Float, device))?;
                    let out = module.forward_ts(&[noise])?;
                    let size = images.size();
                    if out.dim() != 4 || out.size()[0] != batch || out.size()[1] != size[1] {
                        return Err(Error::Generator {
                            what: format!(
                                "must map noise [{batch}, {GENERATOR_NOISE}] to images [{batch}, {}, H, W], got {:?}",
                                size[1],
                                out.size()
                            ),
                        });
                    }
                    let out = if out.size()[2..] == size[2..] {
                        out
                    } else {
                        out.f_upsample_bilinear2d([size[2], size[3]], false, None, None)?
                    };
                    Ok(KnockoffBatch {
                        images: out.f_to_kind(images.kind())?,
                        labels: permuted_labels(labels)?,
                    })
                }
            }
        })
    }
}

/// Labels in a random order: knockoffs made from noise carry no label, so with
/// `loss: both` they are scored against a permutation, which is just as uninformative.
fn permuted_labels(labels: &Tensor) -> Result<Tensor, tch::TchError> {
    let order = Tensor::f_randperm(labels.size()[0], (Kind::Int64, labels.device()))?;
    labels.f_index_select(0, &order)
}

fn load_generator(path: &Path, device: tch::Device) -> Result<tch::CModule, Error> {
    let mut module = tch::CModule::load_on_device(path, device)
        .map_err(|source| Error::LoadGenerator { path: path.display().to_string(), source })?;
    module.set_eval();
    Ok(module)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn batch() -> (Tensor, Tensor) {
        let images = Tensor::arange(8 * 2 * 4 * 4, (Kind::Float, Device::Cpu)).view([8, 2, 4, 4]);
        let labels = Tensor::arange(8, (Kind::Int64, Device::Cpu));
        (images, labels)
    }

    #[test]
    fn permute_reorders_images_and_labels_together_and_is_seeded() {
        let (images, labels) = batch();
        let k = Knockoffs::Permute.make(&images, &labels, 7).unwrap();
        // Each knockoff image is the real image of its (permuted) label.
        for i in 0..8 {
            let j = k.labels.int64_value(&[i]);
            assert!(k.images.get(i).equal(&images.get(j)));
        }
        let again = Knockoffs::Permute.make(&images, &labels, 7).unwrap();
        assert!(again.labels.equal(&k.labels));
        let other = Knockoffs::Permute.make(&images, &labels, 8).unwrap();
        assert!(!other.labels.equal(&k.labels));
    }

    #[test]
    fn gaussian_matches_channel_statistics() {
        let images = Tensor::randn([256, 2, 8, 8], (Kind::Float, Device::Cpu)) * 3.0 + 5.0;
        let labels = Tensor::zeros([256], (Kind::Int64, Device::Cpu));
        let k = Knockoffs::Gaussian.make(&images, &labels, 1).unwrap();
        assert_eq!(k.images.size(), images.size());
        let mean = k.images.mean(Kind::Float).double_value(&[]);
        let std = k.images.std(false).double_value(&[]);
        assert!((mean - 5.0).abs() < 0.1, "mean {mean}");
        assert!((std - 3.0).abs() < 0.1, "std {std}");
    }

    #[test]
    fn a_torchscript_generator_is_loaded_and_resized() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("generator.pt");
        // noise [N, 128] -> images [N, 2, 3, 3] from its first 18 values.
        let example = Tensor::zeros([1, GENERATOR_NOISE], (Kind::Float, Device::Cpu));
        let module = tch::CModule::create_by_tracing("Generator", "forward", &[example], &mut |inputs| {
            vec![inputs[0].narrow(1, 0, 18).view([-1, 2, 3, 3])]
        })
        .unwrap();
        module.save(&path).unwrap();
        let source = KnockoffSource::Generator { path };
        let knockoffs = Knockoffs::from_spec(&source, Device::Cpu).unwrap();
        let (images, labels) = batch();
        let k = knockoffs.make(&images, &labels, 3).unwrap();
        assert_eq!(k.images.size(), vec![8, 2, 4, 4]);
        let mut sorted = Vec::<i64>::try_from(&k.labels).unwrap();
        sorted.sort();
        assert_eq!(sorted, (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn a_missing_generator_names_the_field_and_file() {
        let source = KnockoffSource::Generator { path: "/nonexistent/generator.pt".into() };
        let err = Knockoffs::from_spec(&source, Device::Cpu).unwrap_err().to_string();
        assert!(err.starts_with("knockoff.source.path /nonexistent/generator.pt: cannot load"), "{err}");
    }
}
