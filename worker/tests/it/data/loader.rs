//! The loader: sharding, deterministic order and augmentation, resuming mid-epoch, shapes.

use std::collections::BTreeSet;
use std::sync::Arc;

use scop_core::spec::{DataFormat, DataSpec};
use scop_worker::data::{Dataset, Loader, LoaderConfig, Shard, Split, measure_loader};

use super::fixtures::*;

fn cifar_dataset(records: usize, augment: bool) -> (tempfile::TempDir, Arc<Dataset>) {
    let dir = tempfile::tempdir().unwrap();
    write_cifar(&dir.path().join("data_batch_1.bin"), &cifar_records(records, 0));
    let spec = DataSpec { augment, ..identity_spec(DataFormat::Cifar10, dir.path()) };
    let data = Arc::new(open(&spec, Split::Train, 32, None, 10));
    (dir, data)
}

fn all_batches(loader: &Loader, epoch: u64, start: usize) -> Vec<(Vec<f32>, Vec<i64>)> {
    loader.epoch(epoch, start).unwrap().map(|b| contents(&b.unwrap())).collect()
}

#[test]
fn training_shards_are_equal_disjoint_and_cover_all_but_the_remainder() {
    let (_dir, data) = cifar_dataset(23, false);
    let world = 3;
    let loaders: Vec<Loader> = (0..world)
        .map(|rank| {
            Loader::new(Arc::clone(&data), LoaderConfig::train(2, Shard { rank, world }, 2, 5)).unwrap()
        })
        .collect();
    for epoch in 0..2 {
        let mut union = BTreeSet::new();
        for loader in &loaders {
            // 23 / 3 = 7 samples per rank, 3 full batches of 2.
            assert_eq!((loader.samples_per_epoch(), loader.batches_per_epoch()), (7, 3));
            let indices = loader.epoch_indices(epoch);
            assert_eq!(indices.len(), 6);
            union.extend(indices.iter().copied());
            let labels: Vec<i64> =
                all_batches(loader, epoch, 0).into_iter().flat_map(|(_, labels)| labels).collect();
            assert_eq!(labels, indices.iter().map(|&i| data.label(i)).collect::<Vec<_>>());
        }
        assert_eq!(union.len(), 18, "disjoint shards");
    }
    // Across epochs, the permutation covers every sample.
    let all: BTreeSet<usize> =
        (0..20).flat_map(|e| loaders.iter().flat_map(move |l| l.epoch_indices(e))).collect();
    assert_eq!(all.len(), 23);
}

#[test]
fn evaluation_shards_cover_every_sample_once() {
    let (_dir, data) = cifar_dataset(11, false);
    let mut seen = Vec::new();
    for rank in 0..3 {
        let loader =
            Loader::new(Arc::clone(&data), LoaderConfig::eval(3, Shard { rank, world: 3 }, 2)).unwrap();
        let batches = all_batches(&loader, 0, 0);
        assert_eq!(batches.len(), loader.batches_per_epoch());
        seen.extend(loader.epoch_indices(0));
        let count: usize = batches.iter().map(|(_, l)| l.len()).sum();
        assert_eq!(count, loader.samples_per_epoch());
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..11).collect::<Vec<_>>());
}

#[test]
fn shuffling_and_augmentation_depend_on_seed_and_epoch_only() {
    let (_dir, data) = cifar_dataset(12, true);
    let make = |seed, workers| {
        Loader::new(Arc::clone(&data), LoaderConfig::train(4, Shard::SINGLE, workers, seed)).unwrap()
    };
    let a = all_batches(&make(9, 1), 1, 0);
    assert_eq!(a, all_batches(&make(9, 3), 1, 0), "the worker count does not change the batches");
    assert_ne!(a, all_batches(&make(9, 1), 2, 0), "another epoch, another order");
    assert_ne!(a, all_batches(&make(10, 1), 1, 0), "another seed, another order");
    // The augmentation changes pixels but not which samples a batch holds.
    let plain = Loader::new(cifar_dataset(12, false).1, LoaderConfig::train(4, Shard::SINGLE, 1, 9)).unwrap();
    let b = all_batches(&plain, 1, 0);
    assert_eq!(a.iter().map(|x| &x.1).collect::<Vec<_>>(), b.iter().map(|x| &x.1).collect::<Vec<_>>());
    assert_ne!(a, b);
}

#[test]
fn resuming_mid_epoch_gives_the_same_batches() {
    let (_dir, data) = cifar_dataset(20, true);
    let loader = Loader::new(data, LoaderConfig::train(3, Shard::SINGLE, 2, 77)).unwrap();
    assert_eq!(loader.batches_per_epoch(), 6);
    let whole = all_batches(&loader, 4, 0);
    for start in [1, 4, 6] {
        let epoch = loader.epoch(4, start).unwrap();
        assert_eq!(epoch.len(), 6 - start);
        let batches: Vec<_> = epoch.map(Result::unwrap).collect();
        assert_eq!(batches.iter().map(|b| b.index).collect::<Vec<_>>(), (start..6).collect::<Vec<_>>());
        let resumed: Vec<_> = batches.iter().map(contents).collect();
        assert_eq!(resumed, whole[start..].to_vec(), "resumed at batch {start}");
    }
    assert!(loader.epoch(4, 7).unwrap_err().to_string().contains("cannot start at batch 7: the epoch has 6"));
}

#[test]
fn augmented_batches_have_the_model_input_shape() {
    // Fashion-MNIST 28×28 grayscale, fed to a 3-channel 32×32 model.
    let idx_spec =
        DataSpec { train_subset: Some(256), augment: true, ..spec(DataFormat::Idx, &fashion_mnist_dir()) };
    let data = Arc::new(open(&idx_spec, Split::Train, 32, Some(3), 10));
    assert_eq!(data.len(), 256);
    let loader = Loader::new(data, LoaderConfig::train(128, Shard::SINGLE, 2, 0)).unwrap();
    let batches: Vec<_> = loader.epoch(0, 0).unwrap().map(Result::unwrap).collect();
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[0].images.size(), vec![128, 3, 32, 32]);
    assert_eq!(batches[0].images.kind(), tch::Kind::Float);
    assert_eq!(batches[0].labels.size(), vec![128]);
    assert_eq!(batches[0].labels.kind(), tch::Kind::Int64);

    // ImageFolder with images of several sizes: random-resized crops all land at 24×24.
    let dir = tempfile::tempdir().unwrap();
    for (class, (h, w)) in [("a", (40, 60)), ("b", (17, 9)), ("c", (24, 24))] {
        std::fs::create_dir_all(dir.path().join("train").join(class)).unwrap();
        for i in 0..3 {
            pattern_rgb(h, w, i).save(dir.path().join(format!("train/{class}/{i}.png"))).unwrap();
        }
    }
    let spec = DataSpec { augment: true, ..spec(DataFormat::ImageFolder, dir.path()) };
    let data = Arc::new(open(&spec, Split::Train, 24, None, 3));
    let loader = Loader::new(data, LoaderConfig::train(4, Shard::SINGLE, 2, 1)).unwrap();
    let shapes: Vec<Vec<i64>> = loader.epoch(0, 0).unwrap().map(|b| b.unwrap().images.size()).collect();
    assert_eq!(shapes, vec![vec![4, 3, 24, 24]; 2]);
}

#[test]
fn the_throughput_probe_counts_every_image() {
    let (_dir, data) = cifar_dataset(10, true);
    let loader = Loader::new(data, LoaderConfig::train(4, Shard::SINGLE, 2, 0)).unwrap();
    // Two batches per epoch: five batches span three epochs.
    let t = measure_loader(&loader, 5).unwrap();
    assert_eq!((t.batches, t.images), (5, 20));
    assert!(t.images_per_second() > 0.0);
}
