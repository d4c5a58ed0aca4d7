//! Which samples a rank sees in an epoch, in which order, and the random stream
//! that augments each of them: all pure functions of `(seed, epoch, …)`.
//!
//! **Sharding.** With shuffling (training), an epoch is one permutation of the
//! whole dataset; rank `r` of `world` takes the `r`-th of `world` equal,
//! contiguous slices of `len / world` samples. The `len % world` samples at the
//! end of the permutation are *dropped* for that epoch (a different few each
//! epoch), so every rank has the same number of samples and batches.
//! Without shuffling (evaluation), rank `r` takes samples `r, r + world, …`:
//! the shards cover every sample exactly once, and their sizes differ by at most one.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// This process's part of the data: rank `rank` of `world`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub rank: usize,
    pub world: usize,
}

impl Shard {
    /// The whole dataset for a single process.
    pub const SINGLE: Self = Self { rank: 0, world: 1 };
}

/// Domain tags so that the shuffle and the augmentation streams never coincide.
const SHUFFLE: u64 = 0x5348_5546_464c_4500;
const AUGMENT: u64 = 0x4155_474d_454e_5400;

/// The dataset indices rank `shard.rank` visits in `epoch`, in order.
pub fn epoch_indices(len: usize, shard: Shard, shuffle: bool, seed: u64, epoch: u64) -> Vec<usize> {
    if !shuffle {
        return (shard.rank..len).step_by(shard.world.max(1)).collect();
    }
    let mut all: Vec<usize> = (0..len).collect();
    all.shuffle(&mut ChaCha8Rng::seed_from_u64(mix(&[SHUFFLE, seed, epoch])));
    let per_rank = len / shard.world;
    all[shard.rank * per_rank..(shard.rank + 1) * per_rank].to_vec()
}

/// The random stream that augments dataset sample `index` in `epoch`.
pub fn sample_rng(seed: u64, epoch: u64, index: usize) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix(&[AUGMENT, seed, epoch, index as u64]))
}

/// Folds words into one well-mixed 64-bit value (SplitMix64's finaliser per word).
fn mix(words: &[u64]) -> u64 {
    words.iter().fold(0x9e37_79b9_7f4a_7c15u64, |h, &w| {
        let mut z = (h ^ w).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn shuffled_shards_are_equal_disjoint_and_cover_all_but_the_remainder() {
        let (len, world) = (103, 4);
        for epoch in 0..3 {
            let shards: Vec<Vec<usize>> =
                (0..world).map(|rank| epoch_indices(len, Shard { rank, world }, true, 7, epoch)).collect();
            assert!(shards.iter().all(|s| s.len() == 25));
            let union: BTreeSet<usize> = shards.iter().flatten().copied().collect();
            assert_eq!(union.len(), 100, "disjoint");
            assert!(union.iter().all(|&i| i < len));
        }
    }

    #[test]
    fn unshuffled_shards_cover_every_sample_once() {
        let shards: Vec<Vec<usize>> =
            (0..3).map(|rank| epoch_indices(10, Shard { rank, world: 3 }, false, 0, 0)).collect();
        assert_eq!(shards, vec![vec![0, 3, 6, 9], vec![1, 4, 7], vec![2, 5, 8]]);
    }

    #[test]
    fn the_order_depends_on_seed_and_epoch_only() {
        let a = epoch_indices(50, Shard::SINGLE, true, 1, 0);
        assert_eq!(a, epoch_indices(50, Shard::SINGLE, true, 1, 0));
        assert_ne!(a, epoch_indices(50, Shard::SINGLE, true, 1, 1));
        assert_ne!(a, epoch_indices(50, Shard::SINGLE, true, 2, 0));
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    }
}
