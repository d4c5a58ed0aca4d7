//! `scopctl watch` survives its coordinator restarting mid-job: the stream is
//! dropped, the watch reconnects with backoff to the coordinator that comes
//! back on the same data dir and address, and resumes after the last event it
//! saw: no event is missed or shown twice.

use scop_proto::v1 as pb;
use scop_server::testing::{FakeWorker, TestServer};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{scopctl, spec_file};

#[tokio::test]
async fn watch_resumes_after_the_coordinator_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let home = dir.path().join("home");
    let spec = spec_file(dir.path(), "knockoff: { epochs: 1 }\n");
    let submitted = scopctl(&server, &home).arg("submit").arg(&spec).output().await.unwrap();
    let id = String::from_utf8(submitted.stdout).unwrap().trim().to_owned();

    let mut watching = scopctl(&server, &home).args(["watch", &id, "-o", "json"]).spawn().unwrap();
    let mut lines = BufReader::new(watching.stdout.take().unwrap()).lines();
    let mut seen: Vec<Value> = Vec::new();
    let mut worker = FakeWorker::connect(&server, "w", 1, &[]).await;
    let knockoff = worker.assigned().await;
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
    worker.send(&knockoff, progress(1)).await;
    // Wait until the watch has shown that progress.
    while seen.last().is_none_or(|e| e["kind"] != "progress") {
        seen.push(serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap());
    }

    // The coordinator goes away and comes back; the agent reconnects still running its rank.
    let worker_id = worker.id.clone();
    drop(worker);
    let server = server.restart().await;
    let mut worker = FakeWorker::connect_as(&server, "w", &worker_id, 1, &[(&knockoff.task_id, 0)]).await;
    worker.send(&knockoff, progress(2)).await;
    worker
        .send(&knockoff, pb::task_event::Kind::Statistics(scop_server::testing::statistics("resnet20", 1)))
        .await;
    worker.finish(&knockoff).await;
    worker.play_job().await;

    while let Some(line) = lines.next_line().await.unwrap() {
        seen.push(serde_json::from_str(&line).unwrap());
    }
    let status = watching.wait().await.unwrap();
    let stderr = {
        use tokio::io::AsyncReadExt;
        let mut text = String::new();
        watching.stderr.take().unwrap().read_to_string(&mut text).await.unwrap();
        text
    };
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains(&format!("connection to {} lost", server.public_url())), "{stderr}");
    assert!(stderr.contains("resuming from event"), "{stderr}");

    let (result, events) = seen.split_last().unwrap();
    assert_eq!(result["job"]["state"], "succeeded");
    let sequences: Vec<u64> = events.iter().map(|e| e["sequence"].as_u64().unwrap()).collect();
    assert_eq!(sequences, (1..=sequences.len() as u64).collect::<Vec<_>>(), "no gap and no duplicate");
    let steps: Vec<u64> = events
        .iter()
        .filter(|e| e["kind"] == "progress" && e["stage"] == "knockoff")
        .map(|e| e["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [1, 2], "the progress from before and after the restart, once each");
    server.stop().await;
}
