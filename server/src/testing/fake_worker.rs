//! A scripted worker agent speaking the real WorkerService protocol over a real
//! socket: the test decides what each of its ranks reports.

use std::time::Duration;

use scop_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::TestServer;

/// One connected scripted worker.
pub struct FakeWorker {
    /// The id Welcome gave it.
    pub id: String,
    outbox: mpsc::Sender<pb::WorkerMessage>,
    replies: tonic::Streaming<pb::CoordinatorMessage>,
}

impl FakeWorker {
    /// Connects with `slots` CPU devices, reporting `running` task ids as alive.
    pub async fn connect(server: &TestServer, host: &str, slots: u32, running: &[(&str, u32)]) -> FakeWorker {
        Self::connect_as(server, host, "", slots, running).await
    }

    /// Connects with `gpus` CUDA devices.
    pub async fn connect_gpus(server: &TestServer, host: &str, gpus: u32) -> FakeWorker {
        Self::connect_with(server, host, "", "cuda", gpus, &[]).await
    }

    /// As [`FakeWorker::connect`], saying Hello with the id an earlier Welcome gave.
    pub async fn connect_as(
        server: &TestServer,
        host: &str,
        worker_id: &str,
        slots: u32,
        running: &[(&str, u32)],
    ) -> FakeWorker {
        Self::connect_with(server, host, worker_id, "cpu", slots, running).await
    }

    async fn connect_with(
        server: &TestServer,
        host: &str,
        worker_id: &str,
        kind: &str,
        slots: u32,
        running: &[(&str, u32)],
    ) -> FakeWorker {
        let mut client = server.workers().await;
        let (outbox, inbox) = mpsc::channel(64);
        let devices = (0..slots)
            .map(|index| pb::Device { kind: kind.into(), index, name: kind.into(), memory_bytes: 0 })
            .collect();
        let running = running
            .iter()
            .map(|(task_id, rank)| pb::RunningRank { task_id: (*task_id).into(), rank: *rank })
            .collect();
        let hello = pb::Hello {
            hostname: host.into(),
            agent_version: "test".into(),
            devices,
            cpu_cores: slots,
            worker_id: worker_id.into(),
            running,
        };
        outbox.send(pb::WorkerMessage { kind: Some(pb::worker_message::Kind::Hello(hello)) }).await.unwrap();
        let mut replies = client.connect(ReceiverStream::new(inbox)).await.unwrap().into_inner();
        let id = match replies.message().await.unwrap().unwrap().kind {
            Some(pb::coordinator_message::Kind::Welcome(welcome)) => welcome.worker_id,
            other => panic!("expected Welcome, got {other:?}"),
        };
        // Heartbeats every 50 ms for as long as the worker is not dropped.
        let weak = outbox.downgrade();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let Some(outbox) = weak.upgrade() else { return };
                let beat = pb::Heartbeat::default();
                let message = pb::WorkerMessage { kind: Some(pb::worker_message::Kind::Heartbeat(beat)) };
                if outbox.send(message).await.is_err() {
                    return;
                }
            }
        });
        FakeWorker { id, outbox, replies }
    }

    /// The next coordinator message, within 10 s.
    pub async fn next(&mut self) -> pb::coordinator_message::Kind {
        let message = tokio::time::timeout(Duration::from_secs(10), self.replies.message())
            .await
            .expect("no coordinator message within 10 s")
            .unwrap()
            .expect("stream ended");
        message.kind.unwrap()
    }

    /// How the coordinator ended this worker's stream (within 10 s), skipping
    /// any messages before the end.
    pub async fn ended_with(&mut self) -> tonic::Status {
        loop {
            let next = tokio::time::timeout(Duration::from_secs(10), self.replies.message())
                .await
                .expect("the stream did not end within 10 s");
            match next {
                Ok(Some(_)) => {}
                Ok(None) => panic!("the stream ended without a status"),
                Err(status) => return status,
            }
        }
    }

    /// The next message, which must be an assignment.
    pub async fn assigned(&mut self) -> pb::AssignTask {
        match self.next().await {
            pb::coordinator_message::Kind::Assign(task) => task,
            other => panic!("expected AssignTask, got {other:?}"),
        }
    }

    /// No message arrives within `wait` (the scheduler ticks every 200 ms).
    pub async fn assert_idle(&mut self, wait: Duration) {
        if let Ok(message) = tokio::time::timeout(wait, self.replies.message()).await {
            panic!("expected no message, got {message:?}");
        }
    }

    /// Sends an event numbered `sequence`, as agents that keep an outbox do.
    pub async fn send_numbered(&self, task: &pb::AssignTask, sequence: u64, kind: pb::task_event::Kind) {
        let event = pb::TaskEvent {
            task_id: task.task_id.clone(),
            rank: task.rank,
            sequence,
            kind: Some(kind),
            ..Default::default()
        };
        self.outbox
            .send(pb::WorkerMessage { kind: Some(pb::worker_message::Kind::TaskEvent(event)) })
            .await
            .unwrap();
    }

    pub async fn send(&self, task: &pb::AssignTask, kind: pb::task_event::Kind) {
        let event = pb::TaskEvent {
            task_id: task.task_id.clone(),
            rank: task.rank,
            sequence: 0,
            kind: Some(kind),
            ..Default::default()
        };
        self.outbox
            .send(pb::WorkerMessage { kind: Some(pb::worker_message::Kind::TaskEvent(event)) })
            .await
            .unwrap();
    }

    /// Sends a heartbeat listing `running` as the complete set of tasks it runs
    /// (its background heartbeats list none and do not claim to be complete).
    pub async fn beat(&self, running: &[&str]) {
        let beat = pb::Heartbeat {
            time_ms: 0,
            running_task_ids: running.iter().map(|t| (*t).to_owned()).collect(),
            running_complete: true,
        };
        self.outbox
            .send(pb::WorkerMessage { kind: Some(pb::worker_message::Kind::Heartbeat(beat)) })
            .await
            .unwrap();
    }

    pub async fn finish(&self, task: &pb::AssignTask) {
        self.send(task, pb::task_event::Kind::Finished(pb::TaskFinished::default())).await;
    }
}

/// [`statistics`] of resnet20 for the final knockoff epoch of `spec_yaml`
/// (its `knockoff.epochs`), the only ones `decide` takes.
pub fn final_statistics(spec_yaml: &str) -> pb::ScoreStatistics {
    let mut stats = statistics("resnet20", 1);
    stats.epoch = super::script::final_knockoff_epoch(spec_yaml);
    stats
}

/// Score statistics for every unit of the dense network: channel `c` of `n`
/// gets β = c/n, so the plan keeps the high channels.
pub fn statistics(arch: &str, in_channels: u32) -> pb::ScoreStatistics {
    let desc = scop_core::arch::ArchDesc::new(arch, 10, in_channels).unwrap();
    let units = desc
        .blocks
        .iter()
        .flat_map(|b| &b.units)
        .map(|u| {
            let n = u.out_channels as usize;
            pb::UnitStatistics {
                unit: u.name.clone(),
                beta: (0..n).map(|c| c as f32 / n as f32).collect(),
                gamma_abs: vec![1.0; n],
                score: Vec::new(),
            }
        })
        .collect();
    pb::ScoreStatistics { epoch: 1, units }
}

/// Polls GetJob until the job is in `state`.
pub async fn wait_for_state(server: &TestServer, job_id: &str, state: pb::JobState) -> pb::Job {
    let mut jobs = server.jobs().await;
    let mut job = pb::Job::default();
    for _ in 0..500 {
        job = jobs.get_job(pb::GetJobRequest { job_id: job_id.into() }).await.unwrap().into_inner();
        if job.state() == state {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("job {job_id} never reached {state:?}: {job:?}");
}
