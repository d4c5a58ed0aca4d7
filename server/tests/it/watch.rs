//! WatchJob replays from a sequence number, follows live events, ends at the
//! terminal event, and a resumed watch has no gaps or duplicates.

use scop_proto::v1 as pb;
use scop_server::domain::{EventKind, JobState, Progress, Stage};
use tonic::Streaming;

use scop_server::testing::{Jobs, TestServer};

fn progress(step: u64) -> EventKind {
    EventKind::Progress(Progress {
        stage: Stage::Knockoff,
        epoch: 1,
        epochs: 1,
        step,
        steps: 1000,
        loss: 1.0 / step as f64,
        accuracy: 0.5,
        samples_per_second: 100.0,
        eta_seconds: 1.0,
    })
}

async fn watch(jobs: &mut Jobs, job_id: &str, from_sequence: u64) -> Streaming<pb::JobEvent> {
    jobs.watch_job(pb::WatchJobRequest { job_id: job_id.into(), from_sequence }).await.unwrap().into_inner()
}

/// Every event until the stream ends.
async fn drain(mut stream: Streaming<pb::JobEvent>) -> Vec<pb::JobEvent> {
    let mut events = Vec::new();
    while let Some(event) = stream.message().await.unwrap() {
        events.push(event);
    }
    events
}

#[tokio::test]
async fn replay_then_follow_until_the_job_ends() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let mut jobs = server.jobs().await;
    let job = server.submit(&mut jobs, "", &[]).await;

    let mut stream = watch(&mut jobs, &job.id, 0).await;
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.sequence, 1);
    match first.kind.unwrap() {
        pb::job_event::Kind::StateChanged(change) => {
            assert_eq!((change.from(), change.to()), (pb::JobState::Unspecified, pb::JobState::Queued));
        }
        other => panic!("expected the submission state change, got {other:?}"),
    }

    // Live events, written the way the scheduler writes them.
    server.store.transition_job(&job.id, JobState::Running(Stage::Knockoff), None).await.unwrap();
    let second = stream.message().await.unwrap().unwrap();
    match second.kind.unwrap() {
        pb::job_event::Kind::StateChanged(change) => {
            assert_eq!((change.to(), change.stage()), (pb::JobState::Running, pb::Stage::Knockoff));
        }
        other => panic!("expected running(knockoff), got {other:?}"),
    }
    server.store.append_event(&job.id, progress(7)).await.unwrap();
    let third = stream.message().await.unwrap().unwrap();
    match third.kind.unwrap() {
        pb::job_event::Kind::Progress(p) => {
            assert_eq!((p.stage(), p.step, p.steps), (pb::Stage::Knockoff, 7, 1000))
        }
        other => panic!("expected progress, got {other:?}"),
    }
    jobs.cancel_job(pb::CancelJobRequest { job_id: job.id.clone() }).await.unwrap();
    let rest = drain(stream).await;
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(rest[0].sequence, 4);
    match rest[0].kind.clone().unwrap() {
        pb::job_event::Kind::StateChanged(change) => {
            assert_eq!(change.to(), pb::JobState::Cancelled);
            assert_eq!(change.reason, "cancelled by a client");
        }
        other => panic!("expected the cancellation, got {other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn following_a_busy_job_and_resuming_has_no_gaps_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let mut jobs = server.jobs().await;
    let job = server.submit(&mut jobs, "", &[]).await;
    server.store.transition_job(&job.id, JobState::Running(Stage::Knockoff), None).await.unwrap();

    // Two followers start before the burst; more events than one store page.
    let from_start = watch(&mut jobs, &job.id, 0).await;
    let from_two = watch(&mut jobs, &job.id, 2).await;
    let store = server.store.clone();
    let job_id = job.id.clone();
    let writer = tokio::spawn(async move {
        for step in 1..=600 {
            store.append_event(&job_id, progress(step)).await.unwrap();
        }
        store.transition_job(&job_id, JobState::Failed, Some("rank 0: NaN loss".into())).await.unwrap();
    });
    let all = drain(from_start).await;
    let tail = drain(from_two).await;
    writer.await.unwrap();

    let last = 2 + 600 + 1;
    assert_eq!(all.iter().map(|e| e.sequence).collect::<Vec<_>>(), (1..=last).collect::<Vec<u64>>());
    assert_eq!(tail.iter().map(|e| e.sequence).collect::<Vec<_>>(), (2..=last).collect::<Vec<u64>>());
    assert_eq!(&all[1..], &tail[..]);

    // A client that saw event 300 resumes at 301 and gets exactly the rest.
    let resumed = drain(watch(&mut jobs, &job.id, 301).await).await;
    assert_eq!(resumed.iter().map(|e| e.sequence).collect::<Vec<_>>(), (301..=last).collect::<Vec<u64>>());
    assert_eq!(&resumed[..], &all[300..]);
    // Resuming past the end of an ended job ends at once.
    assert!(drain(watch(&mut jobs, &job.id, last + 1).await).await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn shutdown_ends_open_watches_with_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let mut jobs = server.jobs().await;
    let job = server.submit(&mut jobs, "", &[]).await;
    let mut stream = watch(&mut jobs, &job.id, 0).await;
    assert_eq!(stream.message().await.unwrap().unwrap().sequence, 1);
    server.stop().await;
    let status = stream.message().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("resume with from_sequence"), "{}", status.message());
}
