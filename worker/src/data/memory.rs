//! Decoded datasets held in memory as compact `u8` pixels (IDX, CIFAR-10).

/// `len()` images of `channels × height × width` bytes (CHW), with one label byte each.
#[derive(Debug, Clone)]
pub(crate) struct InMemory {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// All images back to back, CHW each.
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
}

impl InMemory {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The CHW bytes of image `index`.
    pub fn image(&self, index: usize) -> &[u8] {
        let len = self.image_len();
        &self.pixels[index * len..(index + 1) * len]
    }

    /// Keeps only the first `n` samples.
    pub fn truncate(&mut self, n: usize) {
        if n < self.len() {
            self.labels.truncate(n);
            self.pixels.truncate(n * self.image_len());
        }
    }
}
