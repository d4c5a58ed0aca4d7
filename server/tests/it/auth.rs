//! Both gRPC ports reject calls without the right token, each with its own token.

use scop_proto::v1 as pb;
use tonic::Code;

use scop_server::testing::{CLIENT_TOKEN, TestServer, WORKER_TOKEN, bearer};

#[tokio::test]
async fn the_public_api_wants_a_client_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    for (token, message) in [
        (None, "missing authorization"),
        (Some("not-the-token"), "invalid token"),
        (Some(WORKER_TOKEN), "invalid token"),
    ] {
        let mut jobs = server.jobs_with(token).await;
        let status = jobs.list_jobs(pb::ListJobsRequest::default()).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{token:?}");
        assert!(status.message().contains(message), "{token:?}: {}", status.message());
    }
    let mut jobs = server.jobs_with(Some(CLIENT_TOKEN)).await;
    assert!(jobs.list_jobs(pb::ListJobsRequest::default()).await.unwrap().into_inner().jobs.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn the_worker_api_wants_a_worker_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let mut workers = pb::worker_service_client::WorkerServiceClient::with_interceptor(
        TestServer::channel(server.worker).await,
        bearer(Some(CLIENT_TOKEN)),
    );
    let status = workers.connect(tokio_stream::iter(Vec::<pb::WorkerMessage>::new())).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    server.stop().await;
}

#[tokio::test]
async fn insecure_mode_lets_calls_through_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(&dir, |config| {
        config.insecure_no_auth = true;
        config.token_file = None;
    })
    .await;
    let mut jobs = server.jobs_with(None).await;
    assert!(jobs.list_jobs(pb::ListJobsRequest::default()).await.is_ok());
    server.stop().await;
}
