//! Reader for ImageFolder datasets: one sub-folder of JPEG/PNG images per class.
//!
//! The training split lives in `root/train/`, the test split in `root/val/` (or
//! `root/test/`). Classes are the sub-folders sorted by name and numbered from 0;
//! files are sorted by name within a class. Files whose extension is not
//! `.jpg`, `.jpeg` or `.png` (any case) are skipped, as torchvision does. Only
//! the file list is kept in memory: images are decoded by the loader threads,
//! each batch's images in parallel across the loader's workers.

use std::path::{Path, PathBuf};

use super::dataset::Split;
use super::error::{DataError, Result};
use super::pixels::Pixels;

/// The file list of one split.
#[derive(Debug, Clone)]
pub(crate) struct ImageFiles {
    pub classes: Vec<String>,
    pub files: Vec<PathBuf>,
    pub labels: Vec<u32>,
}

impl ImageFiles {
    /// Lists the split's class folders and images; the number of classes must be `num_classes`.
    pub fn scan(root: &Path, split: Split, num_classes: usize) -> Result<Self> {
        let dir = split_dir(root, split)?;
        let mut class_dirs: Vec<PathBuf> = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| DataError::io(&dir, e))? {
            let path = entry.map_err(|e| DataError::io(&dir, e))?.path();
            if path.is_dir() {
                class_dirs.push(path);
            }
        }
        class_dirs.sort();
        if class_dirs.len() != num_classes {
            return Err(DataError::ClassCount { path: dir, found: class_dirs.len(), expected: num_classes });
        }
        let mut out = Self { classes: Vec::new(), files: Vec::new(), labels: Vec::new() };
        for (label, class_dir) in (0u32..).zip(&class_dirs) {
            let mut images: Vec<PathBuf> = Vec::new();
            for entry in std::fs::read_dir(class_dir).map_err(|e| DataError::io(class_dir, e))? {
                let path = entry.map_err(|e| DataError::io(class_dir, e))?.path();
                if path.is_file() && has_image_extension(&path) {
                    images.push(path);
                }
            }
            if images.is_empty() {
                return Err(DataError::EmptyClass { path: class_dir.clone() });
            }
            images.sort();
            out.labels.extend(std::iter::repeat_n(label, images.len()));
            out.files.extend(images);
            let name = class_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            out.classes.push(name);
        }
        Ok(out)
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Keeps `n` samples spread evenly over the sorted list, so that a small
    /// subset still holds every class (the first `n` would hold only the first classes).
    pub fn spread_subset(&mut self, n: usize) {
        let len = self.len();
        if n >= len {
            return;
        }
        let keep: Vec<usize> = (0..n).map(|i| i * len / n).collect();
        self.files = keep.iter().map(|&i| self.files[i].clone()).collect();
        self.labels = keep.iter().map(|&i| self.labels[i]).collect();
    }
}

/// Decodes one image file as `channels` (1: luma, 3: RGB) bytes, interleaved
/// as the decoder wrote them.
pub(crate) fn decode(path: &Path, channels: usize) -> Result<Pixels> {
    let undecodable = |reason: String| DataError::Undecodable { path: path.to_owned(), reason };
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let image = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| undecodable(e.to_string()))?
        .decode()
        .map_err(|e| undecodable(e.to_string()))?;
    let (width, height) = (image.width() as usize, image.height() as usize);
    if width == 0 || height == 0 {
        return Err(undecodable(format!("empty image ({width}×{height})")));
    }
    let interleaved = match channels {
        1 => image.into_luma8().into_raw(),
        _ => image.into_rgb8().into_raw(),
    };
    Ok(Pixels::interleaved(channels.min(3), height, width, interleaved))
}

fn split_dir(root: &Path, split: Split) -> Result<PathBuf> {
    let candidates: &[&str] = match split {
        Split::Train => &["train"],
        Split::Test => &["val", "test"],
    };
    candidates.iter().map(|name| root.join(name)).find(|p| p.is_dir()).ok_or_else(|| DataError::MissingFile {
        path: root.join(candidates[0]),
        what: format!("expected a folder of class folders: {}", candidates.join(" or ")),
    })
}

fn has_image_extension(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    matches!(ext.as_deref(), Some("jpg" | "jpeg" | "png"))
}
