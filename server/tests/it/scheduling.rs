//! The scheduler against scripted workers on real sockets: gang placement,
//! rendezvous relay, the decision in the coordinator, the stage sequence,
//! retry after a lost worker from the last checkpoint, and cancel.

use std::time::Duration;

use scop_proto::v1 as pb;

use scop_server::testing::{FakeWorker, SPEC, TestServer, final_statistics, wait_for_state};

async fn submit(server: &TestServer, spec: &str, priority: i32) -> pb::Job {
    let mut jobs = server.jobs().await;
    let request = pb::SubmitJobRequest { spec_yaml: spec.into(), priority, ..Default::default() };
    jobs.submit_job(request).await.unwrap().into_inner()
}

#[tokio::test]
async fn a_four_rank_job_waits_for_four_slots_then_runs_every_stage() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let job = submit(&server, &format!("{SPEC}resources: {{ world_size: 4 }}\n"), 0).await;

    // Two free slots are not enough for a gang of four: nothing is placed.
    let mut a = FakeWorker::connect(&server, "a", 2, &[]).await;
    a.assert_idle(Duration::from_millis(600)).await;
    assert_eq!(wait_for_state(&server, &job.id, pb::JobState::Queued).await.attempt, 0);

    // With four, all ranks are assigned at once, two per worker.
    let mut b = FakeWorker::connect(&server, "b", 2, &[]).await;
    let mut tasks = vec![a.assigned().await, a.assigned().await, b.assigned().await, b.assigned().await];
    tasks.sort_by_key(|t| t.rank);
    assert_eq!(tasks.iter().map(|t| t.rank).collect::<Vec<_>>(), [0, 1, 2, 3]);
    assert!(tasks.iter().all(|t| t.stage() == pb::Stage::Knockoff && t.world_size == 4));
    assert!(tasks.iter().all(|t| t.rendezvous_json.is_empty() && t.spec_yaml.contains("world_size: 4")));
    let (on_a, on_b): (Vec<_>, Vec<_>) = tasks.iter().partition(|t| t.rank < 2);
    assert_eq!((on_a.len(), on_b.len()), (2, 2));

    // Every rank reports its address; every rank then gets the same ring.
    for task in &tasks {
        let worker = if task.rank < 2 { &a } else { &b };
        let part = format!("127.0.0.1:{}", 4000 + task.rank);
        worker.send(task, pb::task_event::Kind::RendezvousReady(part)).await;
    }
    for i in 0..4 {
        let worker = if i < 2 { &mut a } else { &mut b };
        let record = match worker.next().await {
            pb::coordinator_message::Kind::Rendezvous(record) => record,
            other => panic!("expected a rendezvous record, got {other:?}"),
        };
        let record: scop_core::rendezvous::Rendezvous =
            serde_json::from_str(&record.rendezvous_json).unwrap();
        record.validate().unwrap();
        let peers: Vec<String> = (0..4).map(|r| format!("127.0.0.1:{}", 4000 + r)).collect();
        assert_eq!(record.backend, scop_core::rendezvous::BackendRendezvous::Tcp { peers, listen: None });
    }

    // Rank 0 streams statistics; all ranks finish; the coordinator decides.
    a.send(&tasks[0], pb::task_event::Kind::Statistics(final_statistics(SPEC))).await;
    for task in &tasks {
        let worker = if task.rank < 2 { &a } else { &b };
        worker.finish(task).await;
    }
    let finetune = [a.assigned().await, a.assigned().await, b.assigned().await, b.assigned().await];
    assert!(finetune.iter().all(|t| t.stage() == pb::Stage::Finetune && !t.plan_json.is_empty()));
    let mut jobs = server.jobs().await;
    let plan = jobs.get_plan(pb::GetPlanRequest { job_id: job.id.clone() }).await.unwrap().into_inner();
    assert!(plan.units.iter().any(|u| u.channels_after < u.channels_before), "{plan:?}");
    let written = std::fs::read_to_string(format!("{}/plan.json", finetune[0].checkpoint_dir)).unwrap();
    assert_eq!(written, finetune[0].plan_json);

    for task in &finetune {
        let worker = if task.rank < 2 { &a } else { &b };
        worker.finish(task).await;
    }
    // Export is one rank, on the worker that fits it best.
    let export = a.assigned().await;
    assert_eq!((export.stage(), export.world_size), (pb::Stage::Export, 1));
    a.finish(&export).await;
    wait_for_state(&server, &job.id, pb::JobState::Succeeded).await;
    server.stop().await;
}

#[tokio::test]
async fn competing_gangs_never_split_the_slots() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let spec = format!("{SPEC}resources: {{ world_size: 2 }}\n");
    let first = submit(&server, &spec, 0).await;
    let second = submit(&server, &spec, 0).await;
    let mut worker = FakeWorker::connect(&server, "w", 3, &[]).await;
    // The first job takes two slots; the second cannot start on the one left.
    let (r0, r1) = (worker.assigned().await, worker.assigned().await);
    assert_eq!((r0.job_id.as_str(), r1.job_id.as_str()), (first.id.as_str(), first.id.as_str()));
    worker.assert_idle(Duration::from_millis(600)).await;
    wait_for_state(&server, &second.id, pb::JobState::Queued).await;
    // Cancelling the first job stops its ranks and frees its slots for the second.
    let mut jobs = server.jobs().await;
    jobs.cancel_job(pb::CancelJobRequest { job_id: first.id.clone() }).await.unwrap();
    let mut cancelled = Vec::new();
    let mut assigned = Vec::new();
    while cancelled.len() < 2 || assigned.len() < 2 {
        match worker.next().await {
            pb::coordinator_message::Kind::Cancel(c) => cancelled.push(c.task_id),
            pb::coordinator_message::Kind::Assign(a) => assigned.push(a.job_id),
            other => panic!("unexpected {other:?}"),
        }
    }
    cancelled.sort();
    assert_eq!(cancelled, [r0.task_id, r1.task_id]);
    assert_eq!(assigned, [second.id.clone(), second.id.clone()]);
    server.stop().await;
}

#[tokio::test]
async fn a_lost_worker_is_retried_from_its_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(&dir, |config| {
        config.heartbeat_interval_ms = 50;
        config.heartbeat_timeout_ms = 300;
    })
    .await;
    let job = submit(&server, SPEC, 0).await;
    let mut doomed = FakeWorker::connect(&server, "doomed", 1, &[]).await;
    let first = doomed.assigned().await;
    assert_eq!((first.attempt, first.resume), (1, false));
    doomed.send(&first, pb::task_event::Kind::CheckpointWritten("knockoff/checkpoints/step-8".into())).await;
    // The worker goes silent and drops off; a healthy one takes the retry.
    let mut healthy = FakeWorker::connect(&server, "healthy", 1, &[]).await;
    drop(doomed);
    let retry = healthy.assigned().await;
    assert_eq!((retry.stage(), retry.attempt), (pb::Stage::Knockoff, 2));
    // The retry resumes; the coordinator keeps the checkpoint it heard of.
    assert!(retry.resume);
    let (attempt, _) = server.store.attempt_for_task(&retry.task_id).await.unwrap();
    assert_eq!(attempt.resume_from.as_deref(), Some("knockoff/checkpoints/step-8"));

    let mut jobs = server.jobs().await;
    let mut events = jobs
        .watch_job(pb::WatchJobRequest { job_id: job.id.clone(), from_sequence: 1 })
        .await
        .unwrap()
        .into_inner();
    let mut error = None;
    while error.is_none() {
        if let Some(pb::job_event::Kind::Error(e)) = events.message().await.unwrap().unwrap().kind {
            error = Some(e);
        }
    }
    let error = error.unwrap();
    assert!(error.retrying && error.message.contains("was lost"), "{error:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_failed_rank_fails_the_job_once_restarts_are_spent() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let job = submit(&server, &format!("{SPEC}max_restarts: 1\n"), 0).await;
    let mut worker = FakeWorker::connect(&server, "w", 1, &[]).await;
    for attempt in 1..=2 {
        let task = worker.assigned().await;
        assert_eq!(task.attempt, attempt);
        worker.send(&task, pb::task_event::Kind::Failed("NaN loss at step 3".into())).await;
        match worker.next().await {
            pb::coordinator_message::Kind::Cancel(c) => assert_eq!(c.task_id, task.task_id),
            other => panic!("expected the failed rank's cancel, got {other:?}"),
        }
    }
    let failed = wait_for_state(&server, &job.id, pb::JobState::Failed).await;
    assert!(failed.error.contains("rank 0: NaN loss at step 3"), "{}", failed.error);
    worker.assert_idle(Duration::from_millis(400)).await;
    server.stop().await;
}

#[tokio::test]
async fn a_drained_worker_gets_no_new_ranks_and_keeps_its_running_ones() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let mut jobs = server.jobs().await;
    let mut a = FakeWorker::connect(&server, "a", 2, &[]).await;
    let first = submit(&server, SPEC, 0).await;
    let running = a.assigned().await;
    assert_eq!(running.job_id, first.id);

    let drained = jobs.drain_worker(pb::DrainWorkerRequest { worker_id: a.id.clone() }).await.unwrap();
    let drained = drained.into_inner();
    assert!(drained.drained);
    assert_eq!((drained.slots_total, drained.slots_busy, drained.slots_free), (2, 1, 0));

    // Its free slot takes no new rank, and its running rank is not stopped.
    let second = submit(&server, SPEC, 0).await;
    a.assert_idle(Duration::from_millis(800)).await;
    wait_for_state(&server, &first.id, pb::JobState::Running).await;
    let queued = jobs.get_job(pb::GetJobRequest { job_id: second.id.clone() }).await.unwrap().into_inner();
    assert_eq!(queued.state(), pb::JobState::Queued);
    assert_eq!(
        queued.queued_reason,
        "needs 1 cpu rank slots; the registered workers have 0 in all (and 2 on drained workers): \
         it starts once enough workers join"
    );

    // A reconnect keeps it drained; undraining lets the queued job onto it.
    drop(a);
    let mut a = FakeWorker::connect_as(&server, "a", &drained.id, 2, &[(&running.task_id, 0)]).await;
    let listed = jobs.list_workers(pb::ListWorkersRequest::default()).await.unwrap().into_inner().workers;
    assert!(listed.iter().all(|w| w.drained), "{listed:?}");
    a.assert_idle(Duration::from_millis(600)).await;
    let undrained = jobs.undrain_worker(pb::UndrainWorkerRequest { worker_id: drained.id.clone() }).await;
    assert!(!undrained.unwrap().into_inner().drained);
    assert_eq!(a.assigned().await.job_id, second.id);

    let unknown = jobs.drain_worker(pb::DrainWorkerRequest { worker_id: "no-such-worker".into() }).await;
    assert_eq!(unknown.unwrap_err().code(), tonic::Code::NotFound);
    let audited: Vec<(String, String, String)> = server
        .store
        .audit_log(100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action.contains("drain"))
        .map(|e| (e.user, e.action, e.target))
        .collect();
    let row = |action: &str| ("admin".to_owned(), action.to_owned(), drained.id.clone());
    assert_eq!(audited, vec![row("drain"), row("undrain")]);
    server.stop().await;
}

#[tokio::test]
async fn a_criterion_without_knockoff_runs_the_score_stage_and_decides_from_its_scores() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let spec = format!("{SPEC}prune: {{ criterion: l1, rate: 0.5 }}\n");
    let job = submit(&server, &spec, 0).await;
    let mut a = FakeWorker::connect(&server, "a", 1, &[]).await;

    // The score stage takes knockoff's place and sends the l1 scores once, as epoch 1.
    let score = a.assigned().await;
    assert_eq!((score.stage(), score.world_size), (pb::Stage::Score, 1));
    let mut stats = final_statistics(&spec);
    assert_eq!(stats.epoch, 1);
    for unit in &mut stats.units {
        // Channel c of n scores n − c: the low channels are the best.
        let n = unit.beta.len();
        unit.score = (0..n).map(|c| (n - c) as f32).collect();
        unit.beta.clear();
    }
    a.send(&score, pb::task_event::Kind::Statistics(stats)).await;
    a.finish(&score).await;

    let finetune = a.assigned().await;
    assert_eq!(finetune.stage(), pb::Stage::Finetune);
    let mut jobs = server.jobs().await;
    let plan = jobs.get_plan(pb::GetPlanRequest { job_id: job.id.clone() }).await.unwrap().into_inner();
    assert_eq!((plan.criterion.as_str(), plan.statistics_epoch), ("l1", 1));
    let core: scop_core::plan::Plan = serde_json::from_str(&finetune.plan_json).unwrap();
    for unit in &core.units {
        let half = unit.channels - unit.channels / 2;
        assert_eq!(unit.kept, (0..half).collect::<Vec<_>>(), "{}", unit.name);
    }
    let stored = jobs
        .get_score_statistics(pb::GetScoreStatisticsRequest { job_id: job.id.clone(), epoch: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.units[0].score.len(), 16);
    assert!(stored.units[0].beta.is_empty());

    a.finish(&finetune).await;
    let export = a.assigned().await;
    assert_eq!(export.stage(), pb::Stage::Export);
    a.finish(&export).await;
    wait_for_state(&server, &job.id, pb::JobState::Succeeded).await;
    server.stop().await;
}
