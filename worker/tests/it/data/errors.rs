//! Bad data gives an error naming the file and the record, never a panic.

use std::path::Path;
use std::sync::Arc;

use scop_core::spec::{DataFormat, DataSpec};
use scop_worker::data::{Loader, LoaderConfig, Shard, Split};

use super::fixtures::*;

/// The error message with the temporary directory stripped.
fn check(spec: &DataSpec, split: Split, classes: usize, expected: &str) {
    let message = open_error(spec, split, classes);
    let root = format!("{}/", spec.root.display());
    assert_eq!(message.replace(&root, ""), expected);
}

fn fashion_like(dir: &Path, images: usize, labels: &[u8]) {
    write_idx(&dir.join("train-images-idx3-ubyte.gz"), 3, &[images as u32, 2, 2], &vec![7; images * 4]);
    write_idx(&dir.join("train-labels-idx1-ubyte.gz"), 1, &[labels.len() as u32], labels);
}

#[test]
fn idx_errors_name_the_file_and_record() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(DataFormat::Idx, dir.path());
    check(
        &spec,
        Split::Train,
        10,
        "train-images-idx3-ubyte.gz: missing (neither train-images-idx3-ubyte nor train-images-idx3-ubyte.gz exists)",
    );

    // Declares 60000 images of 28×28 but holds 5121 and a half.
    let images = dir.path().join("train-images-idx3-ubyte.gz");
    write_idx(&images, 3, &[60_000, 28, 28], &vec![0; 5121 * 784 + 300]);
    write_idx(&dir.path().join("train-labels-idx1-ubyte.gz"), 1, &[60_000], &vec![0; 60_000]);
    check(&spec, Split::Train, 10, "train-images-idx3-ubyte.gz: truncated at image 5121 of 60000");

    // A gzip stream cut short is reported the same way, at the last image it reached.
    let mut state = 1u32;
    let noise: Vec<u8> = (0..1000 * 784)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        })
        .collect();
    write_idx(&images, 3, &[1000, 28, 28], &noise);
    let whole = std::fs::read(&images).unwrap();
    std::fs::write(&images, &whole[..whole.len() / 2]).unwrap();
    let message = open_error(&spec, Split::Train, 10);
    let at: usize = message
        .strip_prefix(&format!("{}: truncated at image ", images.display()))
        .and_then(|rest| rest.strip_suffix(" of 1000"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{message}"));
    assert!((400..500).contains(&at), "half the compressed file holds about half the images: {message}");

    fashion_like(dir.path(), 5, &[0, 1, 2, 12, 3]);
    check(
        &spec,
        Split::Train,
        10,
        "train-labels-idx1-ubyte.gz: record 3 has label 12, but the model has 10 classes (labels 0..10)",
    );

    fashion_like(dir.path(), 5, &[0, 1, 2]);
    check(
        &spec,
        Split::Train,
        10,
        "train-labels-idx1-ubyte.gz: 3 labels, but train-images-idx3-ubyte.gz has 5 images",
    );
    let message = open_error(&spec, Split::Train, 10);
    assert!(message.contains(&dir.path().join("train-images-idx3-ubyte.gz").display().to_string()));

    // Labels where images belong: the magic number says idx1, not idx3.
    write_idx(&images, 1, &[5], &[0; 5]);
    check(
        &spec,
        Split::Train,
        10,
        "train-images-idx3-ubyte.gz: wrong magic number: expected 0x00000803, found 0x00000801",
    );
    std::fs::write(&images, b"\x1f\x8bnot really gzip").unwrap();
    let message = open_error(&spec, Split::Train, 10);
    assert!(message.starts_with(&format!("{}: ", images.display())), "{message}");
}

#[test]
fn cifar_errors_name_the_file_and_record() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(DataFormat::Cifar10, dir.path());
    check(&spec, Split::Train, 10, "data_batch_1.bin: missing (no data_batch_N.bin files)");
    check(&spec, Split::Test, 10, "test_batch.bin: missing (no such file)");

    write_cifar(&dir.path().join("data_batch_1.bin"), &cifar_records(2, 0));
    write_cifar(&dir.path().join("data_batch_3.bin"), &cifar_records(2, 0));
    check(
        &spec,
        Split::Train,
        10,
        "data_batch_2.bin: missing (the training batches must run from data_batch_1.bin to data_batch_3.bin)",
    );

    let mut records = cifar_records(3, 0);
    records[2].0 = 10;
    write_cifar(&dir.path().join("test_batch.bin"), &records);
    check(
        &spec,
        Split::Test,
        10,
        "test_batch.bin: record 2 has label 10, but the model has 10 classes (labels 0..10)",
    );

    write_cifar(&dir.path().join("test_batch.bin"), &cifar_records(3, 0));
    let bytes = std::fs::read(dir.path().join("test_batch.bin")).unwrap();
    std::fs::write(dir.path().join("test_batch.bin"), &bytes[..3073 * 2 + 100]).unwrap();
    check(&spec, Split::Test, 10, "test_batch.bin: truncated at record 2 of 3");
}

#[test]
fn image_folder_errors_name_the_folder_or_image() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(DataFormat::ImageFolder, dir.path());
    check(&spec, Split::Test, 2, "val: missing (expected a folder of class folders: val or test)");

    let train = dir.path().join("train");
    for class in ["a", "b", "c"] {
        std::fs::create_dir_all(train.join(class)).unwrap();
    }
    check(&spec, Split::Train, 2, "train: 3 class folders, but model.num_classes is 2");
    check(&spec, Split::Train, 3, "train/a: class folder holds no JPEG or PNG image");

    for class in ["a", "b", "c"] {
        pattern_rgb(5, 6, 0).save(train.join(class).join("ok.png")).unwrap();
    }
    std::fs::write(train.join("b/broken.png"), b"\x89PNG\r\n\x1a\nthen nothing useful").unwrap();
    let data = Arc::new(open(&spec, Split::Train, 4, None, 3));
    let loader = Loader::new(Arc::clone(&data), LoaderConfig::eval(2, Shard::SINGLE, 2)).unwrap();
    let results: Vec<_> = loader.epoch(0, 0).unwrap().collect();
    // a/ok.png and b/broken.png form batch 0: it fails, and the epoch ends there.
    assert_eq!(results.len(), 1);
    let message = results.into_iter().next().unwrap().unwrap_err().to_string();
    let prefix = format!("{}: cannot decode image: ", train.join("b/broken.png").display());
    assert!(message.starts_with(&prefix), "{message}");
}

#[test]
fn spec_mismatches_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar(&dir.path().join("test_batch.bin"), &cifar_records(2, 0));
    let base = spec(DataFormat::Cifar10, dir.path());
    let spec = DataSpec { mean: Some(vec![0.5, 0.5]), ..base.clone() };
    check(&spec, Split::Test, 10, "data.mean: expected 1 or 3 values, got 2");
    let spec = DataSpec { std: Some(vec![0.0]), ..base.clone() };
    check(&spec, Split::Test, 10, "data.std: must be > 0, got 0");

    let input = scop_worker::data::ModelInput { size: 32, channels: Some(4), num_classes: 10 };
    let err = scop_worker::data::Dataset::from_spec(&base, Split::Test, input).unwrap_err();
    assert_eq!(
        err.to_string(),
        "model.in_channels: cannot feed 3-channel images to a model with 4 input channels"
    );
}
