//! The public `JobService`: validate → (authorised by the interceptor) → store → convert.

use scop_core::spec::JobSpec;
use scop_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{artifact_files, convert, validation};
use crate::domain::{NewJob, StagePlan};
use crate::error::Error;
use crate::scheduler::{ArtifactStore, LocalArtifacts, Wake};
use crate::shutdown::Shutdown;
use crate::store::{JobFilter, Store};

/// Events buffered per `WatchJob` stream before the follower waits for the client.
const WATCH_BUFFER: usize = 64;
/// Chunks buffered per `DownloadArtifact` stream.
const DOWNLOAD_BUFFER: usize = 4;

/// The handler of the public API.
#[derive(Debug, Clone)]
pub struct JobApi {
    store: Store,
    artifacts: LocalArtifacts,
    shutdown: Shutdown,
    /// Told about new and cancelled jobs.
    scheduler: Wake,
}

impl JobApi {
    pub fn new(store: Store, artifacts: LocalArtifacts, shutdown: Shutdown, scheduler: Wake) -> Self {
        Self { store, artifacts, shutdown, scheduler }
    }
}

#[tonic::async_trait]
impl pb::job_service_server::JobService for JobApi {
    #[tracing::instrument(skip_all, fields(request_id = %request.get_ref().request_id))]
    async fn submit_job(&self, request: Request<pb::SubmitJobRequest>) -> Result<Response<pb::Job>, Status> {
        let request = request.into_inner();
        if request.spec_yaml.trim().is_empty() {
            return Err(Error::InvalidArgument {
                field: "spec_yaml".into(),
                message: "must not be empty".into(),
            }
            .into());
        }
        let spec = JobSpec::from_yaml(&request.spec_yaml).map_err(Error::InvalidSpec)?;
        let new = NewJob {
            stages: StagePlan::for_spec(&spec),
            spec_yaml: request.spec_yaml,
            labels: validation::labels("labels", request.labels)?,
            priority: request.priority,
            request_id: validation::request_id(request.request_id)?,
        };
        let (job, created) = self.store.submit_job(new).await?;
        if created {
            tracing::info!(job_id = %job.id, "job submitted");
            self.scheduler.wake();
        }
        Ok(Response::new(convert::job(job)))
    }

    async fn get_job(&self, request: Request<pb::GetJobRequest>) -> Result<Response<pb::Job>, Status> {
        let job_id = validation::id("job_id", &request.get_ref().job_id)?;
        Ok(Response::new(convert::job(self.store.get_job(job_id).await?)))
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let request = request.into_inner();
        let state = pb::JobState::try_from(request.state).map_err(|_| Error::InvalidArgument {
            field: "state".into(),
            message: format!("unknown job state {}", request.state),
        })?;
        let filter = JobFilter {
            state: convert::state_filter(state),
            labels: validation::labels("labels", request.labels)?,
        };
        let after = validation::page_token(&request.page_token)?;
        let page = self.store.list_jobs(filter, validation::page_size(request.page_size), after).await?;
        Ok(Response::new(pb::ListJobsResponse {
            jobs: page.jobs.into_iter().map(convert::job).collect(),
            next_page_token: page.next.map(|n| n.to_string()).unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all, fields(job_id = %request.get_ref().job_id))]
    async fn cancel_job(&self, request: Request<pb::CancelJobRequest>) -> Result<Response<pb::Job>, Status> {
        let job_id = validation::id("job_id", &request.get_ref().job_id)?;
        let job = self.store.cancel_job(job_id, "cancelled by a client".into()).await?;
        tracing::info!(state = %job.state, "cancel requested");
        // The scheduler stops the job's ranks and gives their slots to others.
        self.scheduler.wake();
        Ok(Response::new(convert::job(job)))
    }

    type WatchJobStream = ReceiverStream<Result<pb::JobEvent, Status>>;

    async fn watch_job(
        &self,
        request: Request<pb::WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let request = request.into_inner();
        let job_id = validation::id("job_id", &request.job_id)?.to_owned();
        // Fail fast on an unknown job, before the stream starts.
        self.store.get_job(&job_id).await?;
        let (sender, receiver) = mpsc::channel(WATCH_BUFFER);
        tokio::spawn(follow(
            self.store.clone(),
            job_id,
            request.from_sequence.max(1),
            sender,
            self.shutdown.clone(),
        ));
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    async fn get_plan(&self, request: Request<pb::GetPlanRequest>) -> Result<Response<pb::Plan>, Status> {
        let job_id = validation::id("job_id", &request.get_ref().job_id)?;
        Ok(Response::new(convert::plan(self.store.get_plan(job_id).await?)))
    }

    async fn list_workers(
        &self,
        request: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        let workers = self.store.list_workers(request.get_ref().include_lost).await?;
        Ok(Response::new(pb::ListWorkersResponse {
            workers: workers.into_iter().map(convert::worker).collect(),
        }))
    }

    async fn list_artifacts(
        &self,
        request: Request<pb::ListArtifactsRequest>,
    ) -> Result<Response<pb::ListArtifactsResponse>, Status> {
        let job_id = validation::id("job_id", &request.get_ref().job_id)?;
        let recorded = self.store.list_artifacts(job_id).await?;
        let job_dir = self.artifacts.job_dir(job_id);
        let listed = artifact_files::listing(recorded, job_id, &job_dir);
        Ok(Response::new(pb::ListArtifactsResponse {
            artifacts: listed.into_iter().map(|(stage, a)| convert::listed_artifact(stage, a)).collect(),
            job_dir: job_dir.display().to_string(),
        }))
    }

    type DownloadArtifactStream = ReceiverStream<Result<pb::ArtifactChunk, Status>>;

    #[tracing::instrument(skip_all, fields(job_id = %request.get_ref().job_id, path = %request.get_ref().path))]
    async fn download_artifact(
        &self,
        request: Request<pb::DownloadArtifactRequest>,
    ) -> Result<Response<Self::DownloadArtifactStream>, Status> {
        let request = request.into_inner();
        let job_id = validation::id("job_id", &request.job_id)?;
        // The job must exist before its id is used as a directory name.
        self.store.get_job(job_id).await?;
        let file = artifact_files::resolve(job_id, &self.artifacts.job_dir(job_id), &request.path)?;
        let (sender, receiver) = mpsc::channel(DOWNLOAD_BUFFER);
        tokio::spawn(artifact_files::stream_file(file, sender, self.shutdown.clone()));
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    async fn get_score_statistics(
        &self,
        request: Request<pb::GetScoreStatisticsRequest>,
    ) -> Result<Response<pb::ScoreStatisticsResponse>, Status> {
        let request = request.into_inner();
        let job_id = validation::id("job_id", &request.job_id)?;
        let epoch = Some(request.epoch).filter(|e| *e > 0);
        // An unknown job is JobNotFound, not "no statistics".
        self.store.get_job(job_id).await?;
        let (epoch, units) = self
            .store
            .score_statistics(job_id, epoch)
            .await?
            .ok_or_else(|| Error::StatisticsNotFound { job_id: job_id.to_owned(), epoch })?;
        Ok(Response::new(convert::statistics(job_id.to_owned(), epoch, units)))
    }
}

/// Sends a job's events from `next` on, then follows new ones until the
/// terminal one, the client leaving, or shutdown.
///
/// Every event is read from the store by sequence number, and the hub only
/// says "something new": subscribing before each read means a notification
/// can be coalesced but never missed, so there are no gaps or duplicates.
async fn follow(
    store: Store,
    job_id: String,
    mut next: u64,
    sender: mpsc::Sender<Result<pb::JobEvent, Status>>,
    mut shutdown: Shutdown,
) {
    let mut wake = store.hub().subscribe(&job_id);
    loop {
        wake.borrow_and_update();
        let (events, ended) = match store.events_since(&job_id, next).await {
            Ok(read) => read,
            Err(error) => {
                let _ = sender.send(Err(error.into())).await;
                return;
            }
        };
        let full_page = events.len() >= crate::store::EVENT_PAGE as usize;
        for event in events {
            next = event.sequence + 1;
            let terminal = event.is_terminal();
            if sender.send(Ok(convert::event(event))).await.is_err() {
                return; // the client went away
            }
            if terminal {
                return;
            }
        }
        if full_page {
            continue;
        }
        if ended {
            return; // resumed past the last event of an ended job
        }
        tokio::select! {
            changed = wake.changed() => if changed.is_err() { return },
            () = sender.closed() => return,
            () = shutdown.wait() => {
                let _ = sender.send(Err(Status::unavailable("the coordinator is shutting down; resume with from_sequence"))).await;
                return;
            }
        }
    }
}
