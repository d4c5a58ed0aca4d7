//! Gang placement: all of a stage's ranks on free slots at once, or none, packed
//! onto as few workers as possible.

use std::collections::{BTreeMap, BTreeSet};

use scop_core::spec::DeviceKind;

use crate::domain::{Attempt, Worker};

/// The free device indices of one connected worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreeSlots {
    pub worker_id: String,
    /// Ascending.
    pub devices: Vec<u32>,
}

/// Free slots per worker: every device of `kind` of a connected worker that no
/// live attempt's rank occupies. Workers in input order.
pub fn free_slots_of_kind(workers: &[Worker], live: &[Attempt], kind: DeviceKind) -> Vec<FreeSlots> {
    let kind = match kind {
        DeviceKind::Cpu => "cpu",
        DeviceKind::Cuda => "cuda",
    };
    let mut busy: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
    for rank in live.iter().flat_map(|a| &a.ranks) {
        busy.entry(rank.worker_id.as_str()).or_default().insert(rank.device_index);
    }
    workers
        .iter()
        .filter(|w| w.slots_free() > 0)
        .map(|w| {
            let taken = busy.get(w.id.as_str());
            let devices = w
                .devices
                .iter()
                .filter(|d| d.kind == kind)
                .map(|d| d.index)
                .filter(|i| taken.is_none_or(|t| !t.contains(i)))
                .collect();
            FreeSlots { worker_id: w.id.clone(), devices }
        })
        .filter(|f: &FreeSlots| !f.devices.is_empty())
        .collect()
}

/// Places `world` ranks: `(worker_id, device_index)` per rank, rank 0 first,
/// ranks of one worker consecutive; `None` when the free slots do not hold them
/// all (a partial placement is never made).
///
/// Packing: a single worker that fits takes them all (the one with the fewest
/// free slots that suffices, to keep large holes for large gangs); otherwise the
/// workers with the most free slots are taken first, which uses the fewest workers.
pub fn place(world: u32, free: &[FreeSlots]) -> Option<Vec<(String, u32)>> {
    let world = world as usize;
    if world == 0 || free.iter().map(|f| f.devices.len()).sum::<usize>() < world {
        return None;
    }
    let single = free.iter().filter(|f| f.devices.len() >= world).min_by_key(|f| f.devices.len());
    let chosen: Vec<&FreeSlots> = match single {
        Some(one) => vec![one],
        None => {
            let mut by_size: Vec<&FreeSlots> = free.iter().collect();
            // Stable sort: equal sizes keep input order, so placement is deterministic.
            by_size.sort_by_key(|f| std::cmp::Reverse(f.devices.len()));
            by_size
        }
    };
    let placement: Vec<(String, u32)> = chosen
        .into_iter()
        .flat_map(|f| f.devices.iter().map(move |d| (f.worker_id.clone(), *d)))
        .take(world)
        .collect();
    (placement.len() == world).then_some(placement)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(spec: &[(&str, &[u32])]) -> Vec<FreeSlots> {
        spec.iter().map(|(id, d)| FreeSlots { worker_id: (*id).into(), devices: d.to_vec() }).collect()
    }

    fn check(world: u32, free: &[(&str, &[u32])], expected: Option<&[(&str, u32)]>) {
        let got = place(world, &slots(free));
        let expected = expected.map(|e| e.iter().map(|(w, d)| ((*w).to_owned(), *d)).collect::<Vec<_>>());
        assert_eq!(got, expected, "world {world} on {free:?}");
    }

    #[test]
    fn gangs_are_placed_whole_or_not_at_all() {
        check(4, &[("a", &[0, 1]), ("b", &[1])], None);
        check(1, &[], None);
        check(0, &[("a", &[0])], None);
        check(3, &[("a", &[0, 1]), ("b", &[0])], Some(&[("a", 0), ("a", 1), ("b", 0)]));
    }

    #[test]
    fn one_worker_is_preferred_and_the_tightest_fit_wins() {
        check(2, &[("a", &[0, 1, 2, 3]), ("b", &[0, 1]), ("c", &[0])], Some(&[("b", 0), ("b", 1)]));
        check(1, &[("a", &[0, 1]), ("b", &[3])], Some(&[("b", 3)]));
    }

    #[test]
    fn larger_holes_are_used_first_across_workers() {
        check(
            5,
            &[("a", &[0]), ("b", &[0, 1, 2]), ("c", &[0, 1])],
            Some(&[("b", 0), ("b", 1), ("b", 2), ("c", 0), ("c", 1)]),
        );
        check(4, &[("a", &[0, 1]), ("b", &[0, 1])], Some(&[("a", 0), ("a", 1), ("b", 0), ("b", 1)]));
    }
}
