//! `GET /metrics` serves a valid Prometheus exposition with the cluster and gRPC series.

use scop_proto::v1 as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use scop_server::testing::TestServer;

/// A plain HTTP/1.1 GET; returns the status line and the body.
pub async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

pub fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

#[tokio::test]
async fn the_exposition_parses_and_counts_jobs_workers_and_calls() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let mut jobs = server.jobs().await;
    let a = server.submit(&mut jobs, "", &[]).await;
    server.submit(&mut jobs, "", &[]).await;
    jobs.cancel_job(pb::CancelJobRequest { job_id: a.id }).await.unwrap();
    let _ = jobs.get_job(pb::GetJobRequest { job_id: "missing".into() }).await.unwrap_err();
    let mut anonymous = server.jobs_with(None).await;
    let _ = anonymous.list_jobs(pb::ListJobsRequest::default()).await.unwrap_err();

    let (status, body) = get(server.metrics, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("a valid exposition");

    assert_eq!(value(&scrape, "scop_jobs", &[("state", "queued")]), Some(1.0));
    assert_eq!(value(&scrape, "scop_jobs", &[("state", "cancelled")]), Some(1.0));
    assert_eq!(value(&scrape, "scop_jobs_submitted_total", &[]), Some(2.0));
    assert_eq!(value(&scrape, "scop_jobs_finished_total", &[("outcome", "cancelled")]), Some(1.0));
    assert_eq!(value(&scrape, "scop_jobs_finished_total", &[("outcome", "succeeded")]), Some(0.0));
    assert_eq!(value(&scrape, "scop_workers", &[("state", "connected")]), Some(0.0));
    assert_eq!(value(&scrape, "scop_devices", &[("state", "free")]), Some(0.0));
    let submit = [("method", "/scop.v1.JobService/SubmitJob"), ("code", "OK")];
    assert_eq!(value(&scrape, "scop_grpc_requests_total", &submit), Some(2.0));
    let missing = [("method", "/scop.v1.JobService/GetJob"), ("code", "NOT_FOUND")];
    assert_eq!(value(&scrape, "scop_grpc_requests_total", &missing), Some(1.0));
    let rejected = [("method", "/scop.v1.JobService/ListJobs"), ("code", "UNAUTHENTICATED")];
    assert_eq!(value(&scrape, "scop_grpc_requests_total", &rejected), Some(1.0));
    let histogram = scrape
        .samples
        .iter()
        .find(|s| s.metric == "scop_grpc_request_duration_seconds" && s.labels.get("code") == Some("OK"))
        .expect("a latency histogram");
    assert!(matches!(histogram.value, prometheus_parse::Value::Histogram(_)), "{:?}", histogram.value);
    assert!(scrape.docs.contains_key("scop_jobs"), "HELP text is served");

    // Scraping again does not advance the totals.
    let (_, body) = get(server.metrics, "/metrics").await;
    let again = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap();
    assert_eq!(value(&again, "scop_jobs_submitted_total", &[]), Some(2.0));
    assert_eq!(get(server.metrics, "/nothing").await.0, "HTTP/1.1 404 Not Found");
    server.stop().await;
}
