//! What keeps a job honest when workers misbehave or reports go missing: a
//! worker reports only for ranks placed on it, `decide` uses only the final
//! knockoff epoch of the attempt that succeeded, heartbeats reconcile what a
//! worker runs with what the coordinator placed, and a stage without progress
//! times out.

use scop_proto::v1 as pb;
use scop_server::testing::{FakeWorker, SPEC, TestServer, final_statistics, statistics, wait_for_state};
use tonic::Code;

async fn submit(server: &TestServer, spec: &str) -> pb::Job {
    let mut jobs = server.jobs().await;
    let request = pb::SubmitJobRequest { spec_yaml: spec.into(), ..Default::default() };
    jobs.submit_job(request).await.unwrap().into_inner()
}

/// The job's first `Error` event.
async fn first_error(server: &TestServer, job_id: &str) -> pb::JobError {
    let mut jobs = server.jobs().await;
    let request = pb::WatchJobRequest { job_id: job_id.to_owned(), from_sequence: 1 };
    let mut events = jobs.watch_job(request).await.unwrap().into_inner();
    loop {
        if let Some(pb::job_event::Kind::Error(error)) = events.message().await.unwrap().unwrap().kind {
            return error;
        }
    }
}

/// A second agent with the (shared) worker token reports `Finished` for a rank
/// placed on another worker: it is refused with PERMISSION_DENIED, its stream
/// ends, the refusal is in the audit log, and the forged report moves nothing.
#[tokio::test]
async fn a_worker_may_report_only_for_ranks_placed_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let spec = format!("{SPEC}resources: {{ world_size: 2 }}\n");
    let job = submit(&server, &spec).await;
    let mut a = FakeWorker::connect(&server, "a", 1, &[]).await;
    let mut b = FakeWorker::connect(&server, "b", 1, &[]).await;
    let (on_a, on_b) = (a.assigned().await, b.assigned().await);
    assert_eq!(on_a.job_id, job.id);

    let mut impostor = FakeWorker::connect(&server, "impostor", 1, &[]).await;
    impostor.finish(&on_a).await;
    let status = impostor.ended_with().await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(
        status.message(),
        format!(
            "worker {} may not report for task {}: that rank is placed on {}",
            impostor.id, on_a.task_id, a.id
        )
    );
    // The refusal is in the audit log, naming the impostor and the rank's worker.
    let log = server.store.audit_log(100).await.unwrap();
    let refused: Vec<_> = log.iter().filter(|e| e.action == "report_refused").collect();
    assert_eq!(refused.len(), 1, "{log:?}");
    assert_eq!(refused[0].user, format!("worker {}", impostor.id));
    assert_eq!(refused[0].target, on_a.task_id);
    assert_eq!(refused[0].detail, format!("report for a rank placed on {} refused", a.id));
    // The job still waits for its real ranks: b alone finishing is not enough.
    b.finish(&on_b).await;
    a.assert_idle(std::time::Duration::from_millis(600)).await;
    let running = wait_for_state(&server, &job.id, pb::JobState::Running).await;
    assert_eq!(running.stage, pb::Stage::Knockoff as i32);
    // Rank 0's own worker reports: that counts.
    a.send(&on_a, pb::task_event::Kind::Statistics(final_statistics(&spec))).await;
    a.finish(&on_a).await;
    let finetune = a.assigned().await;
    assert_eq!(finetune.stage(), pb::Stage::Finetune);
    server.stop().await;
}

/// The final epoch's statistics never arrived (a network blip, a full disk):
/// the job fails saying so instead of pruning from an earlier epoch's β.
#[tokio::test]
async fn decide_fails_the_job_when_the_final_epoch_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let job = submit(&server, &format!("{SPEC}knockoff: {{ epochs: 3 }}\n")).await;
    let mut worker = FakeWorker::connect(&server, "w", 1, &[]).await;
    let knockoff = worker.assigned().await;
    for epoch in 1..=2 {
        let mut stats = statistics("resnet20", 1);
        stats.epoch = epoch;
        worker.send(&knockoff, pb::task_event::Kind::Statistics(stats)).await;
    }
    worker.finish(&knockoff).await;
    let failed = wait_for_state(&server, &job.id, pb::JobState::Failed).await;
    assert_eq!(
        failed.error,
        "decide: the score statistics of the final knockoff epoch 3 never arrived from attempt 1 \
         (epochs received: 1, 2); refusing to prune from an earlier epoch"
    );
    let mut jobs = server.jobs().await;
    let plan = jobs.get_plan(pb::GetPlanRequest { job_id: job.id.clone() }).await;
    assert_eq!(plan.unwrap_err().code(), Code::NotFound);
    server.stop().await;
}

/// The worker lost a rank without a word (its `Finished`/`Failed` never
/// arrived): its heartbeats stop listing the task, and the attempt is failed
/// with that reason and retried, instead of staying live forever. A task the
/// worker still runs that the coordinator no longer knows is cancelled.
#[tokio::test]
async fn heartbeats_reconcile_what_the_worker_runs() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let job = submit(&server, &format!("{SPEC}max_restarts: 1\n")).await;
    let mut worker = FakeWorker::connect(&server, "w", 1, &[]).await;
    let first = worker.assigned().await;
    // Listed: nothing happens.
    worker.beat(&[&first.task_id]).await;
    worker.beat(&[&first.task_id]).await;
    worker.assert_idle(std::time::Duration::from_millis(400)).await;
    // One heartbeat without it may predate the assignment; two in a row may not.
    worker.beat(&[]).await;
    worker.assert_idle(std::time::Duration::from_millis(400)).await;
    worker.beat(&[]).await;
    match worker.next().await {
        pb::coordinator_message::Kind::Cancel(cancel) => assert_eq!(cancel.task_id, first.task_id),
        other => panic!("expected the vanished rank's cancel, got {other:?}"),
    }
    let retry = worker.assigned().await;
    assert_eq!(retry.attempt, 2);
    let error = first_error(&server, &job.id).await;
    assert_eq!((error.attempt, error.retrying), (1, true));
    assert_eq!(
        error.message,
        format!(
            "worker {} no longer runs rank 0: its heartbeats do not list task {}",
            worker.id, first.task_id
        )
    );

    // A task of the failed attempt (and one never known) still running there is stopped.
    worker.beat(&[&retry.task_id, &first.task_id, "ghost/1"]).await;
    let mut cancelled = vec![];
    while cancelled.len() < 2 {
        match worker.next().await {
            pb::coordinator_message::Kind::Cancel(cancel) => cancelled.push(cancel.task_id),
            other => panic!("expected cancels, got {other:?}"),
        }
    }
    cancelled.sort();
    let mut expected = vec!["ghost/1".to_owned(), first.task_id.clone()];
    expected.sort();
    assert_eq!(cancelled, expected);
    server.stop().await;
}

/// A stage whose ranks stay connected but report nothing for longer than
/// `resources.stage_timeout` is failed with that reason and retried.
#[tokio::test]
async fn a_stage_without_progress_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let job = submit(&server, &format!("{SPEC}max_restarts: 0\nresources: {{ stage_timeout: 1 }}\n")).await;
    let mut worker = FakeWorker::connect(&server, "w", 1, &[]).await;
    let task = worker.assigned().await;
    match worker.next().await {
        pb::coordinator_message::Kind::Cancel(cancel) => assert_eq!(cancel.task_id, task.task_id),
        other => panic!("expected the stalled rank's cancel, got {other:?}"),
    }
    let failed = wait_for_state(&server, &job.id, pb::JobState::Failed).await;
    assert!(
        failed.error.starts_with("stage knockoff failed 1 times; last: stage knockoff made no progress for")
            && failed.error.ends_with("s (resources.stage_timeout: 1)"),
        "{}",
        failed.error
    );
    server.stop().await;
}

/// Numbered events are acknowledged, applied once when an agent sends them
/// again after a reconnect, and a gap in the numbers (an event that failed to
/// apply) ends the stream so the agent sends again from the gap.
#[tokio::test]
async fn numbered_events_are_applied_once_across_a_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let job = submit(&server, SPEC).await;
    let mut worker = FakeWorker::connect(&server, "w", 1, &[]).await;
    let task = worker.assigned().await;
    let progress = |step| {
        pb::task_event::Kind::Progress(pb::TaskProgress {
            epoch: 1,
            step,
            steps: 10,
            loss: 1.0,
            accuracy: 0.5,
            samples_per_second: 100.0,
            epochs: 1,
            step_seconds: 0.1,
            allreduce_seconds: 0.0,
            eta_seconds: 1.0,
        })
    };
    let acked = |message: pb::coordinator_message::Kind| match message {
        pb::coordinator_message::Kind::Acked(acked) => (acked.task_id, acked.sequence),
        other => panic!("expected an acknowledgement, got {other:?}"),
    };
    worker.send_numbered(&task, 1, progress(1)).await;
    worker.send_numbered(&task, 2, progress(2)).await;
    assert_eq!(acked(worker.next().await), (task.task_id.clone(), 1));
    assert_eq!(acked(worker.next().await), (task.task_id.clone(), 2));

    // The stream breaks before the agent saw the acknowledgements: it sends both again, then more.
    let worker_id = worker.id.clone();
    drop(worker);
    let mut worker = FakeWorker::connect_as(&server, "w", &worker_id, 1, &[(&task.task_id, 0)]).await;
    for (sequence, step) in [(1, 1), (2, 2), (3, 3)] {
        worker.send_numbered(&task, sequence, progress(step)).await;
        assert_eq!(acked(worker.next().await), (task.task_id.clone(), sequence));
    }
    let mut jobs = server.jobs().await;
    let request = pb::WatchJobRequest { job_id: job.id.clone(), from_sequence: 1 };
    let mut events = jobs.watch_job(request).await.unwrap().into_inner();
    let mut steps = Vec::new();
    while steps.len() < 3 {
        if let Some(pb::job_event::Kind::Progress(p)) = events.message().await.unwrap().unwrap().kind {
            steps.push(p.step);
        }
    }
    assert_eq!(steps, [1, 2, 3], "each step once, in order");

    // Number 4 never arrived (it failed to apply): 5 is refused and the stream ends.
    worker.send_numbered(&task, 5, progress(5)).await;
    let status = worker.ended_with().await;
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        status.message(),
        format!("task {}: event 5 arrived before event 4; send the events again from 4", task.task_id)
    );
    server.stop().await;
}

/// A rank that resumed past a damaged checkpoint says so, and the job's
/// events show it (as a notice, not a failure).
#[tokio::test]
async fn a_checkpoint_fallback_is_in_the_jobs_events() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let job = submit(&server, SPEC).await;
    let mut worker = FakeWorker::connect(&server, "w", 1, &[]).await;
    let task = worker.assigned().await;
    let message = "resumed from c/knockoff-step-00000010 because newer checkpoints were damaged: \
                   c/knockoff-step-00000020/tensors.safetensors: does not match the manifest";
    worker.send(&task, pb::task_event::Kind::CheckpointFallback(message.into())).await;
    let mut jobs = server.jobs().await;
    let request = pb::WatchJobRequest { job_id: job.id.clone(), from_sequence: 1 };
    let mut events = jobs.watch_job(request).await.unwrap().into_inner();
    let notice = loop {
        if let Some(pb::job_event::Kind::Notice(notice)) = events.message().await.unwrap().unwrap().kind {
            break notice;
        }
    };
    assert_eq!((notice.stage(), notice.attempt, notice.message.as_str()), (pb::Stage::Knockoff, 1, message));
    server.stop().await;
}
