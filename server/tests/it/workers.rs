//! A worker agent's Hello registers it, visible in ListWorkers; heartbeats
//! keep it alive; closing the stream marks it disconnected.

use std::time::Duration;

use scop_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use scop_server::testing::TestServer;

fn hello(worker_id: &str) -> pb::WorkerMessage {
    let device = |index| pb::Device {
        kind: "cuda".into(),
        index,
        name: "NVIDIA H200".into(),
        memory_bytes: 141 << 30,
    };
    pb::WorkerMessage {
        kind: Some(pb::worker_message::Kind::Hello(pb::Hello {
            hostname: "gpu-node-1".into(),
            agent_version: "0.1.0".into(),
            devices: vec![device(0), device(1)],
            cpu_cores: 16,
            worker_id: worker_id.into(),
            running: vec![],
        })),
    }
}

async fn workers_listed(server: &TestServer) -> Vec<pb::Worker> {
    let mut jobs = server.jobs().await;
    jobs.list_workers(pb::ListWorkersRequest { include_lost: true }).await.unwrap().into_inner().workers
}

/// Polls ListWorkers until `pred` holds (a state change happens after the stream ends).
async fn wait_for(server: &TestServer, pred: impl Fn(&[pb::Worker]) -> bool) -> Vec<pb::Worker> {
    for _ in 0..200 {
        let workers = workers_listed(server).await;
        if pred(&workers) {
            return workers;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not reached: {:?}", workers_listed(server).await);
}

#[tokio::test]
async fn hello_registers_a_worker_and_reconnects_keep_its_id() {
    let dir = tempfile::tempdir().unwrap();
    // Liveness reaches the store at most every timeout / 4 = 250 ms.
    let server = TestServer::start_with(&dir, |config| {
        config.heartbeat_interval_ms = 50;
        config.heartbeat_timeout_ms = 1_000;
    })
    .await;
    let mut client = server.workers().await;
    let (outbox, inbox) = mpsc::channel(8);
    outbox.send(hello("")).await.unwrap();
    let mut replies = client.connect(ReceiverStream::new(inbox)).await.unwrap().into_inner();
    let welcome = match replies.message().await.unwrap().unwrap().kind.unwrap() {
        pb::coordinator_message::Kind::Welcome(welcome) => welcome,
        other => panic!("expected Welcome, got {other:?}"),
    };
    assert_eq!(welcome.heartbeat_interval_ms, 50);

    let workers = workers_listed(&server).await;
    assert_eq!(workers.len(), 1);
    let worker = &workers[0];
    assert_eq!(worker.id, welcome.worker_id);
    assert_eq!(
        (worker.hostname.as_str(), worker.cpu_cores, worker.state()),
        ("gpu-node-1", 16, pb::WorkerState::Connected)
    );
    assert_eq!((worker.slots_total, worker.slots_busy, worker.slots_free), (2, 0, 2));
    assert_eq!(worker.devices[1].name, "NVIDIA H200");

    let heartbeat =
        pb::WorkerMessage { kind: Some(pb::worker_message::Kind::Heartbeat(pb::Heartbeat::default())) };
    tokio::time::sleep(Duration::from_millis(300)).await;
    outbox.send(heartbeat).await.unwrap();
    wait_for(&server, |w| w[0].last_seen_ms > worker.last_seen_ms).await;

    drop(outbox);
    let workers = wait_for(&server, |w| w[0].state() == pb::WorkerState::Disconnected).await;
    assert_eq!(workers[0].slots_free, 0);

    // Reconnecting with the id keeps one worker record.
    let (outbox, inbox) = mpsc::channel(8);
    outbox.send(hello(&welcome.worker_id)).await.unwrap();
    let mut replies = client.connect(ReceiverStream::new(inbox)).await.unwrap().into_inner();
    let again = replies.message().await.unwrap().unwrap();
    assert!(
        matches!(again.kind, Some(pb::coordinator_message::Kind::Welcome(w)) if w.worker_id == welcome.worker_id)
    );
    let workers = wait_for(&server, |w| w[0].state() == pb::WorkerState::Connected).await;
    assert_eq!(workers.len(), 1);
    drop(outbox);
    server.stop().await;
}

#[tokio::test]
async fn a_stream_must_start_with_a_valid_hello() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let mut client = server.workers().await;
    let heartbeat =
        pb::WorkerMessage { kind: Some(pb::worker_message::Kind::Heartbeat(pb::Heartbeat::default())) };
    let status = client.connect(tokio_stream::iter([heartbeat])).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "hello.kind: the first message on a stream must be Hello");

    let mut no_devices = hello("");
    if let Some(pb::worker_message::Kind::Hello(h)) = &mut no_devices.kind {
        h.devices.clear();
    }
    let status = client.connect(tokio_stream::iter([no_devices])).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("hello.devices: must list at least one device"),
        "{}",
        status.message()
    );
    assert!(workers_listed(&server).await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn silent_workers_are_declared_lost() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(&dir, |config| {
        config.heartbeat_interval_ms = 20;
        config.heartbeat_timeout_ms = 100;
    })
    .await;
    let mut client = server.workers().await;
    let (outbox, inbox) = mpsc::channel(8);
    outbox.send(hello("")).await.unwrap();
    let mut replies = client.connect(ReceiverStream::new(inbox)).await.unwrap().into_inner();
    replies.message().await.unwrap().unwrap();
    // No heartbeats: the sweep declares it lost, and it drops out of the default listing.
    wait_for(&server, |w| w[0].state() == pb::WorkerState::Lost).await;
    let mut jobs = server.jobs().await;
    assert!(
        jobs.list_workers(pb::ListWorkersRequest::default()).await.unwrap().into_inner().workers.is_empty()
    );
    drop(outbox);
    server.stop().await;
}
