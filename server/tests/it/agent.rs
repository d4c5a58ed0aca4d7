//! Real `scop-worker agent` processes against a real coordinator: the agent
//! registers, runs each rank as a child process and relays its events. The
//! trainer is a shell script speaking the `scop-worker rank` contract (JSON
//! event lines on stdout, exit status), so this test needs no libtorch work.

use std::path::PathBuf;
use std::process::{Child, Command};

use scop_proto::v1 as pb;

use scop_server::testing::{SPEC, TestServer, WORKER_TOKEN, statistics, wait_for_state};

/// `scop-worker`, built next to this test binary (`target/<profile>/`);
/// `cargo xtask test` builds the whole workspace first.
pub(crate) fn worker_binary() -> PathBuf {
    built_binary("scop-worker")
}

/// The workspace binary `name` (also its package's name), built next to this test binary.
pub(crate) fn built_binary(name: &str) -> PathBuf {
    let test_exe = std::env::current_exe().unwrap();
    let profile_dir = test_exe.parent().and_then(|deps| deps.parent()).unwrap();
    let bin = profile_dir.join(name);
    assert!(bin.exists(), "{} is missing: build it with `cargo build -p {name}`", bin.display());
    bin
}

/// Kills the agent when the test ends, pass or fail.
pub(crate) struct Agent(pub(crate) Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn an_agent_runs_every_stage_of_a_job_through_child_processes() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let token_file = dir.path().join("agent.token");
    std::fs::write(&token_file, format!("{WORKER_TOKEN}\n")).unwrap();

    // The knockoff trainer streams statistics; every stage reports progress;
    // finetune and export exit 8 unless handed the plan (`--plan`).
    let stats = pb_statistics_line();
    let stats_file = dir.path().join("stats.jsonl");
    std::fs::write(&stats_file, stats).unwrap();
    let trainer = dir.path().join("trainer.sh");
    let script = format!(
        "#!/bin/sh\n# $1=rank $2=--spec $3=FILE $4=--stage $5=STAGE\n\
         test \"$1\" = rank || exit 9\n\
         plan=; prev=; for a in \"$@\"; do [ \"$prev\" = --plan ] && plan=$a; prev=$a; done\n\
         case $5 in finetune|export) grep -q units \"$plan\" || exit 8;; esac\n\
         echo '{{\"type\":\"progress\",\"stage\":\"'$5'\",\"epoch\":1,\"epochs\":1,\"step\":8,\"steps\":8,\"loss\":0.7,\"accuracy\":0.75,\"samples_per_second\":512.0,\"eta_seconds\":42.5,\"lr\":0.1}}'\n\
         if [ \"$5\" = knockoff ]; then cat {}; fi\n\
         echo '{{\"type\":\"evaluated\",\"stage\":\"'$5'\",\"epoch\":1,\"loss\":0.6,\"top1\":0.8,\"top5\":0.99}}'\n",
        stats_file.display()
    );
    std::fs::write(&trainer, script).unwrap();
    Command::new("chmod").arg("+x").arg(&trainer).status().unwrap();

    let _agent = Agent(
        Command::new(worker_binary())
            .args(["agent", "--coordinator", &server.worker.to_string(), "--slots", "1"])
            .arg("--token-file")
            .arg(&token_file)
            .arg("--worker-bin")
            .arg(&trainer)
            .arg("--scratch-dir")
            .arg(dir.path().join("scratch"))
            .spawn()
            .unwrap(),
    );

    let mut jobs = server.jobs().await;
    let request = pb::SubmitJobRequest { spec_yaml: SPEC.into(), ..Default::default() };
    let job = jobs.submit_job(request).await.unwrap().into_inner();
    wait_for_state(&server, &job.id, pb::JobState::Succeeded).await;

    let plan = jobs.get_plan(pb::GetPlanRequest { job_id: job.id.clone() }).await.unwrap().into_inner();
    assert!(plan.units.iter().any(|u| u.channels_after < u.channels_before), "{plan:?}");
    let workers = jobs.list_workers(pb::ListWorkersRequest::default()).await.unwrap().into_inner().workers;
    assert_eq!((workers.len(), workers[0].slots_total), (1, 1));

    // The relayed progress, evaluations and finished stages are in the job's events.
    let mut events = jobs
        .watch_job(pb::WatchJobRequest { job_id: job.id.clone(), from_sequence: 1 })
        .await
        .unwrap()
        .into_inner();
    let (mut progress, mut finished, mut evaluated) = (0, Vec::new(), Vec::new());
    while let Some(event) = events.message().await.unwrap() {
        match event.kind {
            Some(pb::job_event::Kind::Progress(p)) => {
                assert_eq!((p.loss, p.accuracy, p.samples_per_second), (0.7, 0.75, 512.0));
                // The trainer's ETA, carried unchanged by the agent and the coordinator.
                assert_eq!(p.eta_seconds, 42.5);
                progress += 1;
            }
            Some(pb::job_event::Kind::Evaluated(e)) => {
                assert_eq!((e.epoch, e.loss, e.top1, e.top5), (1, 0.6, 0.8, 0.99));
                evaluated.push(e.stage());
            }
            Some(pb::job_event::Kind::StageFinished(f)) if f.stage() == pb::Stage::Decide => {
                assert!(f.metrics["params_after"] < f.metrics["params_before"], "{f:?}");
                finished.push(f.stage());
            }
            Some(pb::job_event::Kind::StageFinished(f)) => {
                assert_eq!(f.metrics.get("top1"), Some(&0.8));
                finished.push(f.stage());
            }
            _ => {}
        }
    }
    assert_eq!(progress, 3);
    assert_eq!(evaluated, [pb::Stage::Knockoff, pb::Stage::Finetune, pb::Stage::Export]);
    assert_eq!(finished, [pb::Stage::Knockoff, pb::Stage::Decide, pb::Stage::Finetune, pb::Stage::Export]);
    server.stop().await;
}

/// The knockoff statistics as the trainer prints them: one `statistics` event
/// line, for the final knockoff epoch of [`SPEC`] (the one `decide` uses).
pub(crate) fn pb_statistics_line() -> String {
    let mut stats = statistics("resnet20", 1);
    stats.epoch = scop_core::spec::JobSpec::from_yaml(SPEC).unwrap().knockoff.epochs;
    let units: Vec<serde_json::Value> = stats
        .units
        .iter()
        .map(|u| serde_json::json!({ "unit": u.unit, "beta": u.beta, "gamma_abs": u.gamma_abs }))
        .collect();
    format!("{}\n", serde_json::json!({ "type": "statistics", "epoch": stats.epoch, "units": units }))
}

/// With TLS on the worker port, an agent given the CA (`--ca-cert`) registers
/// over `https://`; one that trusts only the system's CAs does not.
#[tokio::test]
async fn an_agent_registers_over_tls_with_the_ca_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let tls = scop_server::testing::certificates(dir.path());
    let server = TestServer::start_with(&dir, |config| config.worker_tls = Some(tls)).await;
    let token_file = dir.path().join("agent.token");
    std::fs::write(&token_file, format!("{WORKER_TOKEN}\n")).unwrap();
    let https = format!("https://{}", server.worker);
    let agent = |host: &str, ca: Option<&std::path::Path>| {
        let mut command = Command::new(worker_binary());
        command.args(["agent", "--coordinator", &https, "--slots", "1"]).arg("--token-file").arg(&token_file);
        command.arg("--scratch-dir").arg(dir.path().join(host));
        if let Some(ca) = ca {
            command.arg("--ca-cert").arg(ca);
        }
        Agent(command.spawn().unwrap())
    };
    let _untrusting = agent("untrusting", None);
    let _trusting = agent("trusting", Some(&dir.path().join("ca.pem")));

    let mut jobs = server.jobs().await;
    for _ in 0..300 {
        let listed = jobs.list_workers(pb::ListWorkersRequest::default()).await.unwrap().into_inner();
        if !listed.workers.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Give the untrusting one time to fail its handshake a few times over.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let workers = jobs.list_workers(pb::ListWorkersRequest::default()).await.unwrap().into_inner().workers;
    assert_eq!(workers.len(), 1, "only the agent that trusts the CA registers: {workers:?}");
    assert_eq!(workers[0].state(), pb::WorkerState::Connected);
    server.stop().await;
}
