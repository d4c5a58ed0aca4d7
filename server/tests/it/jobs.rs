//! Submit, get, list, cancel and the not-found answers of the public API.

use scop_proto::v1 as pb;
use tonic::Code;

use scop_server::testing::{SPEC, TestServer};

#[tokio::test]
async fn submit_is_idempotent_by_request_id_and_get_returns_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let mut jobs = server.jobs().await;
    let job = server.submit(&mut jobs, "req-1", &[("team", "vision")]).await;
    assert_eq!(job.state(), pb::JobState::Queued);
    assert_eq!(job.stage(), pb::Stage::Unspecified);
    assert_eq!((job.request_id.as_str(), job.last_sequence, job.attempt), ("req-1", 1, 0));
    // Stored normalised: every default written out, read back as the same spec.
    let submitted = scop_core::spec::JobSpec::from_yaml(SPEC).unwrap();
    assert_eq!(job.spec_yaml, submitted.normalised_yaml());
    assert!(job.spec_yaml.contains("input_size: 32"), "{}", job.spec_yaml);
    assert_eq!(scop_core::spec::JobSpec::from_yaml(&job.spec_yaml).unwrap(), submitted.normalised());

    let again = server.submit(&mut jobs, "req-1", &[("team", "vision")]).await;
    assert_eq!(again, job);
    let status = jobs
        .submit_job(pb::SubmitJobRequest {
            spec_yaml: SPEC.into(),
            request_id: "req-1".into(),
            priority: 5,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert!(status.message().contains(&job.id), "{}", status.message());

    let got = jobs.get_job(pb::GetJobRequest { job_id: job.id.clone() }).await.unwrap().into_inner();
    assert_eq!(got, job);
    // Listings are summaries unless the full view is asked for.
    let listed = jobs.list_jobs(pb::ListJobsRequest::default()).await.unwrap().into_inner();
    let summary = pb::Job { spec_yaml: String::new(), queued_reason: String::new(), ..job.clone() };
    assert_eq!(listed.jobs, vec![summary]);
    let full = pb::ListJobsRequest { full_view: true, ..Default::default() };
    let listed = jobs.list_jobs(full).await.unwrap().into_inner();
    assert_eq!(listed.jobs, vec![pb::Job { queued_reason: String::new(), ..job }]);
    server.stop().await;
}

#[tokio::test]
async fn unknown_jobs_and_missing_plans_are_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let mut jobs = server.jobs().await;
    let id = || "0190f0c4-0000-7000-8000-000000000000".to_owned();
    let statuses = [
        jobs.get_job(pb::GetJobRequest { job_id: id() }).await.unwrap_err(),
        jobs.cancel_job(pb::CancelJobRequest { job_id: id() }).await.unwrap_err(),
        jobs.watch_job(pb::WatchJobRequest { job_id: id(), from_sequence: 0 }).await.unwrap_err(),
        jobs.get_plan(pb::GetPlanRequest { job_id: id() }).await.unwrap_err(),
    ];
    for status in statuses {
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        assert_eq!(status.message(), format!("job {:?} not found", id()));
    }
    let status = jobs.get_job(pb::GetJobRequest { job_id: String::new() }).await.unwrap_err();
    assert_eq!((status.code(), status.message()), (Code::InvalidArgument, "job_id: must not be empty"));

    let job = server.submit(&mut jobs, "", &[]).await;
    let status = jobs.get_plan(pb::GetPlanRequest { job_id: job.id.clone() }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(
        status.message(),
        format!(
            "job {:?} has no plan yet: the plan is decided after the knockoff stage (the job is queued)",
            job.id
        )
    );
    let workers = jobs.list_workers(pb::ListWorkersRequest::default()).await.unwrap().into_inner();
    assert!(workers.workers.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn list_filters_by_state_and_labels_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let mut jobs = server.jobs().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let team = if i < 3 { "vision" } else { "speech" };
        ids.push(server.submit(&mut jobs, "", &[("team", team)]).await.id);
    }
    let cancelled =
        jobs.cancel_job(pb::CancelJobRequest { job_id: ids[1].clone() }).await.unwrap().into_inner();
    assert_eq!(cancelled.state(), pb::JobState::Cancelled);
    assert_eq!(cancelled.error, "cancelled by a client");

    // Page through everything, two at a time, newest first.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = jobs
            .list_jobs(pb::ListJobsRequest { page_size: 2, page_token: token.clone(), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        assert!(page.jobs.len() <= 2);
        seen.extend(page.jobs.into_iter().map(|j| j.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ids.iter().rev().cloned().collect::<Vec<_>>());

    let filtered = jobs
        .list_jobs(pb::ListJobsRequest {
            state: pb::JobState::Queued as i32,
            labels: [("team".to_owned(), "vision".to_owned())].into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(filtered.jobs.iter().map(|j| &j.id).collect::<Vec<_>>(), vec![&ids[2], &ids[0]]);
    let only_cancelled = jobs
        .list_jobs(pb::ListJobsRequest { state: pb::JobState::Cancelled as i32, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(only_cancelled.jobs.len(), 1);

    let status = jobs
        .list_jobs(pb::ListJobsRequest { page_token: "garbage".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("page_token:"), "{}", status.message());
    server.stop().await;
}

#[tokio::test]
async fn oversized_requests_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(&dir, |config| config.max_message_bytes = 64 * 1024).await;
    let mut jobs = server.jobs().await;
    let huge = format!("{SPEC}# {}\n", "x".repeat(100 * 1024));
    let status =
        jobs.submit_job(pb::SubmitJobRequest { spec_yaml: huge, ..Default::default() }).await.unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("the limit is: 65536 bytes"), "{}", status.message());
    assert!(jobs.list_jobs(pb::ListJobsRequest::default()).await.unwrap().into_inner().jobs.is_empty());
    server.stop().await;
}
