//! `resources.backend` through a real agent (the `scop-agent` binary, which asks
//! its `--worker-bin`'s `info` for the GPU count) on a machine that reports
//! GPUs: the trainer is a shell script that says `info` sees two CUDA devices
//! and, as a rank, keeps the rendezvous record the agent handed it. So the
//! agent's own choice (ring port or NCCL unique id) is what is tested, with no
//! GPU and no libtorch work.

use std::path::Path;
use std::process::Command;

use scop_core::rendezvous::{BackendRendezvous, Rendezvous};
use scop_proto::v1 as pb;

use scop_server::testing::{SPEC, TestServer, WORKER_TOKEN, wait_for_state};

use super::agent::{Agent, built_binary, pb_statistics_line};

/// Starts an agent whose trainer reports 2 GPUs and copies each rank's record
/// to `records/<stage>-<rank>.json`.
fn gpu_agent(server: &TestServer, dir: &Path) -> Agent {
    let token_file = dir.join("agent.token");
    std::fs::write(&token_file, format!("{WORKER_TOKEN}\n")).unwrap();
    let stats_file = dir.join("stats.jsonl");
    std::fs::write(&stats_file, pb_statistics_line()).unwrap();
    let records = dir.join("records");
    std::fs::create_dir_all(&records).unwrap();
    let trainer = dir.join("trainer.sh");
    let script = format!(
        "#!/bin/sh\n\
         if [ \"$1\" = info ]; then echo '{{\"cuda_devices\": 2, \"cudnn\": true}}'; exit 0; fi\n\
         test \"$1\" = rank || exit 9\n\
         stage=$5\n\
         while [ $# -gt 0 ]; do case \"$1\" in --rank) rank=$2;; --rendezvous) rdv=$2;; esac; shift; done\n\
         cp \"$rdv\" {records}/$stage-$rank.json || exit 8\n\
         if [ \"$stage\" = knockoff ] && [ \"$rank\" = 0 ]; then cat {stats}; fi\n\
         echo '{{\"type\":\"evaluated\",\"stage\":\"'$stage'\",\"epoch\":1,\"loss\":0.6,\"top1\":0.8,\"top5\":0.99}}'\n",
        records = records.display(),
        stats = stats_file.display(),
    );
    std::fs::write(&trainer, script).unwrap();
    Command::new("chmod").arg("+x").arg(&trainer).status().unwrap();
    Agent(
        Command::new(built_binary("scop-agent"))
            .args(["--coordinator", &server.worker.to_string()])
            .arg("--token-file")
            .arg(&token_file)
            .arg("--worker-bin")
            .arg(&trainer)
            .arg("--scratch-dir")
            .arg(dir.join("scratch"))
            .spawn()
            .unwrap(),
    )
}

fn read_record(dir: &Path, name: &str) -> Rendezvous {
    let path = dir.join("records").join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

async fn submit(server: &TestServer, extra: &str) -> pb::Job {
    let mut jobs = server.jobs().await;
    let request = pb::SubmitJobRequest { spec_yaml: format!("{SPEC}{extra}"), ..Default::default() };
    jobs.submit_job(request).await.unwrap().into_inner()
}

#[tokio::test]
async fn an_agent_on_gpus_meets_over_the_ring_when_the_spec_says_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let _agent = gpu_agent(&server, dir.path());
    let job = submit(&server, "resources: { device: cuda, world_size: 2, backend: tcp }\n").await;
    wait_for_state(&server, &job.id, pb::JobState::Succeeded).await;

    for stage in ["knockoff", "finetune"] {
        let ranks =
            [read_record(dir.path(), &format!("{stage}-0")), read_record(dir.path(), &format!("{stage}-1"))];
        for (rank, record) in ranks.iter().enumerate() {
            let BackendRendezvous::Tcp { peers, listen } = &record.backend else {
                panic!("{stage} rank {rank}: expected the TCP ring, got {record:?}");
            };
            assert_eq!(peers.len(), 2, "{record:?}");
            // The agent reserved this rank's port and listens on it.
            let port = peers[rank].rsplit_once(':').unwrap().1;
            assert_eq!(listen.as_deref(), Some(format!("0.0.0.0:{port}").as_str()), "{record:?}");
        }
    }
    let export = read_record(dir.path(), "export-0");
    assert!(matches!(export.backend, BackendRendezvous::Tcp { .. }) && export.world == 1, "{export:?}");
    server.stop().await;
}

/// `backend: nccl` on one GPU goes through rank 0's agent creating the NCCL
/// unique id. Where libnccl cannot be opened (this CPU machine), the job fails
/// at once with that reason; where it can, the rank gets an NCCL record.
#[tokio::test]
async fn an_agent_creates_the_nccl_id_of_a_one_gpu_group_or_names_why_it_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let _agent = gpu_agent(&server, dir.path());
    let job = submit(&server, "resources: { device: cuda, backend: nccl }\nmax_restarts: 0\n").await;
    let mut jobs = server.jobs().await;
    let mut state = pb::JobState::Queued;
    for _ in 0..1500 {
        let got = jobs.get_job(pb::GetJobRequest { job_id: job.id.clone() }).await.unwrap().into_inner();
        state = got.state();
        if state == pb::JobState::Failed {
            assert!(got.error.contains("creating the NCCL unique id: cannot load libnccl"), "{}", got.error);
            break;
        }
        if state == pb::JobState::Succeeded {
            let record = read_record(dir.path(), "knockoff-0");
            assert!(matches!(record.backend, BackendRendezvous::Nccl { .. }), "{record:?}");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(matches!(state, pb::JobState::Failed | pb::JobState::Succeeded), "job still {state:?}");
    server.stop().await;
}
