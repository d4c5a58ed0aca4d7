//! Writers for small datasets in the exact on-disk formats, and spec builders.

use std::io::Write;
use std::path::{Path, PathBuf};

use scop_core::spec::{DataFormat, DataSpec};
use scop_worker::data::{Batch, Dataset, ModelInput, Split};

/// The repository's `data/fashion-mnist`, filled by `cargo xtask data`.
pub fn fashion_mnist_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/fashion-mnist");
    assert!(
        dir.join("train-images-idx3-ubyte.gz").is_file(),
        "{} has no Fashion-MNIST; run `cargo xtask data`",
        dir.display()
    );
    dir
}

pub fn spec(format: DataFormat, root: &Path) -> DataSpec {
    DataSpec {
        format,
        root: root.to_owned(),
        mean: None,
        std: None,
        train_subset: None,
        test_subset: None,
        augment: false,
        loader_workers: 2,
    }
}

/// A spec whose normalisation maps a pixel byte `p` to exactly `p` as f32.
pub fn identity_spec(format: DataFormat, root: &Path) -> DataSpec {
    DataSpec { mean: Some(vec![0.0]), std: Some(vec![1.0 / 255.0]), ..spec(format, root) }
}

pub fn open(spec: &DataSpec, split: Split, size: usize, channels: Option<usize>, classes: usize) -> Dataset {
    match Dataset::from_spec(spec, split, ModelInput { size, channels, num_classes: classes }) {
        Ok(d) => d,
        Err(e) => panic!("cannot open the dataset: {e}"),
    }
}

/// The message of the error `Dataset::from_spec` returns.
pub fn open_error(spec: &DataSpec, split: Split, classes: usize) -> String {
    match Dataset::from_spec(spec, split, ModelInput { size: 32, channels: None, num_classes: classes }) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

/// Writes an IDX file of unsigned bytes with the given dimensions, gzipped if the name ends in `.gz`.
pub fn write_idx(path: &Path, magic_dims: u8, dims: &[u32], data: &[u8]) {
    let mut bytes = vec![0, 0, 8, magic_dims];
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    write_maybe_gz(path, &bytes);
}

pub fn write_maybe_gz(path: &Path, bytes: &[u8]) {
    if path.extension().is_some_and(|e| e == "gz") {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        std::fs::write(path, enc.finish().unwrap()).unwrap();
    } else {
        std::fs::write(path, bytes).unwrap();
    }
}

/// `n` deterministic CIFAR records: (label, 3072 CHW bytes).
pub fn cifar_records(n: usize, salt: u8) -> Vec<(u8, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let label = ((i * 3 + usize::from(salt)) % 10) as u8;
            let image = (0..3072).map(|k| ((k * 7 + i * 13 + usize::from(salt) * 31) % 256) as u8).collect();
            (label, image)
        })
        .collect()
}

pub fn write_cifar(path: &Path, records: &[(u8, Vec<u8>)]) {
    let mut bytes = Vec::new();
    for (label, image) in records {
        bytes.push(*label);
        bytes.extend_from_slice(image);
    }
    std::fs::write(path, bytes).unwrap();
}

/// An RGB image of `h × w` with a pattern depending on `seed`, as HWC bytes.
pub fn pattern_rgb(h: u32, w: u32, seed: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 17 + seed * 5) as u8, (y * 29 + seed) as u8, ((x + y) * 11 + seed * 3) as u8])
    })
}

/// Batch tensors as plain vectors.
pub fn contents(batch: &Batch) -> (Vec<f32>, Vec<i64>) {
    let images = Vec::<f32>::try_from(batch.images.flatten(0, -1)).unwrap();
    let labels = Vec::<i64>::try_from(&batch.labels).unwrap();
    (images, labels)
}
