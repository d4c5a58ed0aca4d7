//! Building each rank's rendezvous record: by the coordinator alone for a
//! single rank that talks to nobody, or from every rank's reported part for a
//! group. The records themselves, and the rule that picks the transport, are
//! `scop-core`'s ([`scop_core::rendezvous::group`], [`Transport::of`]), the
//! ones `scop-worker run`'s launcher uses; what is the coordinator's own is
//! waiting for the ranks' parts.

use std::collections::BTreeMap;

pub use scop_core::rendezvous::Transport;
use scop_core::rendezvous::{Meeting, Rendezvous, Timeouts, group};
use scop_core::spec::ResourcesSpec;

/// The record of a one-rank TCP group: no peers to meet, so no part to wait
/// for and no communication at all, on CPU and on a GPU alike (the rank learns
/// its GPU from its assignment's device). `None` when the rank must report a
/// part first: a one-rank NCCL group still needs its unique id.
pub fn single(
    transport: Transport,
    world: u32,
    job_token: &str,
    resources: &ResourcesSpec,
) -> Option<Rendezvous> {
    if world != 1 || transport == Transport::Nccl {
        return None;
    }
    group(job_token, Timeouts::of(resources), &Meeting::alone()).pop()
}

/// Whether every part of a group is in: TCP needs every rank's address, NCCL
/// only rank 0's unique id.
pub fn complete(transport: Transport, world: u32, parts: &BTreeMap<u32, String>) -> bool {
    match transport {
        Transport::Tcp => (0..world).all(|r| parts.contains_key(&r)),
        Transport::Nccl => parts.contains_key(&0),
    }
}

/// Every rank's record once [`complete`]; `devices[r]` is rank r's device index.
pub fn records(
    transport: Transport,
    job_token: &str,
    resources: &ResourcesSpec,
    parts: &BTreeMap<u32, String>,
    devices: &[u32],
) -> Vec<Rendezvous> {
    let meeting = match transport {
        Transport::Tcp => Meeting::Tcp { peers: parts.values().cloned().collect() },
        Transport::Nccl => {
            Meeting::Nccl { unique_id: parts.get(&0).cloned().unwrap_or_default(), devices: devices.to_vec() }
        }
    };
    group(job_token, Timeouts::of(resources), &meeting)
}

#[cfg(test)]
mod tests {
    use scop_core::spec::JobSpec;

    use scop_core::rendezvous::BackendRendezvous;
    use scop_core::stage::Stage;

    use super::*;

    fn resources(yaml: &str) -> ResourcesSpec {
        let spec = format!(
            "model: {{ arch: resnet20, num_classes: 10 }}\ndata: {{ format: idx, root: d }}\nresources: {yaml}\n"
        );
        JobSpec::from_yaml(&spec).unwrap().resources
    }

    #[test]
    fn the_backend_field_picks_the_transport_of_each_stage() {
        let cases = [
            ("{ world_size: 2 }", 2, Transport::Tcp),
            ("{ device: cuda }", 1, Transport::Tcp),
            ("{ device: cuda, world_size: 2 }", 2, Transport::Nccl),
            ("{ device: cuda, world_size: 2, backend: tcp }", 2, Transport::Tcp),
            ("{ device: cuda, backend: nccl }", 1, Transport::Nccl),
            ("{ device: cuda, world_size: 4, backend: nccl }", 4, Transport::Nccl),
        ];
        for (yaml, world, want) in cases {
            let r = resources(yaml);
            assert_eq!(Transport::of(&r, Stage::Knockoff, world), want, "{yaml}");
            assert_eq!(Transport::of(&r, Stage::Finetune, world), want, "{yaml}");
            // Export, on rank 0 alone, talks to nobody.
            assert_eq!(Transport::of(&r, Stage::Export, 1), Transport::Tcp, "{yaml}");
        }
        let one_gpu = resources("{ device: cuda, backend: nccl }");
        assert!(single(Transport::Nccl, 1, "t", &one_gpu).is_none(), "a 1-rank NCCL group waits for its id");
        let solo = single(Transport::Tcp, 1, "t", &resources("{ collective_timeout: 90s }")).unwrap();
        solo.validate().unwrap();
        assert_eq!(solo.timeout_ms, 90_000);
        assert!(single(Transport::Tcp, 2, "t", &one_gpu).is_none());
    }

    #[test]
    fn tcp_groups_wait_for_every_address_and_share_the_ring() {
        let mut parts = BTreeMap::new();
        parts.insert(1, "10.0.0.2:4001".to_owned());
        assert!(!complete(Transport::Tcp, 2, &parts));
        parts.insert(0, "10.0.0.1:4000".to_owned());
        assert!(complete(Transport::Tcp, 2, &parts));
        let r = resources("{ device: cuda, world_size: 2, backend: tcp, connect_timeout: 45s }");
        let records = records(Transport::Tcp, "secret", &r, &parts, &[0, 1]);
        assert_eq!(records.len(), 2);
        for (rank, record) in records.iter().enumerate() {
            record.validate().unwrap();
            assert_eq!(record.rank as usize, rank);
            assert_eq!(record.connect_timeout_ms, 45_000);
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
        assert!(complete(Transport::Nccl, 4, &parts));
        let r = resources("{ device: cuda, world_size: 4 }");
        let records = records(Transport::Nccl, "secret", &r, &parts, &[0, 1, 0, 1]);
        records[3].validate().unwrap();
        assert_eq!(records[3].backend, BackendRendezvous::Nccl { unique_id: "ab".repeat(128), device: 1 });
        let one = records_of_one_gpu(&parts);
        one.validate().unwrap();
        assert_eq!(one.backend, BackendRendezvous::Nccl { unique_id: "ab".repeat(128), device: 3 });
    }

    fn records_of_one_gpu(parts: &BTreeMap<u32, String>) -> Rendezvous {
        let r = resources("{ device: cuda, backend: nccl }");
        assert!(complete(Transport::Nccl, 1, parts));
        records(Transport::Nccl, "secret", &r, parts, &[3]).remove(0)
    }
}
