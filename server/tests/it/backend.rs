//! `resources.backend` under the coordinator, against scripted GPU workers on
//! real sockets: `nccl` makes even a one-rank group wait for rank 0's unique id
//! and get an NCCL record; `tcp` on GPUs waits for every rank's address and gets
//! the ring; `auto` on one GPU needs no rendezvous at all; `nccl` on a CPU job
//! is refused at submission, naming the field.

use std::time::Duration;

use scop_core::rendezvous::{BackendRendezvous, Rendezvous};
use scop_proto::v1 as pb;
use tonic::Code;

use scop_server::testing::{FakeWorker, SPEC, TestServer};

async fn submit(server: &TestServer, resources: &str) -> pb::Job {
    let mut jobs = server.jobs().await;
    let spec = format!("{SPEC}resources: {resources}\n");
    let request = pb::SubmitJobRequest { spec_yaml: spec, ..Default::default() };
    jobs.submit_job(request).await.unwrap().into_inner()
}

async fn record(worker: &mut FakeWorker) -> Rendezvous {
    match worker.next().await {
        pb::coordinator_message::Kind::Rendezvous(r) => {
            let record: Rendezvous = serde_json::from_str(&r.rendezvous_json).unwrap();
            record.validate().unwrap();
            record
        }
        other => panic!("expected a rendezvous record, got {other:?}"),
    }
}

#[tokio::test]
async fn the_backend_field_decides_how_gpu_ranks_meet() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let mut gpus = FakeWorker::connect_gpus(&server, "g", 4).await;

    // nccl on one GPU: no ready-made record; rank 0's unique id makes the group.
    submit(&server, "{ device: cuda, backend: nccl, collective_timeout: 90s }").await;
    let one = gpus.assigned().await;
    assert_eq!((one.world_size, one.device.as_ref().unwrap().kind.as_str()), (1, "cuda"));
    assert!(one.rendezvous_json.is_empty(), "a one-rank NCCL group still needs its unique id");
    let id = "ab".repeat(128);
    gpus.send(&one, pb::task_event::Kind::RendezvousReady(id.clone())).await;
    let got = record(&mut gpus).await;
    let device = one.device.as_ref().unwrap().index;
    assert_eq!(got.backend, BackendRendezvous::Nccl { unique_id: id, device });
    assert_eq!((got.world, got.timeout_ms), (1, 90_000), "the spec's collective_timeout travels");

    // tcp on two GPUs: rank 0's part alone is not enough (it would be for NCCL).
    submit(&server, "{ device: cuda, world_size: 2, backend: tcp, connect_timeout: 45s }").await;
    let mut pair = [gpus.assigned().await, gpus.assigned().await];
    pair.sort_by_key(|t| t.rank);
    assert!(pair.iter().all(|t| t.rendezvous_json.is_empty() && t.world_size == 2));
    gpus.send(&pair[0], pb::task_event::Kind::RendezvousReady("10.0.0.1:4000".into())).await;
    gpus.assert_idle(Duration::from_millis(600)).await;
    gpus.send(&pair[1], pb::task_event::Kind::RendezvousReady("10.0.0.1:4001".into())).await;
    for _ in 0..2 {
        let got = record(&mut gpus).await;
        let peers = vec!["10.0.0.1:4000".to_owned(), "10.0.0.1:4001".to_owned()];
        assert_eq!(got.backend, BackendRendezvous::Tcp { peers, listen: None });
        assert_eq!(got.connect_timeout_ms, 45_000);
    }

    // auto on one GPU talks to nobody: the record comes with the assignment.
    submit(&server, "{ device: cuda }").await;
    let solo = gpus.assigned().await;
    let got: Rendezvous = serde_json::from_str(&solo.rendezvous_json).unwrap();
    assert!(matches!(got.backend, BackendRendezvous::Tcp { .. }) && got.world == 1, "{got:?}");
    server.stop().await;
}

#[tokio::test]
async fn nccl_on_a_cpu_job_is_refused_at_submission_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let mut jobs = server.jobs().await;
    let spec = format!("{SPEC}resources: {{ backend: nccl }}\n");
    let status =
        jobs.submit_job(pb::SubmitJobRequest { spec_yaml: spec, ..Default::default() }).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("resources.backend: nccl needs resources.device: cuda"),
        "{}",
        status.message()
    );
    // tcp on a GPU job is a valid choice.
    let spec = format!("{SPEC}resources: {{ device: cuda, backend: tcp }}\n");
    jobs.submit_job(pb::SubmitJobRequest { spec_yaml: spec, ..Default::default() }).await.unwrap();
    server.stop().await;
}
