//! Sweeps: knockoff runs once, then every candidate decides, finetunes and
//! exports as its own branch job; a failed branch leaves the others alone,
//! finished branches stay finished across a coordinator restart, and
//! cancelling the sweep cancels every branch.

use std::collections::BTreeMap;
use std::time::Duration;

use scop_proto::v1 as pb;
use scop_server::testing::{FakeWorker, SPEC, TestServer, wait_for_state};

/// Two SCOP candidates at different rates and one L1 candidate.
fn sweep_spec() -> String {
    format!(
        "{SPEC}max_restarts: 0\nsweep:\n\
         - {{ criterion: scop, rate: 0.3 }}\n\
         - {{ criterion: scop, rate: 0.6 }}\n\
         - {{ name: magnitude, criterion: l1, rate: 0.5 }}\n"
    )
}

async fn submit(server: &TestServer, spec: &str) -> pb::Job {
    let mut jobs = server.jobs().await;
    let request = pb::SubmitJobRequest { spec_yaml: spec.into(), ..Default::default() };
    jobs.submit_job(request).await.unwrap().into_inner()
}

/// The branches of `sweep_id`, by candidate name.
async fn branches(server: &TestServer, sweep_id: &str) -> BTreeMap<String, pb::Job> {
    let mut jobs = server.jobs().await;
    let request = pb::ListJobsRequest { parent_id: sweep_id.into(), full_view: true, ..Default::default() };
    let listed = jobs.list_jobs(request).await.unwrap().into_inner().jobs;
    listed.into_iter().map(|j| (j.candidate.clone(), j)).collect()
}

/// Waits until `sweep_id` has forked `n` branches.
async fn forked(server: &TestServer, sweep_id: &str, n: usize) -> BTreeMap<String, pb::Job> {
    for _ in 0..500 {
        let found = branches(server, sweep_id).await;
        if found.len() == n {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("sweep {sweep_id} never forked {n} branches");
}

/// The next assignment within `wait`, passing over the cancels of ranks that
/// failed; `None` when none comes.
async fn next_task(worker: &mut FakeWorker, wait: Duration) -> Option<pb::AssignTask> {
    loop {
        match tokio::time::timeout(wait, worker.next()).await.ok()? {
            pb::coordinator_message::Kind::Assign(task) => return Some(task),
            pb::coordinator_message::Kind::Cancel(_) => {}
            other => panic!("expected an assignment, got {other:?}"),
        }
    }
}

/// Plays the next `n` assignments on `worker`, returning them.
async fn play(worker: &mut FakeWorker, n: usize) -> Vec<pb::AssignTask> {
    let mut played = Vec::with_capacity(n);
    for _ in 0..n {
        let task = worker.assigned().await;
        worker.play(&task).await;
        played.push(task);
    }
    played
}

async fn plan_of(server: &TestServer, job_id: &str) -> pb::Plan {
    let mut jobs = server.jobs().await;
    jobs.get_plan(pb::GetPlanRequest { job_id: job_id.into() }).await.unwrap().into_inner()
}

#[tokio::test]
async fn knockoff_runs_once_then_every_candidate_runs_as_its_own_branch() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let sweep = submit(&server, &sweep_spec()).await;
    let mut worker = FakeWorker::connect(&server, "w", 1, &[]).await;

    let knockoff = play(&mut worker, 1).await;
    assert_eq!((knockoff[0].job_id.as_str(), knockoff[0].stage()), (sweep.id.as_str(), pb::Stage::Knockoff));
    let forked = forked(&server, &sweep.id, 3).await;
    let running = wait_for_state(&server, &sweep.id, pb::JobState::Running).await;
    assert_eq!(running.stage(), pb::Stage::Sweep);
    assert_eq!(forked.keys().collect::<Vec<_>>(), ["magnitude", "scop-0.3", "scop-0.6"]);
    for branch in forked.values() {
        assert_eq!(branch.parent_id, sweep.id);
        let spec = scop_core::spec::JobSpec::from_yaml(&branch.spec_yaml).unwrap();
        assert!(!spec.is_sweep(), "a branch runs one candidate: {}", branch.spec_yaml);
    }

    // Every remaining assignment is a branch's: the SCOP branches finetune
    // and export (2 each), the L1 branch scores first (3).
    let tasks = play(&mut worker, 2 + 2 + 3).await;
    assert!(tasks.iter().all(|t| t.job_id != sweep.id), "the sweep itself runs nothing more");
    assert!(!tasks.iter().any(|t| t.stage() == pb::Stage::Knockoff), "knockoff ran again");
    let scores: Vec<&pb::AssignTask> = tasks.iter().filter(|t| t.stage() == pb::Stage::Score).collect();
    assert_eq!(scores.len(), 1);
    assert_eq!(scores[0].job_id, forked["magnitude"].id);

    let done = wait_for_state(&server, &sweep.id, pb::JobState::Succeeded).await;
    assert!(done.error.is_empty(), "{done:?}");
    for branch in forked.values() {
        wait_for_state(&server, &branch.id, pb::JobState::Succeeded).await;
    }
    // Each SCOP branch decided from the sweep's knockoff statistics, at its own rate.
    let kept = |plan: &pb::Plan| plan.channels_after as f64 / plan.channels_before as f64;
    let (light, heavy) =
        (plan_of(&server, &forked["scop-0.3"].id).await, plan_of(&server, &forked["scop-0.6"].id).await);
    assert!(kept(&light) > kept(&heavy), "0.3 kept {} but 0.6 kept {}", kept(&light), kept(&heavy));
    assert_eq!(plan_of(&server, &forked["magnitude"].id).await.criterion, "l1");
    // The knockoff weights were handed to each SCOP branch's own directory.
    let weights = server.job_dir(&forked["scop-0.3"].id).join("knockoff/model.safetensors");
    assert_eq!(std::fs::read(&weights).unwrap(), b"stand-in weights");

    // The sweep's events say which branch ended how.
    let mut jobs = server.jobs().await;
    let request = pb::WatchJobRequest { job_id: sweep.id.clone(), from_sequence: 1 };
    let mut stream = jobs.watch_job(request).await.unwrap().into_inner();
    let mut notices = Vec::new();
    while let Some(event) = stream.message().await.unwrap() {
        if let Some(pb::job_event::Kind::Notice(n)) = event.kind {
            notices.push(n.message);
        }
        if event.sequence == done.last_sequence {
            break;
        }
    }
    assert!(notices[0].starts_with("3 branch(es) queued"), "{notices:?}");
    for name in ["scop-0.3", "scop-0.6", "magnitude"] {
        let id = &forked[name].id;
        assert!(notices.contains(&format!("branch {name} ({id}) succeeded")), "{name}: {notices:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_failed_branch_leaves_the_others_running_and_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let sweep = submit(&server, &sweep_spec()).await;
    let mut worker = FakeWorker::connect(&server, "w", 1, &[]).await;
    play(&mut worker, 1).await;
    let forked = forked(&server, &sweep.id, 3).await;

    // The first finetune of "scop-0.6" fails; everything else plays through.
    let mut failed = false;
    for _ in 0..20 {
        let Some(task) = next_task(&mut worker, Duration::from_secs(3)).await else { break };
        if !failed && task.job_id == forked["scop-0.6"].id && task.stage() == pb::Stage::Finetune {
            worker.send(&task, pb::task_event::Kind::Failed("CUDA out of memory".into())).await;
            failed = true;
        } else {
            worker.play(&task).await;
        }
    }
    assert!(failed, "scop-0.6 never reached finetune");
    let broken = wait_for_state(&server, &forked["scop-0.6"].id, pb::JobState::Failed).await;
    assert!(broken.error.contains("CUDA out of memory"), "{broken:?}");
    for name in ["scop-0.3", "magnitude"] {
        wait_for_state(&server, &forked[name].id, pb::JobState::Succeeded).await;
    }
    // Two of three succeeded: the sweep succeeds, and its events name the failure.
    wait_for_state(&server, &sweep.id, pb::JobState::Succeeded).await;
    let events = server.store.events_since(&sweep.id, 1).await.unwrap().0;
    let failure = format!("branch scop-0.6 ({}) failed:", forked["scop-0.6"].id);
    assert!(
        events.iter().any(|e| matches!(&e.kind, scop_server::domain::EventKind::Notice { message, .. } if message.starts_with(&failure) && message.contains("CUDA out of memory"))),
        "{events:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_sweep_whose_every_branch_failed_fails_with_each_reason() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let spec = format!("{SPEC}max_restarts: 0\nsweep: [{{ rate: 0.3 }}, {{ rate: 0.5 }}]\n");
    let sweep = submit(&server, &spec).await;
    let mut worker = FakeWorker::connect(&server, "w", 1, &[]).await;
    play(&mut worker, 1).await;
    forked(&server, &sweep.id, 2).await;
    for _ in 0..2 {
        let task = next_task(&mut worker, Duration::from_secs(10)).await.expect("a finetune");
        assert_eq!(task.stage(), pb::Stage::Finetune);
        worker.send(&task, pb::task_event::Kind::Failed("disk full".into())).await;
    }
    let failed = wait_for_state(&server, &sweep.id, pb::JobState::Failed).await;
    assert!(failed.error.starts_with("every branch of the sweep failed; scop-0.3: "), "{}", failed.error);
    assert!(failed.error.contains("; scop-0.5: ") && failed.error.contains("disk full"), "{}", failed.error);
    server.stop().await;
}

#[tokio::test]
async fn finished_branches_stay_finished_across_a_coordinator_restart() {
    let dir = tempfile::tempdir().unwrap();
    let fast = |config: &mut scop_server::Config| {
        config.heartbeat_interval_ms = 50;
        config.heartbeat_timeout_ms = 400;
    };
    let server = TestServer::start_with(&dir, fast).await;
    // The next branch's rank, placed when the first finished, is lost with the
    // old worker's stream and retried after the restart.
    let spec = sweep_spec().replace("max_restarts: 0", "max_restarts: 2");
    let sweep = submit(&server, &spec).await;
    let mut worker = FakeWorker::connect(&server, "w", 1, &[]).await;
    play(&mut worker, 1).await;
    let forked = forked(&server, &sweep.id, 3).await;
    // Play until the first branch has finished, then stop the coordinator.
    let first = loop {
        let task = play(&mut worker, 1).await.remove(0);
        if task.stage() == pb::Stage::Export {
            break task.job_id;
        }
    };
    let finished = wait_for_state(&server, &first, pb::JobState::Succeeded).await;
    drop(worker);
    let server = server.restart().await;

    // The same three branches, no new ones; the finished one is untouched.
    let mut worker = FakeWorker::connect(&server, "w", 1, &[]).await;
    let after = branches(&server, &sweep.id).await;
    assert_eq!(
        after.values().map(|b| b.id.clone()).collect::<Vec<_>>(),
        forked.values().map(|b| b.id.clone()).collect::<Vec<_>>()
    );
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let Some(task) = next_task(&mut worker, Duration::from_secs(3)).await else { break };
        worker.play(&task).await;
        tasks.push(task);
    }
    assert!(!tasks.iter().any(|t| t.job_id == first), "the finished branch ran again: {tasks:?}");
    assert!(!tasks.iter().any(|t| t.stage() == pb::Stage::Knockoff), "knockoff ran again");
    wait_for_state(&server, &sweep.id, pb::JobState::Succeeded).await;
    let still = wait_for_state(&server, &first, pb::JobState::Succeeded).await;
    assert_eq!(still.last_sequence, finished.last_sequence, "the finished branch got new events");
    server.stop().await;
}

#[tokio::test]
async fn cancelling_the_sweep_cancels_every_branch_and_stops_their_ranks() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let sweep = submit(&server, &sweep_spec()).await;
    let mut worker = FakeWorker::connect(&server, "w", 1, &[]).await;
    play(&mut worker, 1).await;
    let forked = forked(&server, &sweep.id, 3).await;
    // One branch holds the only slot; the other two wait in the queue.
    let running = worker.assigned().await;
    assert!(forked.values().any(|b| b.id == running.job_id));

    let mut jobs = server.jobs().await;
    let cancelled =
        jobs.cancel_job(pb::CancelJobRequest { job_id: sweep.id.clone() }).await.unwrap().into_inner();
    assert_eq!(cancelled.state(), pb::JobState::Cancelled);
    for branch in forked.values() {
        let job = wait_for_state(&server, &branch.id, pb::JobState::Cancelled).await;
        assert!(job.error.contains(&format!("its sweep {} was cancelled", sweep.id)), "{job:?}");
    }
    match worker.next().await {
        pb::coordinator_message::Kind::Cancel(cancel) => assert_eq!(cancel.task_id, running.task_id),
        other => panic!("expected the running branch's rank to be cancelled, got {other:?}"),
    }
    // Nothing else is placed.
    worker.assert_idle(Duration::from_millis(800)).await;
    server.stop().await;
}
