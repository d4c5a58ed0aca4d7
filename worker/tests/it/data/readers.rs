//! Each format reads back exactly what was written; Fashion-MNIST has its known size and statistics.

use std::sync::Arc;

use scop_core::spec::DataFormat;
use scop_worker::data::{Loader, LoaderConfig, Shard, Split};

use super::fixtures::*;

#[test]
fn fashion_mnist_has_60000_and_10000_images_with_the_known_mean() {
    let dir = fashion_mnist_dir();
    let spec = identity_spec(DataFormat::Idx, &dir);
    let test = open(&spec, Split::Test, 28, None, 10);
    assert_eq!(test.len(), 10_000);
    let train = Arc::new(open(&spec, Split::Train, 28, None, 10));
    assert_eq!(train.len(), 60_000);
    assert_eq!(train.sample_shape(), [1, 28, 28]);

    let mut per_class = [0usize; 10];
    for i in 0..train.len() {
        per_class[usize::try_from(train.label(i)).unwrap()] += 1;
    }
    assert_eq!(per_class, [6000; 10], "Fashion-MNIST is balanced");

    let loader = Loader::new(train, LoaderConfig::eval(2000, Shard::SINGLE, 2)).unwrap();
    let mut sum = 0.0f64;
    let mut seen = 0;
    for batch in loader.epoch(0, 0).unwrap() {
        let batch = batch.unwrap();
        sum += batch.images.sum(tch::Kind::Double).double_value(&[]);
        seen += batch.labels.size1().unwrap();
    }
    assert_eq!(seen, 60_000);
    let mean = sum / (60_000.0 * 784.0) / 255.0;
    assert!((mean - 0.2860).abs() < 5e-4, "mean pixel {mean}");
}

#[test]
fn fashion_mnist_padded_to_32_with_default_normalisation() {
    let spec = spec(DataFormat::Idx, &fashion_mnist_dir());
    let test = open(&spec, Split::Test, 32, Some(3), 10);
    assert_eq!(test.sample_shape(), [3, 32, 32]);
    let mut out = vec![0.0; 3 * 32 * 32];
    test.sample_into(0, 0, 0, &mut out).unwrap();
    // The 2-pixel border is zero before normalisation, i.e. −mean/std after.
    let border = -0.2860 / 0.3530;
    assert!((out[0] - border).abs() < 1e-6 && (out[32 * 32 - 1] - border).abs() < 1e-6);
    assert_eq!(&out[..1024], &out[1024..2048], "grayscale replicated to every channel");
    let pre = test.preprocessing();
    assert_eq!(pre.resize, "pad 28×28 with zeros to 32×32, centred");
    assert_eq!((pre.input_size, pre.channels), (32, 3));
    assert_eq!(pre.mean, vec![0.2860; 3]);
}

#[test]
fn raw_idx_files_read_like_gzipped_ones() {
    let dir = tempfile::tempdir().unwrap();
    let images: Vec<u8> = (0..5 * 4).map(|i| (i * 11) as u8).collect();
    write_idx(&dir.path().join("t10k-images-idx3-ubyte"), 3, &[5, 2, 2], &images);
    write_idx(&dir.path().join("t10k-labels-idx1-ubyte.gz"), 1, &[5], &[4, 3, 2, 1, 0]);
    let test = open(&identity_spec(DataFormat::Idx, dir.path()), Split::Test, 2, None, 5);
    let mut out = vec![0.0; 4];
    assert_eq!(test.sample_into(3, 0, 0, &mut out).unwrap(), 1);
    assert_eq!(out, vec![132.0, 143.0, 154.0, 165.0]);
}

#[test]
fn cifar_batches_read_back_exactly_from_the_subfolder() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("cifar-10-batches-bin");
    std::fs::create_dir(&bin).unwrap();
    let (first, second, test) = (cifar_records(3, 0), cifar_records(2, 1), cifar_records(4, 2));
    write_cifar(&bin.join("data_batch_1.bin"), &first);
    write_cifar(&bin.join("data_batch_2.bin"), &second);
    write_cifar(&bin.join("test_batch.bin"), &test);
    let spec = identity_spec(DataFormat::Cifar10, dir.path());

    let train = open(&spec, Split::Train, 32, None, 10);
    let expected: Vec<_> = first.iter().chain(&second).collect();
    assert_eq!(train.len(), 5);
    let mut out = vec![0.0; 3072];
    for (i, (label, image)) in expected.iter().enumerate() {
        assert_eq!(train.sample_into(i, 0, 0, &mut out).unwrap(), i64::from(*label));
        assert!(out.iter().zip(image).all(|(&v, &p)| v == f32::from(p)), "record {i} differs");
    }
    assert_eq!(open(&spec, Split::Test, 32, None, 10).len(), 4);

    // A one-channel model sees the luma of each pixel.
    let gray = open(&spec, Split::Train, 32, Some(1), 10);
    let mut out = vec![0.0; 1024];
    gray.sample_into(0, 0, 0, &mut out).unwrap();
    let (r, g, b) = (f32::from(first[0].1[0]), f32::from(first[0].1[1024]), f32::from(first[0].1[2048]));
    assert_eq!(out[0], (0.299 * r + 0.587 * g + 0.114 * b).round());
}

#[test]
fn image_folder_reads_png_exactly_and_jpeg_closely_with_sorted_classes() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train");
    for class in ["zebra", "ant", "moth"] {
        std::fs::create_dir_all(train.join(class)).unwrap();
    }
    // Evaluation at input 7 resizes the short side to 7·256/224 = 8: an 8×8 image
    // is kept as is, and the centre crop starts at (0, 0).
    for (k, class) in ["zebra", "ant"].iter().enumerate() {
        for i in 0..2 {
            pattern_rgb(8, 8, (k * 2 + i) as u32).save(train.join(class).join(format!("{i}.png"))).unwrap();
        }
    }
    let flat = image::RgbImage::from_pixel(8, 8, image::Rgb([200, 100, 50]));
    flat.save(train.join("moth/a.JPG")).unwrap();
    std::fs::write(train.join("moth/notes.txt"), "not an image").unwrap();

    let spec = identity_spec(DataFormat::ImageFolder, dir.path());
    let data = open(&spec, Split::Train, 7, None, 3);
    assert_eq!(data.class_names(), vec!["ant", "moth", "zebra"]);
    assert_eq!(data.len(), 5);
    assert_eq!((0..5).map(|i| data.label(i)).collect::<Vec<_>>(), vec![0, 0, 1, 2, 2]);

    let mut out = vec![0.0; 3 * 49];
    data.sample_into(4, 0, 0, &mut out).unwrap(); // zebra/1.png, pattern seed 1
    let png = pattern_rgb(8, 8, 1);
    for c in 0..3 {
        for y in 0..7 {
            for x in 0..7 {
                let expected = f32::from(png.get_pixel(x as u32, y as u32)[c]);
                assert_eq!(out[c * 49 + y * 7 + x], expected, "channel {c} at ({y}, {x})");
            }
        }
    }
    data.sample_into(2, 0, 0, &mut out).unwrap(); // moth/a.JPG
    for (c, want) in [200.0f32, 100.0, 50.0].iter().enumerate() {
        assert!(out[c * 49..(c + 1) * 49].iter().all(|v| (v - want).abs() <= 3.0), "channel {c}");
    }
}
