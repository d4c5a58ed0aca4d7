//! One decoded `u8` image in CHW layout, with channel conversion and resampling.
//!
//! Resampling is separable bilinear with antialiasing: when shrinking, the
//! triangle filter widens with the scale factor (as PIL's and torchvision's
//! antialiased bilinear resize do), so large images do not alias.

/// A `channels × height × width` image of bytes, channel-major (CHW).
#[derive(Debug, Clone, PartialEq)]
pub struct Pixels {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<u8>,
}

/// A rectangle of a source image, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
}

/// ITU-R BT.601 luma weights, as `PIL.Image.convert("L")` uses.
const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

impl Pixels {
    /// Converts interleaved HWC bytes (as image decoders produce) to CHW.
    pub fn from_hwc(hwc: &[u8], channels: usize, height: usize, width: usize) -> Self {
        let plane = height * width;
        let mut data = vec![0u8; channels * plane];
        if channels == 3 {
            // The common case, one pass with the three planes written side by side.
            let (r, gb) = data.split_at_mut(plane);
            let (g, b) = gb.split_at_mut(plane);
            for (((pixel, r), g), b) in hwc.chunks_exact(3).zip(r).zip(g).zip(b) {
                (*r, *g, *b) = (pixel[0], pixel[1], pixel[2]);
            }
        } else {
            for (c, dst) in data.chunks_exact_mut(plane.max(1)).enumerate() {
                for (d, pixel) in dst.iter_mut().zip(hwc.chunks_exact(channels)) {
                    *d = pixel[c];
                }
            }
        }
        Self { channels, height, width, data }
    }

    /// The same picture with `channels` channels: a single channel is
    /// replicated, three channels become luma for a one-channel model.
    /// Callers check beforehand that the conversion exists ([`convertible`]).
    pub fn to_channels(self, channels: usize) -> Self {
        let plane = self.height * self.width;
        if channels == self.channels {
            return self;
        }
        let data = if self.channels == 1 {
            self.data.repeat(channels)
        } else {
            (0..plane)
                .map(|i| {
                    let y: f32 = (0..3).map(|c| LUMA[c] * f32::from(self.data[c * plane + i])).sum();
                    y.round().clamp(0.0, 255.0) as u8
                })
                .collect()
        };
        Self { channels, data, ..self }
    }

    /// Resizes the whole image to `height × width`.
    pub fn resize(&self, height: usize, width: usize) -> Self {
        let all = Rect { top: 0, left: 0, height: self.height, width: self.width };
        self.crop_resize(all, height, width)
    }

    /// Cuts `rect` out of the image and resizes it to `height × width`.
    pub fn crop_resize(&self, rect: Rect, height: usize, width: usize) -> Self {
        if rect.height == height && rect.width == width {
            return self.crop(rect);
        }
        let columns = filter_taps(rect.left, rect.width, width);
        let rows = filter_taps(rect.top, rect.height, height);
        let plane = self.height * self.width;
        let mut data = vec![0u8; self.channels * height * width];
        // Horizontal pass over the rows of the rectangle, then a vertical pass
        // that adds whole rows (so it runs along memory, and vectorises).
        let mut wide = vec![0f32; rect.height * width];
        let mut sums = vec![0f32; width];
        for c in 0..self.channels {
            let src = &self.data[c * plane..(c + 1) * plane];
            for (y, out) in wide.chunks_exact_mut(width).enumerate() {
                let row = &src[(rect.top + y) * self.width..(rect.top + y + 1) * self.width];
                for (o, taps) in out.iter_mut().zip(&columns) {
                    let samples = &row[taps.first..taps.first + taps.weights.len()];
                    *o = taps.weights.iter().zip(samples).map(|(w, &v)| w * f32::from(v)).sum();
                }
            }
            let dst = &mut data[c * height * width..(c + 1) * height * width];
            for (out, taps) in dst.chunks_exact_mut(width).zip(&rows) {
                sums.fill(0.0);
                for (k, w) in taps.weights.iter().enumerate() {
                    let y = taps.first - rect.top + k;
                    for (s, &v) in sums.iter_mut().zip(&wide[y * width..(y + 1) * width]) {
                        *s += w * v;
                    }
                }
                // Rounds half away from zero, as f32::round, without the libm call.
                for (o, &s) in out.iter_mut().zip(&sums) {
                    *o = (s.clamp(0.0, 255.0) + 0.5) as u8;
                }
            }
        }
        Self { channels: self.channels, height, width, data }
    }

    fn crop(&self, rect: Rect) -> Self {
        let mut data = Vec::with_capacity(self.channels * rect.height * rect.width);
        for c in 0..self.channels {
            for y in rect.top..rect.top + rect.height {
                let start = (c * self.height + y) * self.width + rect.left;
                data.extend_from_slice(&self.data[start..start + rect.width]);
            }
        }
        Self { channels: self.channels, height: rect.height, width: rect.width, data }
    }
}

/// Whether [`Pixels::to_channels`] can turn `from` channels into `to`.
pub fn convertible(from: usize, to: usize) -> bool {
    from == to || from == 1 || (from == 3 && to == 1)
}

/// The source samples and weights one output coordinate reads.
#[derive(Debug, Clone)]
struct Taps {
    first: usize,
    weights: Vec<f32>,
}

/// Filter taps mapping `len` source samples starting at `start` onto `out` samples.
fn filter_taps(start: usize, len: usize, out: usize) -> Vec<Taps> {
    let scale = len as f32 / out as f32;
    let support = scale.max(1.0);
    (0..out)
        .map(|i| {
            // Centre of output sample i in source coordinates (pixel centres at +0.5).
            let centre = (i as f32 + 0.5) * scale;
            let lo = ((centre - support + 0.5).floor().max(0.0) as usize).min(len - 1);
            let hi = ((centre + support + 0.5).floor() as usize).clamp(lo + 1, len);
            let mut weights: Vec<f32> = (lo..hi)
                .map(|j| {
                    let distance = (j as f32 + 0.5 - centre) / support;
                    (1.0 - distance.abs()).max(0.0)
                })
                .collect();
            let total: f32 = weights.iter().sum();
            if total > 0.0 {
                weights.iter_mut().for_each(|w| *w /= total);
            } else {
                weights.iter_mut().for_each(|w| *w = 1.0 / (hi - lo) as f32);
            }
            Taps { first: start + lo, weights }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gray(height: usize, width: usize, data: Vec<u8>) -> Pixels {
        Pixels { channels: 1, height, width, data }
    }

    #[test]
    fn hwc_becomes_chw() {
        let p = Pixels::from_hwc(&[1, 2, 3, 4, 5, 6], 3, 1, 2);
        assert_eq!(p.data, vec![1, 4, 2, 5, 3, 6]);
    }

    #[test]
    fn channel_conversions() {
        let p = gray(1, 2, vec![7, 9]).to_channels(3);
        assert_eq!(p.data, vec![7, 9, 7, 9, 7, 9]);
        let rgb = Pixels { channels: 3, height: 1, width: 1, data: vec![255, 0, 0] };
        assert_eq!(rgb.to_channels(1).data, vec![76]);
        assert!(convertible(1, 4) && convertible(3, 1) && !convertible(3, 4));
    }

    #[test]
    fn resizing_a_constant_image_keeps_it_constant() {
        let p = gray(7, 5, vec![200; 35]);
        assert_eq!(p.resize(3, 11).data, vec![200; 33]);
        assert_eq!(p.resize(16, 16).data, vec![200; 256]);
    }

    #[test]
    fn resizing_matches_torch_antialiased_bilinear() {
        // Expected values from torch.nn.functional.interpolate(mode="bilinear",
        // antialias=True, align_corners=False), rounded.
        let p = gray(1, 4, vec![0, 80, 160, 240]);
        assert_eq!(p.resize(1, 2).data, vec![57, 183]);
        let p = gray(1, 2, vec![0, 100]);
        assert_eq!(p.resize(1, 4).data, vec![0, 25, 75, 100]);
    }

    #[test]
    fn crop_resize_equals_the_filter_applied_pixel_by_pixel() {
        // A reference that evaluates each output pixel on its own, horizontal taps
        // first, then vertical, in the same order of additions.
        let reference = |p: &Pixels, rect: Rect, height: usize, width: usize| -> Vec<u8> {
            let (columns, rows) =
                (filter_taps(rect.left, rect.width, width), filter_taps(rect.top, rect.height, height));
            let mut out = Vec::new();
            for c in 0..p.channels {
                for taps_y in &rows {
                    for taps_x in &columns {
                        let mut v = 0f32;
                        for (ky, wy) in taps_y.weights.iter().enumerate() {
                            let y = taps_y.first + ky;
                            let h: f32 = taps_x
                                .weights
                                .iter()
                                .enumerate()
                                .map(|(kx, wx)| {
                                    wx * f32::from(p.data[(c * p.height + y) * p.width + taps_x.first + kx])
                                })
                                .sum();
                            v += wy * h;
                        }
                        out.push(v.round().clamp(0.0, 255.0) as u8);
                    }
                }
            }
            out
        };
        let (channels, height, width) = (3, 37, 53);
        let data: Vec<u8> = (0..channels * height * width).map(|i| ((i * 7919) % 251) as u8).collect();
        let p = Pixels { channels, height, width, data };
        for (rect, h, w) in [
            (Rect { top: 0, left: 0, height, width }, 20, 31),
            (Rect { top: 5, left: 9, height: 17, width: 30 }, 24, 24),
            (Rect { top: 3, left: 2, height: 11, width: 7 }, 29, 40),
        ] {
            assert_eq!(p.crop_resize(rect, h, w).data, reference(&p, rect, h, w), "{rect:?} to {h}x{w}");
        }
    }

    #[test]
    fn hwc_to_chw_for_every_channel_count() {
        for channels in [1, 2, 3, 4] {
            let hwc: Vec<u8> = (0..channels * 6).map(|i| i as u8).collect();
            let p = Pixels::from_hwc(&hwc, channels, 2, 3);
            for c in 0..channels {
                let plane: Vec<u8> = (0..6).map(|i| (i * channels + c) as u8).collect();
                assert_eq!(p.data[c * 6..(c + 1) * 6], plane[..], "{channels} channels, channel {c}");
            }
        }
    }

    #[test]
    fn crop_resize_at_the_same_size_is_a_crop() {
        let p = gray(3, 3, (0..9).collect());
        let r = p.crop_resize(Rect { top: 1, left: 1, height: 2, width: 2 }, 2, 2);
        assert_eq!(r.data, vec![4, 5, 7, 8]);
    }
}
