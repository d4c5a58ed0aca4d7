//! `Client`: one connection to a coordinator's public API, with typed calls
//! that time out and map every failure to the library's [`Error`].

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use scop_connect::{Bearer, ClientIdentity, ConnectError};
use scop_proto::v1 as pb;
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::error::{Error, Result};
use crate::settings::Settings;

/// How long a unary call, or the wait for one chunk of a stream, may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// At most this many pages of `ListJobs` (of 1000 jobs each) are read.
const MAX_PAGES: usize = 100;

/// What the coordinator's standard health service said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerStatus {
    Serving,
    NotServing,
}

type Jobs = pb::job_service_client::JobServiceClient<scop_connect::Authenticated>;

/// A connected client of the public `JobService`.
#[derive(Debug, Clone)]
pub struct Client {
    settings: Settings,
    jobs: Jobs,
    health: HealthClient<Channel>,
}

impl Client {
    /// Connects to `settings.server`, over TLS for `https://` or with a CA,
    /// presenting the client certificate when one is set.
    pub async fn connect(settings: &Settings) -> Result<Client> {
        let server = settings.server.clone();
        let ca_pem = match &settings.ca_cert {
            Some(ca) => Some(std::fs::read(ca).map_err(Error::io(ca.display()))?),
            None => None,
        };
        let identity = match &settings.client_identity {
            Some((cert, key)) => Some(ClientIdentity {
                cert_pem: std::fs::read(cert).map_err(Error::io(cert.display()))?,
                key_pem: std::fs::read(key).map_err(Error::io(key.display()))?,
            }),
            None => None,
        };
        let endpoint = scop_connect::endpoint_with_identity(&server, ca_pem.as_deref(), identity.as_ref())
            .map_err(|e| match e {
                ConnectError::Address(reason) => {
                    Error::Config(format!("server {server:?} is not a URL: {reason}"))
                }
                ConnectError::Tls(reason) => Error::Config(format!("TLS for {server}: {reason}")),
                ConnectError::Token => Error::Config(e.to_string()),
            })?;
        let bearer = Bearer::new(settings.token.as_deref()).map_err(|e| Error::Config(e.to_string()))?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| Error::Unreachable { server: server.clone(), reason: error_chain(&e) })?;
        Ok(Client {
            settings: settings.clone(),
            jobs: pb::job_service_client::JobServiceClient::with_interceptor(channel.clone(), bearer)
                .max_decoding_message_size(64 << 20),
            health: HealthClient::new(channel),
        })
    }

    /// The settings it connected with (to connect again after a drop).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn server(&self) -> &str {
        &self.settings.server
    }

    /// Runs one call with [`CALL_TIMEOUT`] and maps its status.
    async fn call<T>(
        &self,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T> {
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(Error::from_status(self.server(), status)),
            Err(_) => Err(Error::Unreachable {
                server: self.server().to_owned(),
                reason: format!("no answer within {} s", CALL_TIMEOUT.as_secs()),
            }),
        }
    }

    /// Asks the standard `grpc.health.v1` service for the overall status.
    pub async fn health(&self) -> Result<ServerStatus> {
        let mut health = self.health.clone();
        let response = self.call(health.check(HealthCheckRequest { service: String::new() })).await?;
        Ok(match response.status() {
            ServingStatus::Serving => ServerStatus::Serving,
            _ => ServerStatus::NotServing,
        })
    }

    pub async fn submit(&self, request: pb::SubmitJobRequest) -> Result<pb::Job> {
        let mut jobs = self.jobs.clone();
        self.call(jobs.submit_job(request)).await
    }

    pub async fn get_job(&self, job_id: &str) -> Result<pb::Job> {
        let mut jobs = self.jobs.clone();
        self.call(jobs.get_job(pb::GetJobRequest { job_id: job_id.to_owned() })).await
    }

    /// Every job in `state` (any state for `Unspecified`), newest first, as
    /// summaries (no spec); only `owner`'s when given.
    pub async fn list_jobs(&self, state: pb::JobState, owner: Option<&str>) -> Result<Vec<pb::Job>> {
        let filter = pb::ListJobsRequest {
            state: state as i32,
            owner: owner.unwrap_or_default().to_owned(),
            ..Default::default()
        };
        self.every_page(filter).await
    }

    /// The branch jobs of sweep `sweep_id` (one per candidate it forked),
    /// with their specs, in the order they were forked (the candidates').
    pub async fn branches(&self, sweep_id: &str) -> Result<Vec<pb::Job>> {
        let filter =
            pb::ListJobsRequest { full_view: true, parent_id: sweep_id.to_owned(), ..Default::default() };
        let mut all = self.every_page(filter).await?;
        // Listed newest first.
        all.reverse();
        Ok(all)
    }

    /// Every page of ListJobs with `filter`'s filters, newest first.
    async fn every_page(&self, filter: pb::ListJobsRequest) -> Result<Vec<pb::Job>> {
        let mut all = Vec::new();
        let mut page_token = String::new();
        for _ in 0..MAX_PAGES {
            let mut jobs = self.jobs.clone();
            let request = pb::ListJobsRequest { page_size: 1000, page_token, ..filter.clone() };
            let page = self.call(jobs.list_jobs(request)).await?;
            all.extend(page.jobs);
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        Ok(all)
    }

    /// Who the coordinator takes this client for.
    pub async fn whoami(&self) -> Result<pb::WhoAmIResponse> {
        let mut jobs = self.jobs.clone();
        self.call(jobs.who_am_i(pb::WhoAmIRequest {})).await
    }

    pub async fn cancel(&self, job_id: &str) -> Result<pb::Job> {
        let mut jobs = self.jobs.clone();
        self.call(jobs.cancel_job(pb::CancelJobRequest { job_id: job_id.to_owned() })).await
    }

    /// The job's events from `from_sequence` on, following new ones.
    pub async fn watch(&self, job_id: &str, from_sequence: u64) -> Result<tonic::Streaming<pb::JobEvent>> {
        let mut jobs = self.jobs.clone();
        self.call(jobs.watch_job(pb::WatchJobRequest { job_id: job_id.to_owned(), from_sequence })).await
    }

    /// Every event the job has so far, without waiting for new ones.
    pub async fn events(&self, job_id: &str) -> Result<(pb::Job, Vec<pb::JobEvent>)> {
        let job = self.get_job(job_id).await?;
        let mut events = Vec::new();
        let mut stream = self.watch(job_id, 1).await?;
        while events.last().is_none_or(|e: &pb::JobEvent| e.sequence < job.last_sequence) {
            match self.call(async { stream.message().await.map(tonic::Response::new) }).await? {
                Some(event) => events.push(event),
                None => break,
            }
        }
        Ok((job, events))
    }

    pub async fn plan(&self, job_id: &str) -> Result<pb::Plan> {
        let mut jobs = self.jobs.clone();
        self.call(jobs.get_plan(pb::GetPlanRequest { job_id: job_id.to_owned() })).await
    }

    pub async fn workers(&self, include_lost: bool) -> Result<Vec<pb::Worker>> {
        let mut jobs = self.jobs.clone();
        Ok(self.call(jobs.list_workers(pb::ListWorkersRequest { include_lost })).await?.workers)
    }

    /// The id of the worker `name` names: its id, or a hostname of exactly one
    /// worker (lost ones included). Anything else is passed on as an id, for
    /// the coordinator to answer NOT_FOUND.
    pub async fn worker_id(&self, name: &str) -> Result<String> {
        let workers = self.workers(true).await?;
        if workers.iter().any(|w| w.id == name) {
            return Ok(name.to_owned());
        }
        let on_host: Vec<&pb::Worker> = workers.iter().filter(|w| w.hostname == name).collect();
        match on_host.as_slice() {
            [] => Ok(name.to_owned()),
            [one] => Ok(one.id.clone()),
            many => Err(Error::InvalidArgument(format!(
                "hostname {name:?} names {} workers ({}): give the id",
                many.len(),
                many.iter().map(|w| w.id.as_str()).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// Drains (`true`) or undrains a worker by id (admin only).
    pub async fn set_drained(&self, worker_id: &str, drain: bool) -> Result<pb::Worker> {
        let mut jobs = self.jobs.clone();
        let worker_id = worker_id.to_owned();
        if drain {
            self.call(jobs.drain_worker(pb::DrainWorkerRequest { worker_id })).await
        } else {
            self.call(jobs.undrain_worker(pb::UndrainWorkerRequest { worker_id })).await
        }
    }

    pub async fn artifacts(&self, job_id: &str) -> Result<pb::ListArtifactsResponse> {
        let mut jobs = self.jobs.clone();
        self.call(jobs.list_artifacts(pb::ListArtifactsRequest { job_id: job_id.to_owned() })).await
    }

    /// The β and |γ| vectors of one knockoff epoch (0: the latest).
    pub async fn score_statistics(&self, job_id: &str, epoch: u32) -> Result<pb::ScoreStatisticsResponse> {
        let mut jobs = self.jobs.clone();
        let request = pb::GetScoreStatisticsRequest { job_id: job_id.to_owned(), epoch };
        self.call(jobs.get_score_statistics(request)).await
    }

    /// One (small) file of the job, read into memory.
    pub async fn read_artifact(&self, job_id: &str, path: &str) -> Result<Vec<u8>> {
        let mut jobs = self.jobs.clone();
        let request = pb::DownloadArtifactRequest { job_id: job_id.to_owned(), path: path.to_owned() };
        let mut stream = self.call(jobs.download_artifact(request)).await?;
        let mut bytes = Vec::new();
        while let Some(chunk) = self.call(async { stream.message().await.map(tonic::Response::new) }).await? {
            bytes.extend_from_slice(&chunk.data);
        }
        Ok(bytes)
    }

    /// Downloads one file of the job into `dest` (written to `dest.part`
    /// first, renamed when complete); returns its size.
    pub async fn download(&self, job_id: &str, path: &str, dest: &Path) -> Result<u64> {
        use tokio::io::AsyncWriteExt;
        let mut jobs = self.jobs.clone();
        let request = pb::DownloadArtifactRequest { job_id: job_id.to_owned(), path: path.to_owned() };
        let mut stream = self.call(jobs.download_artifact(request)).await?;
        if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await.map_err(Error::io(dir.display()))?;
        }
        let partial = dest.with_file_name(format!(
            "{}.part",
            dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
        ));
        let mut file = tokio::fs::File::create(&partial).await.map_err(Error::io(partial.display()))?;
        let mut written = 0u64;
        let mut total = None;
        while let Some(chunk) = self.call(async { stream.message().await.map(tonic::Response::new) }).await? {
            if chunk.offset != written {
                return Err(Error::InvalidArgument(format!(
                    "{path}: the server sent bytes from offset {}, expected {written}",
                    chunk.offset
                )));
            }
            total = Some(chunk.total_bytes);
            file.write_all(&chunk.data).await.map_err(Error::io(partial.display()))?;
            written += chunk.data.len() as u64;
        }
        file.flush().await.map_err(Error::io(partial.display()))?;
        if total.is_some_and(|t| t != written) {
            return Err(Error::InvalidArgument(format!(
                "{path}: the download ended after {written} of {} bytes",
                total.unwrap_or_default()
            )));
        }
        tokio::fs::rename(&partial, dest).await.map_err(Error::io(dest.display()))?;
        Ok(written)
    }
}

/// An error and its sources, "outer: inner: innermost".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text = format!("{text}: {inner_text}");
        }
        source = inner.source();
    }
    text
}
