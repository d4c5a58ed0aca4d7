//! ListArtifacts, DownloadArtifact and GetScoreStatistics after a scripted job
//! ran every stage, and the evaluations it reported in the job's events.

use scop_proto::v1 as pb;
use scop_server::testing::{FakeWorker, SPEC, TestServer, script, wait_for_state};
use tonic::Code;

async fn download(
    jobs: &mut scop_server::testing::Jobs,
    job_id: &str,
    path: &str,
) -> Result<Vec<pb::ArtifactChunk>, tonic::Status> {
    let request = pb::DownloadArtifactRequest { job_id: job_id.into(), path: path.into() };
    let mut stream = jobs.download_artifact(request).await?.into_inner();
    let mut chunks = Vec::new();
    while let Some(chunk) = stream.message().await? {
        chunks.push(chunk);
    }
    Ok(chunks)
}

#[tokio::test]
async fn a_finished_job_lists_serves_and_explains_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let mut jobs = server.jobs().await;
    let job = server.submit(&mut jobs, "", &[]).await;
    let mut worker = FakeWorker::connect(&server, "w", 1, &[]).await;
    worker.play_job().await;
    wait_for_state(&server, &job.id, pb::JobState::Succeeded).await;

    let listed =
        jobs.list_artifacts(pb::ListArtifactsRequest { job_id: job.id.clone() }).await.unwrap().into_inner();
    let job_dir = server.job_dir(&job.id);
    assert_eq!(listed.job_dir, job_dir.display().to_string());
    let rows: Vec<(&str, &str, pb::Stage)> =
        listed.artifacts.iter().map(|a| (a.path.as_str(), a.kind.as_str(), a.stage())).collect();
    assert_eq!(
        rows,
        [
            ("export/arch.json", "arch", pb::Stage::Export),
            ("export/model-card.json", "model_card", pb::Stage::Export),
            ("export/model.pt", "torchscript", pb::Stage::Export),
            ("export/model.safetensors", "safetensors", pb::Stage::Export),
            ("plan.json", "plan", pb::Stage::Decide),
        ]
    );

    // 1.5 MiB arrive as a full 1 MiB chunk and the rest, in order.
    let chunks = download(&mut jobs, &job.id, "export/model.pt").await.unwrap();
    let sizes: Vec<(u64, usize, u64)> =
        chunks.iter().map(|c| (c.offset, c.data.len(), c.total_bytes)).collect();
    assert_eq!(sizes, [(0, 1 << 20, 3 << 19), (1 << 20, 1 << 19, 3 << 19)]);
    let bytes: Vec<u8> = chunks.into_iter().flat_map(|c| c.data).collect();
    assert_eq!(bytes, std::fs::read(job_dir.join("export/model.pt")).unwrap());
    // Files that are not listed can be fetched too; an empty one is one empty chunk.
    std::fs::write(job_dir.join("empty.log"), b"").unwrap();
    let empty = download(&mut jobs, &job.id, "empty.log").await.unwrap();
    assert_eq!(empty, [pb::ArtifactChunk { data: Vec::new(), offset: 0, total_bytes: 0 }]);

    std::fs::write(dir.path().join("secret"), b"no").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret"), job_dir.join("escape")).unwrap();
    for (path, code, message) in [
        (
            "../../client.tokens",
            Code::InvalidArgument,
            "path: must not contain \"..\", got \"../../client.tokens\"",
        ),
        (
            "/etc/passwd",
            Code::InvalidArgument,
            "path: must be relative to the job's directory, got \"/etc/passwd\"",
        ),
        ("escape", Code::InvalidArgument, "path: \"escape\" leads out of the job's directory"),
        ("export/nothing.pt", Code::NotFound, &format!("job {:?} has no file \"export/nothing.pt\"", job.id)),
    ] {
        let status = download(&mut jobs, &job.id, path).await.unwrap_err();
        assert_eq!((status.code(), status.message()), (code, message), "{path}");
    }
    let status = download(&mut jobs, "no-such-job", "plan.json").await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    // Score statistics: the latest epoch by default, or the one asked for.
    let stats = |epoch| pb::GetScoreStatisticsRequest { job_id: job.id.clone(), epoch };
    let latest = jobs.get_score_statistics(stats(0)).await.unwrap().into_inner();
    let last = script::final_knockoff_epoch(SPEC);
    assert_eq!((latest.epoch, latest.units.len()), (last, 18));
    assert_eq!(latest.units[0].unit, "layer1.0.conv1");
    assert_eq!(latest.units[0].beta.len(), latest.units[0].gamma_abs.len());
    assert_eq!(jobs.get_score_statistics(stats(last - 1)).await.unwrap().into_inner().epoch, last - 1);
    let status = jobs.get_score_statistics(stats(last + 1)).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(
        status.message(),
        format!(
            "job {:?} has no score statistics for epoch {}: they are sent during the knockoff stage",
            job.id,
            last + 1
        )
    );

    // The plan's units carry the median score.
    let plan = jobs.get_plan(pb::GetPlanRequest { job_id: job.id.clone() }).await.unwrap().into_inner();
    let score = plan.units[0].score.unwrap();
    assert!(score.min <= score.median.unwrap() && score.median.unwrap() <= score.max, "{score:?}");

    // Every evaluation of rank 0 is an event; the export's finish carries the final figures.
    let mut events = jobs
        .watch_job(pb::WatchJobRequest { job_id: job.id.clone(), from_sequence: 0 })
        .await
        .unwrap()
        .into_inner();
    let (mut evaluations, mut export_metrics) = (Vec::new(), None);
    while let Some(event) = events.message().await.unwrap() {
        match event.kind.unwrap() {
            pb::job_event::Kind::Evaluated(e) => evaluations.push((e.stage(), e.epoch, e.top1)),
            pb::job_event::Kind::StageFinished(f) if f.stage() == pb::Stage::Export => {
                export_metrics = Some(f.metrics)
            }
            _ => {}
        }
    }
    let expected: Vec<(pb::Stage, u32, f64)> = [pb::Stage::Knockoff, pb::Stage::Finetune]
        .into_iter()
        .flat_map(|stage| (0..=script::EPOCHS).map(move |epoch| (stage, epoch, script::top1(stage, epoch))))
        .collect();
    assert_eq!(evaluations, expected);
    let export_metrics = export_metrics.expect("the export stage finished");
    assert_eq!(export_metrics.get("top1_pruned"), Some(&script::TOP1_PRUNED));
    assert_eq!(export_metrics.get("params_dense"), Some(&(script::PARAMS_DENSE as f64)));
    server.stop().await;
}
