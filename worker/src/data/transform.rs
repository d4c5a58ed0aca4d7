//! Per-sample transforms: channel conversion, pad/resize to the model's input,
//! training augmentation and per-channel normalisation into `f32`.
//!
//! Two families, chosen by the dataset's format:
//! - **small** images (IDX, CIFAR-10): pad with zeros up to the input size when
//!   at most 8 pixels short on each axis (28→32 pads 2 on each side), resize
//!   otherwise; training adds a random crop with 4 pixels of zero padding and a
//!   horizontal flip;
//! - **large** images (ImageFolder): training takes a random-resized crop
//!   (area 8–100 %, aspect 3/4–4/3) plus a flip; evaluation resizes the short
//!   side to `input × 256 / 224` and takes the centre crop.
//!
//! Pixel values are scaled to [0, 1] before `(x − mean) / std`, as torchvision's
//! `ToTensor` + `Normalize` do.

use rand::Rng;
use serde::Serialize;

use super::pixels::{Layout, Pixels, Rect};

/// Zero padding of the training random crop for small images.
const CROP_PADDING: i64 = 4;
/// Small images at most this many pixels below the input size are padded, not resized.
const MAX_PAD: usize = 8;

/// Which transform family applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Small,
    Large,
}

/// Everything needed to turn stored pixels into one normalised model input.
#[derive(Debug, Clone, PartialEq)]
pub struct Transform {
    pub family: Family,
    /// Side of the square model input.
    pub size: usize,
    /// Channels of the model input.
    pub channels: usize,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// Random augmentation (training split with `data.augment`).
    pub augment: bool,
}

/// Which part of the (resized) image lands in the output, and mirrored or not.
/// `top`/`left` may be negative or reach past the image: those pixels are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    top: i64,
    left: i64,
    flip: bool,
}

impl Transform {
    /// Number of `f32` values one transformed sample fills.
    pub fn sample_len(&self) -> usize {
        self.channels * self.size * self.size
    }

    /// Transforms `pixels` into `out` (length [`Self::sample_len`]), drawing
    /// the augmentation from `rng`.
    pub fn apply(&self, pixels: Pixels, rng: &mut impl Rng, out: &mut [f32]) {
        let pixels = pixels.to_channels(self.channels);
        let (image, window) = match self.family {
            Family::Small => self.small(pixels, rng),
            Family::Large => self.large(pixels, rng),
        };
        self.write_normalised(&image, window, out);
    }

    fn small(&self, pixels: Pixels, rng: &mut impl Rng) -> (Pixels, Window) {
        let s = self.size;
        let image = if pads_to(pixels.height, s) && pads_to(pixels.width, s) {
            pixels.into_planar()
        } else {
            pixels.resize(s, s)
        };
        let mut window = Window {
            top: -(((s - image.height) / 2) as i64),
            left: -(((s - image.width) / 2) as i64),
            flip: false,
        };
        if self.augment {
            window.top += rng.gen_range(-CROP_PADDING..=CROP_PADDING);
            window.left += rng.gen_range(-CROP_PADDING..=CROP_PADDING);
            window.flip = rng.gen_bool(0.5);
        }
        (image, window)
    }

    fn large(&self, pixels: Pixels, rng: &mut impl Rng) -> (Pixels, Window) {
        let s = self.size;
        if self.augment {
            let rect = random_resized_crop(pixels.height, pixels.width, rng);
            let flip = rng.gen_bool(0.5);
            (pixels.crop_resize(rect, s, s), Window { top: 0, left: 0, flip })
        } else {
            let (h, w) = short_side_resized(pixels.height, pixels.width, self.resize_short_side());
            // Centre crop; torchvision rounds the offset with Python's `round` (ties to even).
            // Both sides are at least `s` (the short one is `s × 256 / 224`).
            let top = ((h - s) as f64 / 2.0).round_ties_even() as usize;
            let left = ((w - s) as f64 / 2.0).round_ties_even() as usize;
            // Only the crop of the resized image is computed.
            let image = pixels.resize_window(h, w, Rect { top, left, height: s, width: s });
            (image, Window { top: 0, left: 0, flip: false })
        }
    }

    /// Short side of the evaluation resize for large images: `input × 256 / 224`.
    pub fn resize_short_side(&self) -> usize {
        self.size * 256 / 224
    }

    fn write_normalised(&self, image: &Pixels, window: Window, out: &mut [f32]) {
        debug_assert_eq!(image.layout, Layout::Planar, "the transforms hand over CHW images");
        let s = self.size;
        let (h, w) = (image.height as i64, image.width as i64);
        for c in 0..self.channels {
            // (p / 255 − mean) / std  ==  p · scale + shift
            let scale = 1.0 / (255.0 * self.std[c]);
            let shift = -self.mean[c] / self.std[c];
            let plane = &image.data[c * image.height * image.width..(c + 1) * image.height * image.width];
            let dst = &mut out[c * s * s..(c + 1) * s * s];
            for y in 0..s {
                let sy = window.top + y as i64;
                let row = &mut dst[y * s..(y + 1) * s];
                if !(0..h).contains(&sy) {
                    row.fill(shift);
                    continue;
                }
                let src_row = &plane[sy as usize * image.width..(sy as usize + 1) * image.width];
                let left = usize::try_from(window.left).ok().filter(|&l| l + s <= image.width);
                if let Some(left) = left {
                    // The whole row lies inside the image (always so for large images).
                    let src = &src_row[left..left + s];
                    let convert = |(v, &p): (&mut f32, &u8)| *v = f32::from(p) * scale + shift;
                    if window.flip {
                        row.iter_mut().zip(src.iter().rev()).for_each(convert);
                    } else {
                        row.iter_mut().zip(src).for_each(convert);
                    }
                    continue;
                }
                for (x, v) in row.iter_mut().enumerate() {
                    let dx = if window.flip { s - 1 - x } else { x } as i64;
                    let sx = window.left + dx;
                    *v = if (0..w).contains(&sx) {
                        f32::from(src_row[sx as usize]) * scale + shift
                    } else {
                        shift
                    };
                }
            }
        }
    }
}

/// Whether a side of `len` pixels is padded (not resized) to `size`.
pub(crate) fn pads_to(len: usize, size: usize) -> bool {
    len <= size && size - len <= MAX_PAD
}

/// Height and width after resizing the short side to `short`, keeping the aspect
/// (the long side rounds down, as torchvision's `Resize(int)` does).
fn short_side_resized(h: usize, w: usize, short: usize) -> (usize, usize) {
    if h <= w { (short, (short * w / h).max(short)) } else { ((short * h / w).max(short), short) }
}

/// torchvision's `RandomResizedCrop` box: 10 tries at a random area (8–100 %)
/// and log-uniform aspect ratio (3/4–4/3), else the centre crop of the
/// largest box with a ratio in range.
fn random_resized_crop(h: usize, w: usize, rng: &mut impl Rng) -> Rect {
    let area = (h * w) as f64;
    let (lo, hi) = ((3.0f64 / 4.0).ln(), (4.0f64 / 3.0).ln());
    for _ in 0..10 {
        let target = area * rng.gen_range(0.08..=1.0);
        let ratio = rng.gen_range(lo..=hi).exp();
        let cw = (target * ratio).sqrt().round() as usize;
        let ch = (target / ratio).sqrt().round() as usize;
        if cw > 0 && ch > 0 && cw <= w && ch <= h {
            let top = rng.gen_range(0..=h - ch);
            let left = rng.gen_range(0..=w - cw);
            return Rect { top, left, height: ch, width: cw };
        }
    }
    let in_ratio = w as f64 / h as f64;
    let (ch, cw) = if in_ratio < 3.0 / 4.0 {
        (((w as f64) * 4.0 / 3.0).round() as usize, w)
    } else if in_ratio > 4.0 / 3.0 {
        (h, ((h as f64) * 4.0 / 3.0).round() as usize)
    } else {
        (h, w)
    };
    let (ch, cw) = (ch.clamp(1, h), cw.clamp(1, w));
    Rect { top: (h - ch) / 2, left: (w - cw) / 2, height: ch, width: cw }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn small(size: usize, augment: bool) -> Transform {
        Transform {
            family: Family::Small,
            size,
            channels: 1,
            mean: vec![0.0],
            std: vec![1.0 / 255.0],
            augment,
        }
    }

    #[test]
    fn small_images_are_padded_centred_with_zeros() {
        let t = small(4, false);
        let p = Pixels::planar(1, 2, 2, vec![1, 2, 3, 4]);
        let mut out = vec![9.0; 16];
        t.apply(p, &mut ChaCha8Rng::seed_from_u64(0), &mut out);
        #[rustfmt::skip]
        let expected = [0., 0., 0., 0.,
                        0., 1., 2., 0.,
                        0., 3., 4., 0.,
                        0., 0., 0., 0.];
        assert_eq!(out, expected);
    }

    #[test]
    fn augmented_small_images_are_shifted_copies_within_the_padding() {
        let t = small(8, true);
        let data: Vec<u8> = (1..=64).collect();
        for seed in 0..20 {
            let mut out = vec![0.0; 64];
            t.apply(Pixels::planar(1, 8, 8, data.clone()), &mut ChaCha8Rng::seed_from_u64(seed), &mut out);
            // Every non-zero output is an input pixel; rows stay rows (value − 1 = 8·y + x).
            let kept: Vec<f32> = out.iter().copied().filter(|&v| v > 0.0).collect();
            assert!(kept.len() >= 16, "a crop within 4 pixels keeps at least a 4×4 block");
            for row in out.chunks(8) {
                let ys: Vec<u32> = row.iter().filter(|&&v| v > 0.0).map(|&v| (v as u32 - 1) / 8).collect();
                assert!(ys.windows(2).all(|p| p[0] == p[1]), "row mixes source rows: {row:?}");
            }
        }
    }

    #[test]
    fn normalisation_uses_mean_and_std_per_channel() {
        let t = Transform {
            family: Family::Small,
            size: 1,
            channels: 2,
            mean: vec![0.5, 0.0],
            std: vec![0.5, 2.0],
            augment: false,
        };
        let mut out = vec![0.0; 2];
        t.apply(Pixels::planar(2, 1, 1, vec![255, 51]), &mut ChaCha8Rng::seed_from_u64(0), &mut out);
        assert!((out[0] - 1.0).abs() < 1e-6 && (out[1] - 0.1).abs() < 1e-6, "{out:?}");
    }

    #[test]
    fn large_evaluation_resizes_the_short_side_then_centre_crops() {
        assert_eq!(short_side_resized(300, 400, 256), (256, 341));
        assert_eq!(short_side_resized(400, 300, 256), (341, 256));
        let t = Transform { family: Family::Large, size: 224, ..small(224, false) };
        assert_eq!(t.resize_short_side(), 256);
    }

    #[test]
    fn random_resized_crops_stay_inside_the_image() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for (h, w) in [(100, 100), (50, 400), (400, 50), (1, 1), (3, 200)] {
            for _ in 0..50 {
                let r = random_resized_crop(h, w, &mut rng);
                assert!(r.height >= 1 && r.width >= 1, "{r:?}");
                assert!(r.top + r.height <= h && r.left + r.width <= w, "{r:?} in {h}×{w}");
            }
        }
    }
}
