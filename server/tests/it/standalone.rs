//! The real `scopd standalone` binary with two real `scop-worker agent`
//! processes runs a tiny SCOP job on Fashion-MNIST end to end: submitted over
//! gRPC, every stage scheduled onto the agents' trainer ranks (a two-rank TCP
//! ring, met through the coordinator's rendezvous relay), the plan decided by
//! the coordinator, the export written, the metrics scrapeable; SIGTERM then
//! stops everything cleanly.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use scop_connect::client_config::ClientConfig;
use scop_proto::v1 as pb;

use crate::metrics::{get, value};
use scop_server::testing::{Jobs, bearer};

/// Stops scopd at the end of the test, pass or fail.
struct Scopd(Child);

impl Drop for Scopd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The dataset, as an absolute path without `..` (spec paths may not contain it).
fn data_root() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/fashion-mnist");
    std::fs::canonicalize(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Two ranks of 4 steps each per epoch; every stage runs.
fn tiny_spec() -> String {
    format!(
        "name: standalone-tiny
model: {{ arch: resnet20, num_classes: 10, in_channels: 1, input_size: 32 }}
data: {{ format: idx, root: {}, train_subset: 256, test_subset: 128, augment: false, loader_workers: 1 }}
pretrain: {{ epochs: 1, batch_size: 32, lr: 0.05, schedule: constant }}
knockoff: {{ epochs: 1, batch_size: 32 }}
prune: {{ rate: 0.45 }}
finetune: {{ epochs: 1, batch_size: 32, lr: 0.02, schedule: constant, bn_recalibration_batches: 2 }}
resources: {{ device: cpu, world_size: 2 }}
output: {{ log_every_steps: 2 }}
max_restarts: 0
",
        data_root().display()
    )
}

/// Starts `scopd standalone` on free loopback ports; returns it with the
/// addresses it printed.
fn start(dir: &Path) -> (Scopd, String, std::net::SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_scopd"))
        .args(["standalone", "--workers", "2", "--cpu"])
        .args([
            "--public-addr",
            "127.0.0.1:0",
            "--worker-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.join("data"))
        // The dataset lives outside the test's directory: allow it (and only it) by name.
        .arg("--data-root")
        .arg(data_root())
        .arg("--client-config")
        .arg(dir.join("scopctl.yaml"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (mut public, mut metrics) = (None, None);
    for line in stdout.lines() {
        let line = line.unwrap();
        let address = |prefix: &str| line.trim().strip_prefix(prefix).map(|rest| rest.trim().to_owned());
        if let Some(url) = address("public API") {
            public = Some(url);
        }
        if let Some(url) = address("metrics") {
            let host = url.trim_start_matches("http://").trim_end_matches("/metrics");
            metrics = Some(host.parse().unwrap());
        }
        if line.trim().starts_with("agent logs") {
            break;
        }
    }
    (Scopd(child), public.expect("the public address was printed"), metrics.expect("metrics address"))
}

async fn client(config: &ClientConfig) -> Jobs {
    let server = config.server.clone().unwrap();
    let token = scop_connect::read_token(config.token_file.as_ref().unwrap()).unwrap();
    let channel = scop_connect::endpoint(&server, None).unwrap().connect().await.unwrap();
    pb::job_service_client::JobServiceClient::with_interceptor(channel, bearer(Some(&token)))
}

#[tokio::test]
async fn standalone_runs_a_two_rank_job_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let (mut scopd, public, metrics) = start(dir.path());
    let config = ClientConfig::read(&dir.path().join("scopctl.yaml")).unwrap();
    assert_eq!(config.server.as_deref(), Some(public.as_str()));
    let mut jobs = client(&config).await;

    // Both agents register with one CPU slot each.
    let mut workers = Vec::new();
    for _ in 0..600 {
        workers = jobs.list_workers(pb::ListWorkersRequest::default()).await.unwrap().into_inner().workers;
        if workers.len() == 2 && workers.iter().all(|w| w.state() == pb::WorkerState::Connected) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(workers.iter().map(|w| w.slots_total).collect::<Vec<_>>(), [1, 1], "{workers:?}");

    let request = pb::SubmitJobRequest { spec_yaml: tiny_spec(), ..Default::default() };
    let job = jobs.submit_job(request).await.unwrap().into_inner();
    let mut events = jobs
        .watch_job(pb::WatchJobRequest { job_id: job.id.clone(), from_sequence: 1 })
        .await
        .unwrap()
        .into_inner();
    let (mut finished, mut progress, mut last) = (Vec::new(), 0, None);
    while let Some(event) = tokio::time::timeout(Duration::from_secs(300), events.message())
        .await
        .expect("the job made no progress for 300 s")
        .unwrap()
    {
        match &event.kind {
            Some(pb::job_event::Kind::StageFinished(f)) => finished.push(f.stage()),
            Some(pb::job_event::Kind::Progress(p)) => {
                assert!(p.loss.is_finite() && p.samples_per_second > 0.0, "{p:?}");
                progress += 1;
            }
            _ => {}
        }
        last = Some(event);
    }
    let job = jobs.get_job(pb::GetJobRequest { job_id: job.id.clone() }).await.unwrap().into_inner();
    assert_eq!(job.state(), pb::JobState::Succeeded, "{job:?} last event {last:?}");
    assert_eq!(
        finished,
        [pb::Stage::Pretrain, pb::Stage::Knockoff, pb::Stage::Decide, pb::Stage::Finetune, pb::Stage::Export]
    );
    assert!(progress >= 3, "only {progress} progress events");

    // The coordinator decided the plan, and the export is in the artifact store.
    let plan = jobs.get_plan(pb::GetPlanRequest { job_id: job.id.clone() }).await.unwrap().into_inner();
    let kept: u64 = plan.units.iter().map(|u| u64::from(u.channels_after)).sum();
    let all: u64 = plan.units.iter().map(|u| u64::from(u.channels_before)).sum();
    assert!(kept < all, "{plan:?}");
    let export = dir.path().join("data/artifacts/jobs").join(&job.id).join("export");
    for file in ["model.pt", "model.safetensors", "arch.json", "model-card.json"] {
        assert!(export.join(file).is_file(), "{} is missing", export.join(file).display());
    }

    let (status, body) = get(metrics, "/metrics").await;
    assert!(status.ends_with("200 OK"), "{status}");
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap();
    assert_eq!(value(&scrape, "scop_jobs", &[("state", "succeeded")]), Some(1.0));
    assert_eq!(value(&scrape, "scop_workers", &[("state", "connected")]), Some(2.0));

    // SIGTERM: the coordinator drains, the agents stop, scopd exits cleanly.
    let pid = nix::unistd::Pid::from_raw(scopd.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let mut status = None;
    for _ in 0..300 {
        status = scopd.0.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(status.expect("scopd did not exit within 30 s of SIGTERM").success());
}
