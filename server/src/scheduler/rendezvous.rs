//! Building each rank's rendezvous record: by the coordinator alone for a
//! single rank, or from every rank's reported part for a group.

use std::collections::BTreeMap;

use scop_core::rendezvous::{BackendRendezvous, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_TIMEOUT_MS, Rendezvous};
use scop_core::spec::DeviceKind;

/// The record of a one-rank group: no peers to meet, so no part to wait for
/// and no communication at all, on CPU and on a GPU alike (the rank learns its
/// GPU from its assignment's device).
pub fn single(job_token: &str) -> Rendezvous {
    Rendezvous {
        rank: 0,
        world: 1,
        job_token: job_token.to_owned(),
        timeout_ms: DEFAULT_TIMEOUT_MS,
        connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
        backend: BackendRendezvous::Tcp { peers: vec!["127.0.0.1:0".to_owned()], listen: None },
    }
}

/// Whether every part of a group is in: TCP needs every rank's address, NCCL
/// only rank 0's unique id.
pub fn complete(kind: DeviceKind, world: u32, parts: &BTreeMap<u32, String>) -> bool {
    match kind {
        DeviceKind::Cpu => (0..world).all(|r| parts.contains_key(&r)),
        DeviceKind::Cuda => parts.contains_key(&0),
    }
}

/// Every rank's record once [`complete`]; `devices[r]` is rank r's device index.
pub fn records(
    kind: DeviceKind,
    job_token: &str,
    parts: &BTreeMap<u32, String>,
    devices: &[u32],
) -> Vec<Rendezvous> {
    let world = u32::try_from(devices.len()).unwrap_or(u32::MAX);
    (0..world)
        .map(|rank| Rendezvous {
            rank,
            world,
            job_token: job_token.to_owned(),
            timeout_ms: DEFAULT_TIMEOUT_MS,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            backend: match kind {
                DeviceKind::Cpu => {
                    BackendRendezvous::Tcp { peers: parts.values().cloned().collect(), listen: None }
                }
                DeviceKind::Cuda => BackendRendezvous::Nccl {
                    unique_id: parts.get(&0).cloned().unwrap_or_default(),
                    device: devices[rank as usize],
                },
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_groups_wait_for_every_address_and_share_the_ring() {
        let mut parts = BTreeMap::new();
        parts.insert(1, "10.0.0.2:4001".to_owned());
        assert!(!complete(DeviceKind::Cpu, 2, &parts));
        parts.insert(0, "10.0.0.1:4000".to_owned());
        assert!(complete(DeviceKind::Cpu, 2, &parts));
        let records = records(DeviceKind::Cpu, "secret", &parts, &[0, 0]);
        assert_eq!(records.len(), 2);
        for (rank, record) in records.iter().enumerate() {
            record.validate().unwrap();
            assert_eq!(record.rank as usize, rank);
            assert_eq!(
                record.backend,
                BackendRendezvous::Tcp {
                    peers: vec!["10.0.0.1:4000".into(), "10.0.0.2:4001".into()],
                    listen: None
                }
            );
        }
    }

    #[test]
    fn nccl_groups_need_only_rank_zeros_id() {
        let mut parts = BTreeMap::new();
        parts.insert(0, "ab".repeat(128));
        assert!(complete(DeviceKind::Cuda, 4, &parts));
        let records = records(DeviceKind::Cuda, "secret", &parts, &[0, 1, 0, 1]);
        records[3].validate().unwrap();
        assert_eq!(records[3].backend, BackendRendezvous::Nccl { unique_id: "ab".repeat(128), device: 1 });
        single("secret").validate().unwrap();
    }
}
