//! The public `JobService`: authenticate (the interceptor) → validate → authorise
//! by role, owner and quota → store → audit → convert.

use std::path::PathBuf;

use scop_core::sandbox::Roots;
use scop_core::spec::{DeviceKind, JobSpec};
use scop_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::auth::{caller, require};
use super::stream_limits::{StreamKind, StreamLimits};
use super::{artifact_files, convert, validation};
use crate::artifacts::{ArtifactStore, LocalArtifacts};
use crate::config::Config;
use crate::domain::{Job, NewJob, StagePlan};
use crate::error::Error;
use crate::scheduler::Wake;
use crate::shutdown::Shutdown;
use crate::store::{JobFilter, Store};
use crate::users::Role;

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
    tenancy: Tenancy,
}

/// What a shared coordinator enforces beyond roles: the roots spec paths must
/// stay inside, and open streams per user.
#[derive(Debug, Clone)]
pub struct Tenancy {
    /// `None`: spec paths are not checked at submission (the workers still check them).
    roots: Option<Roots>,
    /// What relative spec paths are taken from: the coordinator's working directory.
    base: PathBuf,
    streams: StreamLimits,
}

impl Tenancy {
    pub fn from_config(config: &Config) -> crate::error::Result<Tenancy> {
        let roots = (!config.data_roots.is_empty() || !config.models_roots.is_empty())
            .then(|| Roots { data: config.data_roots.clone(), models: config.models_roots.clone() });
        let base = std::env::current_dir()
            .map_err(|source| Error::Io { path: "the working directory".into(), source })?;
        Ok(Tenancy { roots, base, streams: StreamLimits::default() })
    }
}

impl JobApi {
    pub fn new(
        store: Store,
        artifacts: LocalArtifacts,
        shutdown: Shutdown,
        scheduler: Wake,
        tenancy: Tenancy,
    ) -> Self {
        Self { store, artifacts, shutdown, scheduler, tenancy }
    }

    /// DrainWorker and UndrainWorker: admin only, audited, and the scheduler
    /// told (an undrained worker's slots are free again).
    async fn set_drained(
        &self,
        request: Request<String>,
        drained: bool,
    ) -> Result<Response<pb::Worker>, Status> {
        let user = caller(&request)?;
        let (call, action) = if drained { ("DrainWorker", "drain") } else { ("UndrainWorker", "undrain") };
        require(&user, Role::Admin, call)?;
        let worker_id = validation::id("worker_id", request.get_ref())?;
        let worker = self.store.set_worker_drained(worker_id, drained).await?;
        tracing::info!(worker_id, drained, "worker drain changed");
        let detail = format!("hostname {:?}, {} ranks running", worker.hostname, worker.slots_busy);
        self.store.audit(&user.name, action, worker_id, detail).await?;
        self.scheduler.wake();
        Ok(Response::new(convert::worker(worker)))
    }

    /// Why a queued job cannot start even on idle workers, if so.
    async fn queued_reason(&self, job: &Job) -> Result<String, Status> {
        if !matches!(job.state, crate::domain::JobState::Queued) {
            return Ok(String::new());
        }
        let Ok(spec) = JobSpec::from_yaml(&job.spec_yaml) else { return Ok(String::new()) };
        let kind = match spec.resources.device {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Cuda => "cuda",
        };
        let workers = self.store.list_workers(false).await?;
        let slots = |drained: bool| -> usize {
            workers
                .iter()
                .filter(|w| w.drained == drained)
                .map(|w| w.devices.iter().filter(|d| d.kind == kind).count())
                .sum()
        };
        let (capacity, drained) = (slots(false), slots(true));
        let wanted = spec.resources.world_size as usize;
        Ok(if capacity < wanted {
            let also =
                if drained > 0 { format!(" (and {drained} on drained workers)") } else { String::new() };
            format!(
                "needs {wanted} {kind} rank slots; the registered workers have {capacity} in all{also}: \
                 it starts once enough workers join"
            )
        } else {
            String::new()
        })
    }
}

#[tonic::async_trait]
impl pb::job_service_server::JobService for JobApi {
    #[tracing::instrument(skip_all, fields(request_id = %request.get_ref().request_id))]
    async fn submit_job(&self, request: Request<pb::SubmitJobRequest>) -> Result<Response<pb::Job>, Status> {
        let user = caller(&request)?;
        require(&user, Role::Submitter, "SubmitJob")?;
        let request = request.into_inner();
        if request.spec_yaml.trim().is_empty() {
            return Err(Error::InvalidArgument {
                field: "spec_yaml".into(),
                message: "must not be empty".into(),
            }
            .into());
        }
        let spec = JobSpec::from_yaml(&request.spec_yaml).map_err(Error::InvalidSpec)?;
        if let Some(roots) = &self.tenancy.roots {
            roots.check_spec(&spec, &self.tenancy.base).map_err(Error::InvalidSpec)?;
        }
        let usage = self.store.usage_of(&user.name).await?;
        if let Some(exceeded) = user.quotas.admit(usage, spec.resources.world_size, request.priority) {
            return Err(Error::QuotaExceeded(format!("user {:?}: {exceeded}", user.name)).into());
        }
        let new = NewJob {
            stages: StagePlan::for_spec(&spec),
            // Stored normalised: the scheduler, the agents and the ranks read
            // what will run, never the user's document again.
            spec_yaml: spec.normalised_yaml(),
            labels: validation::labels("labels", request.labels)?,
            priority: request.priority,
            request_id: validation::request_id(request.request_id)?,
            owner: user.name.clone(),
            world_size: spec.resources.world_size,
            name: spec.name.clone().unwrap_or_default(),
        };
        let (job, created) = self.store.submit_job(new).await?;
        if created {
            tracing::info!(job_id = %job.id, "job submitted");
            let detail = format!("priority {}, world_size {}", job.priority, spec.resources.world_size);
            self.store.audit(&user.name, "submit", &job.id, detail).await?;
            self.scheduler.wake();
        }
        let reason = self.queued_reason(&job).await?;
        Ok(Response::new(pb::Job { queued_reason: reason, ..convert::job(job) }))
    }

    async fn get_job(&self, request: Request<pb::GetJobRequest>) -> Result<Response<pb::Job>, Status> {
        require(&*caller(&request)?, Role::Viewer, "GetJob")?;
        let job_id = validation::id("job_id", &request.get_ref().job_id)?;
        let job = self.store.get_job(job_id).await?;
        let reason = self.queued_reason(&job).await?;
        Ok(Response::new(pb::Job { queued_reason: reason, ..convert::job(job) }))
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        require(&*caller(&request)?, Role::Viewer, "ListJobs")?;
        let request = request.into_inner();
        let state = pb::JobState::try_from(request.state).map_err(|_| Error::InvalidArgument {
            field: "state".into(),
            message: format!("unknown job state {}", request.state),
        })?;
        let filter = JobFilter {
            state: convert::state_filter(state),
            labels: validation::labels("labels", request.labels)?,
            owner: Some(request.owner).filter(|owner| !owner.is_empty()),
            parent_id: if request.parent_id.is_empty() {
                None
            } else {
                Some(validation::id("parent_id", &request.parent_id)?.to_owned())
            },
        };
        let after = validation::page_token(&request.page_token)?;
        let page = self.store.list_jobs(filter, validation::page_size(request.page_size), after).await?;
        // Summaries unless asked: a page of padded specs must not outgrow the message limit.
        let full = request.full_view;
        Ok(Response::new(pb::ListJobsResponse {
            jobs: page
                .jobs
                .into_iter()
                .map(|job| {
                    let job = convert::job(job);
                    if full { job } else { pb::Job { spec_yaml: String::new(), ..job } }
                })
                .collect(),
            next_page_token: page.next.map(|n| n.to_string()).unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all, fields(job_id = %request.get_ref().job_id))]
    async fn cancel_job(&self, request: Request<pb::CancelJobRequest>) -> Result<Response<pb::Job>, Status> {
        let user = caller(&request)?;
        require(&user, Role::Submitter, "CancelJob")?;
        let job_id = validation::id("job_id", &request.get_ref().job_id)?;
        let owner = self.store.get_job(job_id).await?.owner;
        if user.role < Role::Admin && owner != user.name {
            return Err(Error::PermissionDenied(format!(
                "job {job_id} belongs to {owner:?}; user {:?} ({}) cancels only its own jobs",
                user.name,
                user.role.name()
            ))
            .into());
        }
        let job = self.store.cancel_job(job_id, "cancelled by a client".into()).await?;
        tracing::info!(state = %job.state, "cancel requested");
        self.store.audit(&user.name, "cancel", job_id, format!("owner {owner:?}")).await?;
        // The scheduler stops the job's ranks and gives their slots to others.
        self.scheduler.wake();
        Ok(Response::new(convert::job(job)))
    }

    type WatchJobStream = ReceiverStream<Result<pb::JobEvent, Status>>;

    async fn watch_job(
        &self,
        request: Request<pb::WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let user = caller(&request)?;
        require(&user, Role::Viewer, "WatchJob")?;
        let request = request.into_inner();
        let job_id = validation::id("job_id", &request.job_id)?.to_owned();
        // Fail fast on an unknown job, before the stream starts.
        self.store.get_job(&job_id).await?;
        let permit =
            self.tenancy.streams.acquire(&user.name, StreamKind::Watch, user.quotas.max_watch_streams)?;
        let (sender, receiver) = mpsc::channel(WATCH_BUFFER);
        let (store, from, shutdown) =
            (self.store.clone(), request.from_sequence.max(1), self.shutdown.clone());
        tokio::spawn(async move {
            follow(store, job_id, from, sender, shutdown).await;
            drop(permit);
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    async fn get_plan(&self, request: Request<pb::GetPlanRequest>) -> Result<Response<pb::Plan>, Status> {
        require(&*caller(&request)?, Role::Viewer, "GetPlan")?;
        let job_id = validation::id("job_id", &request.get_ref().job_id)?;
        Ok(Response::new(convert::plan(self.store.get_plan(job_id).await?)))
    }

    async fn list_workers(
        &self,
        request: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        require(&*caller(&request)?, Role::Viewer, "ListWorkers")?;
        let workers = self.store.list_workers(request.get_ref().include_lost).await?;
        Ok(Response::new(pb::ListWorkersResponse {
            workers: workers.into_iter().map(convert::worker).collect(),
        }))
    }

    async fn list_artifacts(
        &self,
        request: Request<pb::ListArtifactsRequest>,
    ) -> Result<Response<pb::ListArtifactsResponse>, Status> {
        require(&*caller(&request)?, Role::Viewer, "ListArtifacts")?;
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
        let user = caller(&request)?;
        require(&user, Role::Viewer, "DownloadArtifact")?;
        let request = request.into_inner();
        let job_id = validation::id("job_id", &request.job_id)?;
        // The job must exist before its id is used as a directory name.
        self.store.get_job(job_id).await?;
        let file = artifact_files::resolve(job_id, &self.artifacts.job_dir(job_id), &request.path)?;
        let permit =
            self.tenancy.streams.acquire(&user.name, StreamKind::Download, user.quotas.max_downloads)?;
        let (sender, receiver) = mpsc::channel(DOWNLOAD_BUFFER);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            artifact_files::stream_file(file, sender, shutdown).await;
            drop(permit);
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    async fn get_score_statistics(
        &self,
        request: Request<pb::GetScoreStatisticsRequest>,
    ) -> Result<Response<pb::ScoreStatisticsResponse>, Status> {
        require(&*caller(&request)?, Role::Viewer, "GetScoreStatistics")?;
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

    async fn drain_worker(
        &self,
        request: Request<pb::DrainWorkerRequest>,
    ) -> Result<Response<pb::Worker>, Status> {
        self.set_drained(request.map(|r| r.worker_id), true).await
    }

    async fn undrain_worker(
        &self,
        request: Request<pb::UndrainWorkerRequest>,
    ) -> Result<Response<pb::Worker>, Status> {
        self.set_drained(request.map(|r| r.worker_id), false).await
    }

    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let user = caller(&request)?;
        let quotas = &user.quotas;
        Ok(Response::new(pb::WhoAmIResponse {
            user: user.name.clone(),
            role: user.role.name().to_owned(),
            max_queued_jobs: quotas.max_queued_jobs.unwrap_or(0),
            max_running_jobs: quotas.max_running_jobs.unwrap_or(0),
            max_rank_slots: quotas.max_rank_slots.unwrap_or(0),
            max_priority: quotas.max_priority.unwrap_or(i32::MAX),
        }))
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
