//! A restarted coordinator keeps queued jobs queued, with their event logs,
//! re-attaches running ranks their workers report alive, and retries the rest
//! from their last checkpoint.

use scop_proto::v1 as pb;

use scop_server::testing::{FakeWorker, SPEC, TestServer, final_statistics, wait_for_state};

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
        .list_jobs(pb::ListJobsRequest {
            state: pb::JobState::Queued as i32,
            full_view: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // Listings carry no queued_reason (only GetJob and SubmitJob do).
    let listing = |job: &pb::Job| pb::Job { queued_reason: String::new(), ..job.clone() };
    assert_eq!(listed.jobs, vec![listing(&second), listing(&first)]);
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

/// Across a restart, an attempt whose worker reconnects still running its rank
/// carries on (its finish moves the job on), while an attempt nobody claims is
/// failed after the grace period and retried from its last checkpoint.
#[tokio::test]
async fn running_attempts_are_reattached_or_retried_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let fast = |config: &mut scop_server::Config| {
        config.heartbeat_interval_ms = 50;
        config.heartbeat_timeout_ms = 400;
    };
    let server = TestServer::start_with(&dir, fast).await;
    let kept = submit(&server).await;
    let orphaned = submit(&server).await;
    let mut worker = FakeWorker::connect(&server, "w", 2, &[]).await;
    let mut tasks = [worker.assigned().await, worker.assigned().await];
    tasks.sort_by_key(|t| if t.job_id == kept.id { 0 } else { 1 });
    let [kept_task, orphan_task] = tasks;
    assert_eq!(
        (kept_task.job_id.as_str(), orphan_task.job_id.as_str()),
        (kept.id.as_str(), orphaned.id.as_str())
    );
    worker
        .send(&orphan_task, pb::task_event::Kind::CheckpointWritten("knockoff/checkpoints/step-4".into()))
        .await;
    wait_for_checkpoint(&server, &orphan_task.task_id).await;
    let worker_id = worker.id.clone();
    drop(worker);
    server.stop().await;

    // The agent comes back to the new coordinator still running one of the two ranks.
    let server = TestServer::start_with(&dir, fast).await;
    let mut worker = FakeWorker::connect_as(&server, "w", &worker_id, 2, &[(&kept_task.task_id, 0)]).await;
    worker.send(&kept_task, pb::task_event::Kind::Statistics(final_statistics(SPEC))).await;
    worker.finish(&kept_task).await;
    // The orphan's rank is cancelled (in case it still runs somewhere) before its retry.
    let (mut finetune, mut retry, mut cancelled) = (None, None, None);
    while finetune.is_none() || retry.is_none() {
        match worker.next().await {
            pb::coordinator_message::Kind::Assign(task) if task.job_id == kept.id => finetune = Some(task),
            pb::coordinator_message::Kind::Assign(task) => retry = Some(task),
            pb::coordinator_message::Kind::Cancel(cancel) => cancelled = Some(cancel),
            other => panic!("unexpected {other:?}"),
        }
    }
    let cancelled = cancelled.expect("the orphaned rank was cancelled before its retry");
    assert_eq!(cancelled.task_id, orphan_task.task_id);
    assert!(cancelled.reason.contains("no worker reported the ranks alive"), "{cancelled:?}");
    let (finetune, retry) = (finetune.unwrap(), retry.unwrap());
    assert_eq!((finetune.stage(), finetune.attempt), (pb::Stage::Finetune, 1));
    assert_eq!((retry.stage(), retry.attempt), (pb::Stage::Knockoff, 2));
    // The retry resumes; the coordinator keeps the checkpoint it heard of.
    assert!(retry.resume);
    let (attempt, _) = server.store.attempt_for_task(&retry.task_id).await.unwrap();
    assert_eq!(attempt.resume_from.as_deref(), Some("knockoff/checkpoints/step-4"));
    let orphaned = wait_for_state(&server, &orphaned.id, pb::JobState::Running).await;
    assert_eq!(orphaned.attempt, 2);
    server.stop().await;
}

async fn submit(server: &TestServer) -> pb::Job {
    let mut jobs = server.jobs().await;
    let request = pb::SubmitJobRequest { spec_yaml: SPEC.into(), ..Default::default() };
    jobs.submit_job(request).await.unwrap().into_inner()
}

/// Waits until the store has recorded the rank's checkpoint (events are applied asynchronously).
async fn wait_for_checkpoint(server: &TestServer, task_id: &str) {
    for _ in 0..500 {
        let (attempt, _) = server.store.attempt_for_task(task_id).await.unwrap();
        if attempt.last_checkpoint.is_some() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the checkpoint of {task_id} was never recorded");
}
