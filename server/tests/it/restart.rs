//! A restarted coordinator keeps queued jobs queued, with their event logs.

use scop_proto::v1 as pb;

use crate::harness::TestServer;

#[tokio::test]
async fn reopening_the_store_keeps_queued_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let mut jobs = server.jobs().await;
    let first = server.submit(&mut jobs, "keep-1", &[("run", "a")]).await;
    let second = server.submit(&mut jobs, "keep-2", &[("run", "a")]).await;
    server.stop().await;

    let server = TestServer::start(&dir).await;
    let mut jobs = server.jobs().await;
    let listed = jobs
        .list_jobs(pb::ListJobsRequest { state: pb::JobState::Queued as i32, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.jobs, vec![second.clone(), first.clone()]);
    // The idempotency keys survive too.
    assert_eq!(server.submit(&mut jobs, "keep-1", &[("run", "a")]).await, first);
    let mut events = jobs
        .watch_job(pb::WatchJobRequest { job_id: first.id.clone(), from_sequence: 1 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(events.message().await.unwrap().unwrap().sequence, 1);
    server.stop().await;
}
