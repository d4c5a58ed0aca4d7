//! Store behaviour against a real SQLite file: transitions with their events,
//! attempts for the scheduler, workers and their slots, statistics and plans.

use std::collections::BTreeMap;

use scop_core::plan::PlanSummary;

use super::test_support::temp_store;
use super::{AttemptOutcome, JobFilter, Store};
use crate::domain::{
    Artifact, AttemptState, Device, EventKind, JobState, NewAttempt, NewJob, Plan, PlanUnit, ScoreSummary,
    Stage, StagePlan, StateKind, UnitStatistics, WorkerHello, WorkerState,
};
use crate::error::Error;

fn new_job(request_id: Option<&str>, labels: &[(&str, &str)]) -> NewJob {
    NewJob {
        spec_yaml: "model: {arch: resnet20, num_classes: 10}\n".into(),
        stages: StagePlan::from_stored("knockoff,decide,finetune,export").unwrap(),
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        priority: 0,
        request_id: request_id.map(str::to_owned),
        owner: "alice".into(),
        world_size: 1,
        name: String::new(),
    }
}

fn hello(hostname: &str, slots: u32) -> WorkerHello {
    WorkerHello {
        worker_id: None,
        hostname: hostname.into(),
        agent_version: "0.1.0".into(),
        devices: (0..slots)
            .map(|index| Device { kind: "cpu".into(), index, name: "cpu".into(), memory_bytes: 0 })
            .collect(),
        cpu_cores: 4,
    }
}

async fn sequences(store: &Store, job_id: &str) -> Vec<u64> {
    store.events_since(job_id, 1).await.unwrap().0.iter().map(|e| e.sequence).collect()
}

#[tokio::test]
async fn a_job_runs_through_every_stage_with_one_event_per_change() {
    let (store, _dir) = temp_store().await;
    let (job, created) = store.submit_job(new_job(None, &[])).await.unwrap();
    assert!(created);
    assert_eq!((job.state, job.last_sequence), (JobState::Queued, 1));
    for stage in [Stage::Knockoff, Stage::Decide, Stage::Finetune, Stage::Export] {
        store.transition_job(&job.id, JobState::Running(stage), None).await.unwrap();
    }
    let (done, event) = store.transition_job(&job.id, JobState::Succeeded, None).await.unwrap();
    assert_eq!((done.state, done.stage, done.last_sequence), (JobState::Succeeded, Some(Stage::Export), 6));
    assert!(event.is_terminal());
    assert_eq!(sequences(&store, &job.id).await, vec![1, 2, 3, 4, 5, 6]);
    let (_, ended) = store.events_since(&job.id, 7).await.unwrap();
    assert!(ended);

    // Nothing moves or is appended after the end.
    let err = store.transition_job(&job.id, JobState::Cancelled, None).await.unwrap_err();
    assert!(matches!(err, Error::Transition { .. }), "{err}");
    let err = store
        .append_event(&job.id, EventKind::PlanDecided { units: 0, channels_before: 0, channels_after: 0 })
        .await;
    assert!(matches!(err, Err(Error::JobEnded { .. })), "{err:?}");
    assert_eq!(sequences(&store, &job.id).await.len(), 6);
}

#[tokio::test]
async fn illegal_transitions_leave_no_event_behind() {
    let (store, _dir) = temp_store().await;
    let (job, _) = store.submit_job(new_job(None, &[])).await.unwrap();
    let err = store.transition_job(&job.id, JobState::Running(Stage::Finetune), None).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("job {}: a job cannot move from queued to running(finetune)", job.id)
    );
    assert_eq!(store.get_job(&job.id).await.unwrap().last_sequence, 1);
    assert!(matches!(store.get_job("nope").await, Err(Error::JobNotFound(id)) if id == "nope"));
}

#[tokio::test]
async fn request_ids_make_submission_idempotent() {
    let (store, _dir) = temp_store().await;
    let (first, created) = store.submit_job(new_job(Some("r-1"), &[("team", "a")])).await.unwrap();
    let (again, created_again) = store.submit_job(new_job(Some("r-1"), &[("team", "a")])).await.unwrap();
    assert!(created && !created_again);
    assert_eq!(first, again);
    let err = store.submit_job(new_job(Some("r-1"), &[("team", "b")])).await.unwrap_err();
    assert!(matches!(err, Error::RequestIdReused { .. }), "{err}");
    assert_eq!(store.list_jobs(JobFilter::default(), 10, None).await.unwrap().jobs.len(), 1);
}

#[tokio::test]
async fn listing_filters_by_state_and_labels_and_pages_newest_first() {
    let (store, _dir) = temp_store().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let team = if i % 2 == 0 { "even" } else { "odd" };
        ids.push(
            store.submit_job(new_job(None, &[("team", team), ("n", &i.to_string())])).await.unwrap().0.id,
        );
    }
    store.cancel_job(&ids[4], "test".into()).await.unwrap();

    let page = store.list_jobs(JobFilter::default(), 2, None).await.unwrap();
    assert_eq!(page.jobs.iter().map(|j| &j.id).collect::<Vec<_>>(), vec![&ids[4], &ids[3]]);
    let page = store.list_jobs(JobFilter::default(), 2, page.next).await.unwrap();
    assert_eq!(page.jobs.iter().map(|j| &j.id).collect::<Vec<_>>(), vec![&ids[2], &ids[1]]);
    let page = store.list_jobs(JobFilter::default(), 2, page.next).await.unwrap();
    assert_eq!((page.jobs.len(), page.next), (1, None));

    let even = JobFilter {
        state: Some(StateKind::Queued),
        labels: BTreeMap::from([("team".into(), "even".into())]),
        owner: None,
        parent_id: None,
    };
    let page = store.list_jobs(even, 10, None).await.unwrap();
    assert_eq!(page.jobs.iter().map(|j| &j.id).collect::<Vec<_>>(), vec![&ids[2], &ids[0]]);
    let cancelled = JobFilter { state: Some(StateKind::Cancelled), ..JobFilter::default() };
    assert_eq!(store.list_jobs(cancelled, 10, None).await.unwrap().jobs[0].id, ids[4]);
    let counts = store.job_counts().await.unwrap();
    assert_eq!((counts.queued, counts.cancelled), (4, 1));
    assert_eq!(
        store.queued_jobs().await.unwrap().iter().map(|j| &j.id).collect::<Vec<_>>(),
        ids[..4].iter().collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn jobs_record_their_owner_for_filters_quotas_and_the_audit_log() {
    let (store, _dir) = temp_store().await;
    let (mine, _) = store.submit_job(NewJob { world_size: 3, ..new_job(None, &[]) }).await.unwrap();
    let theirs = NewJob { owner: "bob".into(), ..new_job(None, &[]) };
    let (theirs, _) = store.submit_job(theirs).await.unwrap();
    assert_eq!((mine.owner.as_str(), theirs.owner.as_str()), ("alice", "bob"));
    let bobs = JobFilter { owner: Some("bob".into()), ..JobFilter::default() };
    let page = store.list_jobs(bobs, 10, None).await.unwrap();
    assert_eq!(page.jobs.iter().map(|j| &j.id).collect::<Vec<_>>(), vec![&theirs.id]);
    store.transition_job(&mine.id, JobState::Running(Stage::Knockoff), None).await.unwrap();
    store.submit_job(new_job(None, &[])).await.unwrap();
    let usage = store.usage_of("alice").await.unwrap();
    assert_eq!((usage.queued_jobs, usage.running_jobs, usage.rank_slots), (1, 1, 4));
    store.cancel_job(&mine.id, "test".into()).await.unwrap();
    assert_eq!(store.usage_of("alice").await.unwrap().running_jobs, 0);
    assert_eq!(store.usage_of("nobody").await.unwrap(), crate::users::Usage::default());

    store.audit("alice", "submit", &mine.id, "priority 0".into()).await.unwrap();
    store.audit("root", "cancel", &mine.id, String::new()).await.unwrap();
    let log = store.audit_log(10).await.unwrap();
    assert_eq!(
        log.iter().map(|e| (e.user.as_str(), e.action.as_str(), e.target.as_str())).collect::<Vec<_>>(),
        vec![("alice", "submit", mine.id.as_str()), ("root", "cancel", mine.id.as_str())]
    );
    assert_eq!(store.audit_log(1).await.unwrap()[0].user, "root");
}

#[tokio::test]
async fn attempts_hold_slots_and_record_what_a_retry_needs() {
    let (store, _dir) = temp_store().await;
    let w1 = store.register_worker(hello("node-a", 2)).await.unwrap();
    let w2 = store.register_worker(hello("node-b", 2)).await.unwrap();
    let (job, _) = store.submit_job(new_job(None, &[])).await.unwrap();

    let new_attempt = || NewAttempt {
        job_id: job.id.clone(),
        stage: Stage::Knockoff,
        world_size: 3,
        resume_from: None,
        placement: vec![(w1.id.clone(), 0), (w1.id.clone(), 1), (w2.id.clone(), 0)],
    };
    let err = store.create_attempt(new_attempt()).await.unwrap_err();
    assert!(matches!(err, Error::StageNotRunning { .. }), "{err}");

    store.transition_job(&job.id, JobState::Running(Stage::Knockoff), None).await.unwrap();
    let (attempt, event) = store.create_attempt(new_attempt()).await.unwrap();
    assert_eq!((attempt.number, attempt.state, attempt.ranks.len()), (1, AttemptState::Pending, 3));
    assert_eq!(event.kind, EventKind::StageStarted { stage: Stage::Knockoff, attempt: 1, world_size: 3 });
    assert_eq!(store.get_worker(&w1.id).await.unwrap().slots_busy, 2);
    assert_eq!(store.get_worker(&w2.id).await.unwrap().slots_free(), 1);

    store.mark_attempt_running(&attempt.id).await.unwrap();
    store.record_rendezvous(&attempt.id, r#"{"addr":"10.0.0.1:29500"}"#.into()).await.unwrap();
    store.record_checkpoint(&attempt.id, "ckpt/knockoff-e1.safetensors".into()).await.unwrap();
    let (found, rank) = store.attempt_for_task(&attempt.ranks[2].task_id).await.unwrap();
    assert_eq!((found.id.as_str(), rank), (attempt.id.as_str(), 2));
    assert_eq!(found.last_checkpoint.as_deref(), Some("ckpt/knockoff-e1.safetensors"));
    assert_eq!(store.live_attempts_on_worker(&w2.id).await.unwrap().len(), 1);

    // A lost worker fails the attempt; the retry resumes from the checkpoint.
    let lost = store.mark_lost_workers(i64::MAX, Vec::new()).await.unwrap();
    assert_eq!(lost.len(), 2);
    let outcome = AttemptOutcome::Failed { reason: "worker node-b lost".into(), retrying: true };
    let (failed, event) = store.finish_attempt(&attempt.id, outcome).await.unwrap();
    assert_eq!(failed.state, AttemptState::Failed);
    assert!(matches!(event.unwrap().kind, EventKind::Error { retrying: true, attempt: 1, .. }));
    assert_eq!(store.get_worker(&w1.id).await.unwrap().slots_busy, 0);
    let again = store.finish_attempt(&attempt.id, AttemptOutcome::Cancelled { reason: "x".into() }).await;
    assert!(matches!(again, Err(Error::AttemptEnded { .. })), "{again:?}");

    let retry = NewAttempt {
        resume_from: failed.last_checkpoint.clone(),
        world_size: 1,
        placement: vec![(w1.id.clone(), 0)],
        ..new_attempt()
    };
    let (second, _) = store.create_attempt(retry).await.unwrap();
    assert_eq!(second.number, 2);
    assert_eq!(store.get_job(&job.id).await.unwrap().attempt, 2);
    assert_eq!(
        store.live_attempts().await.unwrap().iter().map(|a| &a.id).collect::<Vec<_>>(),
        vec![&second.id]
    );
    let metrics = BTreeMap::from([("accuracy".to_owned(), 0.9)]);
    let (_, event) = store.finish_attempt(&second.id, AttemptOutcome::Succeeded { metrics }).await.unwrap();
    assert!(matches!(event.unwrap().kind, EventKind::StageFinished { attempt: 2, .. }));
    assert!(store.live_attempts().await.unwrap().is_empty());
}

#[tokio::test]
async fn cancelling_a_running_job_cancels_its_live_attempts() {
    let (store, _dir) = temp_store().await;
    let worker = store.register_worker(hello("node-a", 1)).await.unwrap();
    let (job, _) = store.submit_job(new_job(None, &[])).await.unwrap();
    store.transition_job(&job.id, JobState::Running(Stage::Knockoff), None).await.unwrap();
    let new = NewAttempt {
        job_id: job.id.clone(),
        stage: Stage::Knockoff,
        world_size: 1,
        resume_from: None,
        placement: vec![(worker.id.clone(), 0)],
    };
    let (attempt, _) = store.create_attempt(new).await.unwrap();
    let cancelled = store.cancel_job(&job.id, "by test".into()).await.unwrap();
    assert_eq!((cancelled.state, cancelled.error.as_deref()), (JobState::Cancelled, Some("by test")));
    assert_eq!(store.get_attempt(&attempt.id).await.unwrap().state, AttemptState::Cancelled);
    // Cancelling again changes nothing.
    let again = store.cancel_job(&job.id, "twice".into()).await.unwrap();
    assert_eq!(again.last_sequence, cancelled.last_sequence);
}

#[tokio::test]
async fn workers_reconnect_under_their_id_and_go_lost_when_silent() {
    let (store, _dir) = temp_store().await;
    let first = store.register_worker(hello("node-a", 2)).await.unwrap();
    store.disconnect_worker(&first.id).await.unwrap();
    assert_eq!(store.get_worker(&first.id).await.unwrap().state, WorkerState::Disconnected);
    let back = store
        .register_worker(WorkerHello { worker_id: Some(first.id.clone()), ..hello("node-a", 3) })
        .await
        .unwrap();
    assert_eq!(
        (back.id.as_str(), back.state, back.slots_total()),
        (first.id.as_str(), WorkerState::Connected, 3)
    );
    assert!(store.mark_lost_workers(back.last_seen_ms - 1, Vec::new()).await.unwrap().is_empty());
    assert_eq!(
        store.mark_lost_workers(back.last_seen_ms + 1, Vec::new()).await.unwrap(),
        vec![first.id.clone()]
    );
    assert!(store.list_workers(false).await.unwrap().is_empty());
    assert_eq!(store.list_workers(true).await.unwrap()[0].state, WorkerState::Lost);
    // Heard from again on its surviving stream: connected, and time never goes back.
    let later = back.last_seen_ms + 5;
    let batch = vec![(first.id.clone(), later), (first.id.clone(), later - 3), ("ghost".to_owned(), later)];
    store.touch_workers(batch).await.unwrap();
    let worker = store.get_worker(&first.id).await.unwrap();
    assert_eq!((worker.state, worker.last_seen_ms), (WorkerState::Connected, later));
}

#[tokio::test]
async fn statistics_plans_and_artifacts_are_stored_with_their_events() {
    let (store, _dir) = temp_store().await;
    let (job, _) = store.submit_job(new_job(None, &[])).await.unwrap();
    let err = store.get_plan(&job.id).await.unwrap_err();
    assert!(err.to_string().contains("has no plan yet") && err.to_string().contains("queued"), "{err}");
    store.transition_job(&job.id, JobState::Running(Stage::Knockoff), None).await.unwrap();
    let stats = |b: f32| vec![UnitStatistics::scop("layer1.0.conv1", vec![b, 0.25], vec![1.0, 2.0])];
    store.record_score_statistics(&job.id, "a1", Stage::Knockoff, 1, stats(0.5)).await.unwrap();
    store.record_score_statistics(&job.id, "a1", Stage::Knockoff, 2, stats(0.75)).await.unwrap();
    let (epoch, latest) = store.score_statistics(&job.id, None).await.unwrap().unwrap();
    assert_eq!((epoch, latest[0].beta.clone()), (2, vec![0.75, 0.25]));
    assert_eq!(store.score_statistics(&job.id, Some(1)).await.unwrap().unwrap().1, stats(0.5));
    assert_eq!(store.score_statistics(&job.id, Some(9)).await.unwrap(), None);

    let plan = Plan {
        job_id: job.id.clone(),
        decided_at_ms: 5,
        policy: "layer".into(),
        criterion: "scop".into(),
        rate: 0.5,
        statistics_epoch: 2,
        units: vec![PlanUnit {
            unit: "layer1.0.conv1".into(),
            channels_before: 2,
            channels_after: 1,
            score: ScoreSummary {
                min: -1.0,
                mean: -0.25,
                max: 0.5,
                kept_min: 0.5,
                pruned_max: Some(-1.0),
                median: Some(-0.25),
            },
        }],
        totals: Some(PlanSummary {
            input_size: 32,
            params_before: 100,
            params_after: 60,
            flops_before: 1000,
            flops_after: 500,
        }),
        residual: "group".into(),
        round_to: 8,
        groups: vec![crate::domain::PlanGroup {
            writer: "conv1".into(),
            channels_before: 16,
            channels_after: 8,
            members: vec!["layer1.0.conv2".into()],
        }],
    };
    let event = store.save_plan(plan.clone(), 0.25).await.unwrap();
    assert_eq!(event.kind, EventKind::PlanDecided { units: 1, channels_before: 2, channels_after: 1 });
    assert_eq!(store.get_plan(&job.id).await.unwrap(), plan);

    let artifact =
        Artifact { kind: "safetensors".into(), path: "jobs/x/model.safetensors".into(), size_bytes: 42 };
    store.record_artifacts(&job.id, Stage::Export, vec![artifact.clone()]).await.unwrap();
    assert_eq!(store.list_artifacts(&job.id).await.unwrap(), vec![(Stage::Export, artifact)]);
    // The decide stage's start and finish surround the decision; the finish carries the totals.
    let (events, _) = store.events_since(&job.id, event.sequence - 1).await.unwrap();
    assert_eq!(events[0].kind, EventKind::StageStarted { stage: Stage::Decide, attempt: 1, world_size: 0 });
    match &events[2].kind {
        EventKind::StageFinished { stage: Stage::Decide, seconds, metrics, .. } => {
            assert_eq!(*seconds, 0.25);
            assert_eq!(metrics.get("params_after"), Some(&60.0));
            assert_eq!(metrics.get("flops_before"), Some(&1000.0));
        }
        other => panic!("expected the decide stage's finish, got {other:?}"),
    }
    assert_eq!(sequences(&store, &job.id).await, vec![1, 2, 3, 4, 5, 6, 7, 8]);
}

#[tokio::test]
async fn another_criterions_scores_are_stored_beside_scops_statistics() {
    let (store, _dir) = temp_store().await;
    let stages = StagePlan::from_stored("score,decide,finetune,export").unwrap();
    let (job, _) = store.submit_job(NewJob { stages, ..new_job(None, &[]) }).await.unwrap();
    store.transition_job(&job.id, JobState::Running(Stage::Score), None).await.unwrap();
    let scored = vec![UnitStatistics::scored("layer1.0.conv1", vec![3.5, -1.0], vec![1.0, 2.0])];
    let event = store.record_score_statistics(&job.id, "a1", Stage::Score, 1, scored.clone()).await.unwrap();
    assert_eq!(event.kind, EventKind::ScoreStatisticsReceived { stage: Stage::Score, epoch: 1, units: 1 });
    assert_eq!(store.score_statistics(&job.id, Some(1)).await.unwrap(), Some((1, scored)));
    // SCOP's statistics come back without scores.
    let scop = vec![UnitStatistics::scop("layer1.0.conv1", vec![0.5, 1.0], vec![1.0, 2.0])];
    store.record_score_statistics(&job.id, "a1", Stage::Score, 2, scop.clone()).await.unwrap();
    assert_eq!(store.score_statistics(&job.id, None).await.unwrap(), Some((2, scop)));
}

#[tokio::test]
async fn reopening_keeps_jobs_and_their_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scop.db");
    let store = Store::open(&path).await.unwrap();
    let (job, _) = store.submit_job(new_job(Some("keep"), &[])).await.unwrap();
    store.close().await;
    // A clean close checkpoints the write-ahead log into the database file.
    assert!(!dir.path().join("scop.db-wal").exists());
    let store = Store::open(&path).await.unwrap();
    let again = store.get_job(&job.id).await.unwrap();
    assert_eq!(again, job);
    assert_eq!(store.queued_jobs().await.unwrap().len(), 1);
    assert_eq!(sequences(&store, &job.id).await, vec![1]);
}

#[tokio::test]
async fn branches_are_forked_once_and_never_for_an_ended_sweep() {
    let (store, _dir) = temp_store().await;
    let branch = |candidate: &str| super::NewBranch {
        candidate: candidate.into(),
        job: NewJob {
            stages: StagePlan::from_stored("decide,finetune,export").unwrap(),
            ..new_job(None, &[])
        },
    };
    let (sweep, _) = store
        .submit_job(NewJob {
            stages: StagePlan::from_stored("knockoff,sweep").unwrap(),
            ..new_job(None, &[])
        })
        .await
        .unwrap();
    let first = store.fork_branches(&sweep.id, vec![branch("a"), branch("b")]).await.unwrap();
    assert_eq!(first.iter().map(|b| b.candidate.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert!(
        first
            .iter()
            .all(|b| b.parent_id.as_deref() == Some(sweep.id.as_str()) && b.state == JobState::Queued)
    );
    // Forking again (a restart) returns the same jobs and creates none.
    let again = store.fork_branches(&sweep.id, vec![branch("a"), branch("b")]).await.unwrap();
    assert_eq!(
        again.iter().map(|b| &b.id).collect::<Vec<_>>(),
        first.iter().map(|b| &b.id).collect::<Vec<_>>()
    );
    let filter = JobFilter { parent_id: Some(sweep.id.clone()), ..JobFilter::default() };
    assert_eq!(store.list_jobs(filter, 10, None).await.unwrap().jobs.len(), 2);

    // Cancelling the sweep cancels its open branches in the same call, and an
    // ended sweep gets no new branch.
    store.cancel_job(&sweep.id, "enough".into()).await.unwrap();
    for b in store.branches(&sweep.id).await.unwrap() {
        assert_eq!(b.state, JobState::Cancelled, "{b:?}");
        assert_eq!(
            b.error.as_deref(),
            Some(format!("its sweep {} was cancelled: enough", sweep.id).as_str())
        );
    }
    let late = store.fork_branches(&sweep.id, vec![branch("a"), branch("c")]).await.unwrap();
    assert_eq!(late.iter().map(|b| b.candidate.as_str()).collect::<Vec<_>>(), ["a"]);
}
