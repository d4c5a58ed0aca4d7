//! One decoded `u8` image, channel-major (CHW) or interleaved (HWC, as image
//! decoders produce it), with channel conversion and resampling.
//!
//! Resampling is separable bilinear with antialiasing: when shrinking, the
//! triangle filter widens with the scale factor (as PIL's and torchvision's
//! antialiased bilinear resize do), so large images do not alias. It reads
//! either layout and writes CHW, so a decoded photo is never transposed whole:
//! only the pixels of the crop are read.

/// How an image's bytes are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Channel-major: `channels` planes of `height × width` (CHW).
    Planar,
    /// Pixel-major: `height × width` pixels of `channels` bytes each (HWC).
    Interleaved,
}

/// A `channels × height × width` image of bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Pixels {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub layout: Layout,
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
    /// A channel-major (CHW) image.
    pub fn planar(channels: usize, height: usize, width: usize, data: Vec<u8>) -> Self {
        Self { channels, height, width, layout: Layout::Planar, data }
    }

    /// An interleaved (HWC) image, as image decoders produce it.
    pub fn interleaved(channels: usize, height: usize, width: usize, data: Vec<u8>) -> Self {
        // One channel reads the same either way; calling it planar spares a conversion.
        let layout = if channels == 1 { Layout::Planar } else { Layout::Interleaved };
        Self { channels, height, width, layout, data }
    }

    /// The same image, channel-major.
    pub fn into_planar(self) -> Self {
        if self.layout == Layout::Planar {
            return self;
        }
        let (channels, plane) = (self.channels, self.height * self.width);
        let mut data = vec![0u8; channels * plane];
        if channels == 3 {
            // The common case, one pass with the three planes written side by side.
            let (r, gb) = data.split_at_mut(plane);
            let (g, b) = gb.split_at_mut(plane);
            for (((pixel, r), g), b) in self.data.chunks_exact(3).zip(r).zip(g).zip(b) {
                (*r, *g, *b) = (pixel[0], pixel[1], pixel[2]);
            }
        } else {
            for (c, dst) in data.chunks_exact_mut(plane.max(1)).enumerate() {
                for (d, pixel) in dst.iter_mut().zip(self.data.chunks_exact(channels)) {
                    *d = pixel[c];
                }
            }
        }
        Self { layout: Layout::Planar, data, ..self }
    }

    /// The same picture with `channels` channels: a single channel is
    /// replicated, three channels become luma for a one-channel model.
    /// Callers check beforehand that the conversion exists ([`convertible`]).
    pub fn to_channels(self, channels: usize) -> Self {
        if channels == self.channels {
            return self;
        }
        let planar = self.into_planar();
        let plane = planar.height * planar.width;
        let data = if planar.channels == 1 {
            planar.data.repeat(channels)
        } else {
            (0..plane)
                .map(|i| {
                    let y: f32 = (0..3).map(|c| LUMA[c] * f32::from(planar.data[c * plane + i])).sum();
                    y.round().clamp(0.0, 255.0) as u8
                })
                .collect()
        };
        Self { channels, data, ..planar }
    }

    /// Resizes the whole image to `height × width`.
    pub fn resize(&self, height: usize, width: usize) -> Self {
        let all = Rect { top: 0, left: 0, height: self.height, width: self.width };
        self.crop_resize(all, height, width)
    }

    /// Cuts `rect` out of the image and resizes it to `height × width` (CHW).
    pub fn crop_resize(&self, rect: Rect, height: usize, width: usize) -> Self {
        if rect.height == height && rect.width == width {
            return self.crop(rect);
        }
        let columns = filter_taps(rect.left, rect.width, width);
        let rows = filter_taps(rect.top, rect.height, height);
        self.filter(&rows, &columns)
    }

    /// The `window` of the image resized to `height × width` (CHW): the bytes
    /// of `self.resize(height, width)` inside `window`, computing only those
    /// (an evaluation centre crop needs about half of the resized image).
    /// `window` must lie inside `height × width`.
    pub fn resize_window(&self, height: usize, width: usize, window: Rect) -> Self {
        if height == self.height && width == self.width {
            return self.crop(window);
        }
        let columns = filter_taps(0, self.width, width);
        let rows = filter_taps(0, self.height, height);
        self.filter(
            &rows[window.top..window.top + window.height],
            &columns[window.left..window.left + window.width],
        )
    }

    /// One output pixel per pair of `rows` and `columns` taps, CHW.
    fn filter(&self, rows: &[Taps], columns: &[Taps]) -> Self {
        let (height, width) = (rows.len(), columns.len());
        let mut data = vec![0u8; self.channels * height * width];
        match (self.layout, self.channels) {
            (Layout::Interleaved, 3) => {
                let row_len = self.width * 3;
                let row = |y: usize| &self.data[y * row_len..(y + 1) * row_len];
                resample::<3>(row, rows, columns, &mut data);
            }
            (Layout::Interleaved, _) => return self.clone().into_planar().filter(rows, columns),
            (Layout::Planar, _) => {
                let plane = self.height * self.width;
                for (c, out) in data.chunks_exact_mut((height * width).max(1)).enumerate() {
                    let src = &self.data[c * plane..(c + 1) * plane];
                    let row = |y: usize| &src[y * self.width..(y + 1) * self.width];
                    resample::<1>(row, rows, columns, out);
                }
            }
        }
        Self::planar(self.channels, height, width, data)
    }

    /// The bytes of `rect`, channel-major.
    fn crop(&self, rect: Rect) -> Self {
        let mut data = Vec::with_capacity(self.channels * rect.height * rect.width);
        match self.layout {
            Layout::Planar => {
                for c in 0..self.channels {
                    for y in rect.top..rect.top + rect.height {
                        let start = (c * self.height + y) * self.width + rect.left;
                        data.extend_from_slice(&self.data[start..start + rect.width]);
                    }
                }
            }
            Layout::Interleaved => {
                let row_len = self.width * self.channels;
                for c in 0..self.channels {
                    for y in rect.top..rect.top + rect.height {
                        let row = &self.data[y * row_len..(y + 1) * row_len];
                        let pixels = row[rect.left * self.channels..(rect.left + rect.width) * self.channels]
                            .chunks_exact(self.channels);
                        data.extend(pixels.map(|pixel| pixel[c]));
                    }
                }
            }
        }
        Self::planar(self.channels, rect.height, rect.width, data)
    }
}

/// The filter of [`Pixels::crop_resize`]: output pixel `(y, x)` of `C` planes
/// of `out` from the taps `rows[y]` and `columns[x]`, on an image whose source
/// row `y` is `row(y)`, pixels of `C` interleaved channels.
///
/// One output row at a time: a vertical pass adds the source rows its taps
/// read across the columns that any tap reads (along memory, so it vectorises,
/// and it does the larger share of the work when shrinking), then a horizontal
/// pass filters that one row. Sums run in tap order; rounding is half away
/// from zero, as `f32::round`, without the libm call.
fn resample<'a, const C: usize>(
    row: impl Fn(usize) -> &'a [u8],
    rows: &[Taps],
    columns: &[Taps],
    out: &mut [u8],
) {
    let left = columns.iter().map(|t| t.first).min().unwrap_or(0);
    let right = columns.iter().map(|t| t.first + t.weights.len()).max().unwrap_or(left);
    let span = (right - left) * C;
    let width = columns.len();
    let plane = rows.len() * width;
    let mut tall = vec![0f32; span];
    for (y, taps) in rows.iter().enumerate() {
        tall.fill(0.0);
        for (k, &w) in taps.weights.iter().enumerate() {
            let src = &row(taps.first + k)[left * C..left * C + span];
            for (t, &v) in tall.iter_mut().zip(src) {
                *t += w * f32::from(v);
            }
        }
        for (x, taps) in columns.iter().enumerate() {
            let lo = (taps.first - left) * C;
            let window = &tall[lo..lo + taps.weights.len() * C];
            let mut sums = [0f32; C];
            for (w, pixel) in taps.weights.iter().zip(window.chunks_exact(C)) {
                for (s, &v) in sums.iter_mut().zip(pixel) {
                    *s += w * v;
                }
            }
            for (c, s) in sums.into_iter().enumerate() {
                out[c * plane + y * width + x] = (s.clamp(0.0, 255.0) + 0.5) as u8;
            }
        }
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
        Pixels::planar(1, height, width, data)
    }

    #[test]
    fn hwc_becomes_chw() {
        let p = Pixels::interleaved(3, 1, 2, vec![1, 2, 3, 4, 5, 6]).into_planar();
        assert_eq!((p.layout, p.data), (Layout::Planar, vec![1, 4, 2, 5, 3, 6]));
    }

    #[test]
    fn channel_conversions() {
        let p = gray(1, 2, vec![7, 9]).to_channels(3);
        assert_eq!(p.data, vec![7, 9, 7, 9, 7, 9]);
        let rgb = Pixels::planar(3, 1, 1, vec![255, 0, 0]);
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
    fn two_dimensional_resizes_match_torch_antialiased_bilinear() {
        // torch.nn.functional.interpolate(x, size, mode="bilinear", antialias=True,
        // align_corners=False), rounded, on this 7×9 image: a shrink, a mixed
        // stretch-and-shrink and a square shrink. The value nearest a half is
        // torch's 87.495 (the 4th of the last), which both round to 87.
        let p = gray(7, 9, (0..63).map(|i| ((i * 37 + 11) % 256) as u8).collect());
        assert_eq!(p.resize(3, 4).data, vec![108, 144, 123, 105, 131, 123, 145, 137, 163, 145, 124, 126]);
        #[rustfmt::skip]
        let stretched = vec![
            37, 57, 82, 108, 133, 159, 185, 151, 151, 163, 71, 57, 77,
            131, 151, 176, 202, 140, 111, 137, 83, 74, 100, 125, 151, 171,
            195, 128, 78, 104, 101, 108, 134, 160, 167, 164, 190, 140, 73,
            97, 117, 143, 168, 194, 185, 131, 157, 128, 66, 92, 117, 137,
            191, 211, 197, 105, 117, 117, 83, 109, 135, 160, 186, 133, 61,
        ];
        assert_eq!(p.resize(5, 13).data, stretched);
        assert_eq!(
            p.resize(4, 4).data,
            vec![82, 146, 137, 87, 157, 116, 118, 154, 114, 150, 152, 111, 181, 131, 122, 136]
        );
    }

    #[test]
    fn crop_resize_equals_the_filter_applied_pixel_by_pixel() {
        // A reference that evaluates each output pixel on its own, vertical taps
        // first, then horizontal, in the same order of additions.
        let reference = |p: &Pixels, rect: Rect, height: usize, width: usize| -> Vec<u8> {
            let (columns, rows) =
                (filter_taps(rect.left, rect.width, width), filter_taps(rect.top, rect.height, height));
            let mut out = Vec::new();
            for c in 0..p.channels {
                for taps_y in &rows {
                    for taps_x in &columns {
                        let mut v = 0f32;
                        for (kx, wx) in taps_x.weights.iter().enumerate() {
                            let x = taps_x.first + kx;
                            let column: f32 = taps_y
                                .weights
                                .iter()
                                .enumerate()
                                .map(|(ky, wy)| {
                                    wy * f32::from(p.data[(c * p.height + taps_y.first + ky) * p.width + x])
                                })
                                .sum();
                            v += wx * column;
                        }
                        out.push(v.round().clamp(0.0, 255.0) as u8);
                    }
                }
            }
            out
        };
        let (channels, height, width) = (3, 37, 53);
        let data: Vec<u8> = (0..channels * height * width).map(|i| ((i * 7919) % 251) as u8).collect();
        let p = Pixels::planar(channels, height, width, data);
        for (rect, h, w) in [
            (Rect { top: 0, left: 0, height, width }, 20, 31),
            (Rect { top: 5, left: 9, height: 17, width: 30 }, 24, 24),
            (Rect { top: 3, left: 2, height: 11, width: 7 }, 29, 40),
        ] {
            assert_eq!(p.crop_resize(rect, h, w).data, reference(&p, rect, h, w), "{rect:?} to {h}x{w}");
        }
    }

    #[test]
    fn a_resized_window_is_the_window_of_the_resized_image() {
        for channels in [1, 3] {
            let (height, width) = (31, 45);
            let hwc: Vec<u8> = (0..channels * height * width).map(|i| ((i * 7919) % 251) as u8).collect();
            let interleaved = Pixels::interleaved(channels, height, width, hwc);
            for image in [interleaved.clone(), interleaved.into_planar()] {
                for (h, w, window) in [
                    (20, 29, Rect { top: 3, left: 7, height: 14, width: 14 }),
                    (40, 58, Rect { top: 0, left: 0, height: 40, width: 58 }),
                    (40, 58, Rect { top: 39, left: 50, height: 1, width: 8 }),
                    (31, 45, Rect { top: 5, left: 6, height: 10, width: 12 }),
                ] {
                    let whole = image.resize(h, w);
                    let expected = whole.crop(window);
                    assert_eq!(
                        image.resize_window(h, w, window),
                        expected,
                        "{:?} {h}x{w} {window:?}",
                        image.layout
                    );
                }
            }
        }
    }

    #[test]
    fn hwc_to_chw_for_every_channel_count() {
        for channels in [1, 2, 3, 4] {
            let hwc: Vec<u8> = (0..channels * 6).map(|i| i as u8).collect();
            let p = Pixels::interleaved(channels, 2, 3, hwc).into_planar();
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

    #[test]
    fn interleaved_and_planar_images_resample_alike() {
        // The same picture in both layouts gives the same bytes, bit for bit, for
        // RGB (read interleaved) and for other channel counts (converted first).
        for channels in [1, 2, 3, 4] {
            let (height, width) = (29, 41);
            let hwc: Vec<u8> = (0..channels * height * width).map(|i| ((i * 7919) % 251) as u8).collect();
            let interleaved = Pixels::interleaved(channels, height, width, hwc);
            let planar = interleaved.clone().into_planar();
            for (rect, h, w) in [
                (Rect { top: 0, left: 0, height, width }, 13, 17),
                (Rect { top: 4, left: 6, height: 20, width: 30 }, 20, 30),
                (Rect { top: 2, left: 3, height: 9, width: 8 }, 24, 24),
            ] {
                let (a, b) = (interleaved.crop_resize(rect, h, w), planar.crop_resize(rect, h, w));
                assert_eq!(a.layout, Layout::Planar);
                assert_eq!(a, b, "{channels} channels, {rect:?} to {h}x{w}");
            }
            if convertible(channels, 1) {
                assert_eq!(interleaved.to_channels(1), planar.to_channels(1), "{channels} channels to luma");
            }
        }
    }
}
