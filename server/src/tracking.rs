//! Experiment tracking: every job logged as one MLflow run, when `scopd` is
//! given a tracking server (`--mlflow-tracking-uri`).
//!
//! One task follows the store's event log, off the scheduler's path: it is
//! woken after any job's events (and by a slow backstop), and for each job
//! behind its run it logs the new events ([`translate`]) through MLflow's REST
//! API ([`mlflow`]). Where a job's events went is kept in the store with its
//! run id, so a restarted coordinator goes on with the same run. A tracking
//! server that is down or refuses never touches a job: calls are retried with
//! backoff, then logged and counted in `scop_tracking_failures_total`, and the
//! events are logged once the server answers again.

pub mod mlflow;
pub mod translate;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use scop_core::job_dir::{CARD_FILE, JobDir, PLAN_FILE};

use self::mlflow::{CallError, Mlflow};
use self::translate::{Batch, Follow, Translator};
use crate::artifacts::{ArtifactStore, LocalArtifacts};
use crate::domain::{Job, JobState};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::store::{EVENT_PAGE, Store, TRACKING_PAGE, TrackedRun};

/// The calls whose failures are counted, as the metric's `call` label.
pub const CALLS: [&str; 5] = ["experiment", "run", "log", "artifact", "end"];

/// Attempts per call, and the wait before the second (doubling after).
const ATTEMPTS: u32 = 4;
const FIRST_RETRY: Duration = Duration::from_millis(250);
/// A pass runs at least this often, and at most this long after a failed one.
const BACKSTOP: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The experiment of jobs whose spec names none, when the coordinator is given none.
pub const DEFAULT_EXPERIMENT: &str = "scop";

/// Starts the tracking task if `config` names a tracking server.
pub fn start(
    config: &crate::Config,
    store: Store,
    metrics: Arc<Metrics>,
    down: Shutdown,
) -> Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(uri) = &config.mlflow_tracking_uri else { return Ok(None) };
    let mlflow = Mlflow::new(uri).map_err(|e| Error::Config(format!("mlflow_tracking_uri: {e}")))?;
    let default_experiment = config.mlflow_experiment.clone().unwrap_or_else(|| DEFAULT_EXPERIMENT.into());
    tracing::info!(uri = %uri, experiment = %default_experiment, "logging jobs to MLflow");
    let tracker = Tracker {
        mlflow,
        store,
        artifacts: LocalArtifacts::new(config.artifacts_dir()),
        metrics,
        default_experiment,
        experiments: HashMap::new(),
        translators: HashMap::new(),
        since_ms: crate::store::now_ms(),
        refused: std::collections::HashSet::new(),
    };
    Ok(Some(tokio::spawn(tracker.run(down))))
}

/// A call that failed for good: counted under `call`.
#[derive(Debug)]
struct Failed {
    call: &'static str,
    error: CallError,
}

struct Tracker {
    mlflow: Mlflow,
    store: Store,
    artifacts: LocalArtifacts,
    metrics: Arc<Metrics>,
    default_experiment: String,
    /// Experiment ids by name.
    experiments: HashMap<String, String>,
    /// Per job: the throughput of epochs not evaluated yet.
    translators: HashMap<String, Translator>,
    /// Jobs that ended before this are not tracked.
    since_ms: i64,
    /// Jobs whose run the server refused to open: left alone until a restart.
    refused: std::collections::HashSet<String>,
}

impl Tracker {
    async fn run(mut self, mut down: Shutdown) {
        let mut backoff = Duration::ZERO;
        loop {
            let passed = tokio::select! {
                passed = self.pass() => passed,
                () = down.wait() => return,
            };
            let wait = match passed {
                Ok(()) => {
                    backoff = Duration::ZERO;
                    BACKSTOP
                }
                Err(()) => {
                    backoff = (backoff * 2).clamp(BACKSTOP, MAX_BACKOFF);
                    backoff
                }
            };
            tokio::select! {
                () = self.store.hub().any_event(), if backoff.is_zero() => {}
                () = tokio::time::sleep(wait) => {}
                () = down.wait() => return,
            }
        }
    }

    /// Brings every job's run up to date; `Err` when the server could not be
    /// reached (the rest waits for the next pass).
    async fn pass(&mut self) -> std::result::Result<(), ()> {
        loop {
            let jobs = match self.store.jobs_to_track(self.since_ms).await {
                Ok(jobs) => jobs,
                Err(error) => {
                    tracing::error!(%error, "tracking: cannot read the jobs to log");
                    return Err(());
                }
            };
            let mut progressed = false;
            for (job, run) in &jobs {
                if self.refused.contains(&job.id) {
                    continue;
                }
                match self.track(job, run.clone()).await {
                    Ok(moved) => progressed |= moved,
                    Err(Failed { call, error }) => {
                        self.metrics.tracking_failed(call);
                        tracing::warn!(job_id = %job.id, call, %error, "tracking: MLflow call failed; the job goes on");
                        if matches!(error, CallError::Transient(_)) {
                            return Err(());
                        }
                        self.refused.insert(job.id.clone());
                    }
                }
            }
            // A full page whose jobs all moved may have more behind it.
            if jobs.len() < TRACKING_PAGE as usize || !progressed {
                return Ok(());
            }
        }
    }

    /// Logs the job's new events to its run (created first if need be), and
    /// ends the run when the job has ended. True when its run is done with.
    async fn track(&mut self, job: &Job, run: Option<TrackedRun>) -> std::result::Result<bool, Failed> {
        let run = match run {
            Some(run) => run,
            None => self.open_run(job).await?,
        };
        let mut logged = run.logged_sequence;
        let mut end = job.state.is_terminal().then_some((job.state, job.updated_at_ms));
        loop {
            let (events, _) = self.store.events_since(&job.id, logged + 1).await.map_err(store_failure)?;
            let Some(last) = events.last().map(|e| e.sequence) else { break };
            let translator = self.translators.entry(job.id.clone()).or_default();
            let mut batch = Batch::default();
            let mut plan = false;
            for event in &events {
                match translator.add(event, &mut batch) {
                    Some(Follow::PlanDecided) => plan = true,
                    Some(Follow::Ended(state)) => end = Some((state, event.time_ms)),
                    None => {}
                }
            }
            if plan && let Ok(plan) = self.store.get_plan(&job.id).await {
                translate::plan_metrics(&plan, &mut batch);
            }
            if !batch.is_empty() {
                let logged = self.retry("log", || self.mlflow.log_batch(&run.run_id, &batch)).await;
                self.tolerate(job, logged)?;
            }
            logged = last;
            self.store.advance_tracked_run(&job.id, logged, false).await.map_err(store_failure)?;
            if events.len() < EVENT_PAGE as usize {
                break;
            }
        }
        let Some((state, end_ms)) = end else { return Ok(false) };
        self.finish(job, &run, state, end_ms).await?;
        self.store.advance_tracked_run(&job.id, logged, true).await.map_err(store_failure)?;
        self.translators.remove(&job.id);
        Ok(true)
    }

    /// Finds the job's run in its experiment (a coordinator that created it
    /// may have stopped before remembering it), or creates it with the tags
    /// and the spec's parameters, and remembers it.
    async fn open_run(&mut self, job: &Job) -> std::result::Result<TrackedRun, Failed> {
        let name = scop_core::spec::JobSpec::from_yaml(&job.spec_yaml)
            .ok()
            .and_then(|spec| spec.tracking.experiment)
            .unwrap_or_else(|| self.default_experiment.clone());
        let experiment_id = match self.experiments.get(&name) {
            Some(id) => id.clone(),
            None => {
                let id = self.retry("experiment", || self.mlflow.experiment_id(&name)).await?;
                self.experiments.insert(name.clone(), id.clone());
                id
            }
        };
        let found = self.retry("run", || self.mlflow.find_run(&experiment_id, &job.id)).await?;
        let info = match found {
            Some(info) => info,
            None => {
                let run_name = if job.name.is_empty() { job.id.clone() } else { job.name.clone() };
                let mut tags = translate::job_tags(job);
                if let Some(sweep) = &job.parent_id {
                    // Branches show as the sweep run's children in the MLflow UI.
                    if let Ok(Some(parent)) = self.store.tracked_run(sweep).await {
                        tags.push(("mlflow.parentRunId".to_owned(), parent.run_id));
                    }
                }
                let info = self
                    .retry("run", || {
                        self.mlflow.create_run(&experiment_id, &run_name, job.created_at_ms, &tags)
                    })
                    .await?;
                let params = Batch { params: translate::spec_params(&job.spec_yaml), ..Batch::default() };
                self.retry("log", || self.mlflow.log_batch(&info.run_id, &params)).await?;
                info
            }
        };
        if info.artifact_path.is_none() {
            tracing::warn!(
                job_id = %job.id,
                run_id = %info.run_id,
                "tracking: the server does not proxy this run's artifacts (start `mlflow server` with \
                 --serve-artifacts and an --artifacts-destination); its files are not uploaded"
            );
        }
        tracing::info!(job_id = %job.id, run_id = %info.run_id, experiment = %name, "tracking: job logged as an MLflow run");
        let run = TrackedRun {
            job_id: job.id.clone(),
            run_id: info.run_id,
            experiment_id,
            artifact_path: info.artifact_path.unwrap_or_default(),
            logged_sequence: 0,
            ended: false,
        };
        self.store.record_tracked_run(run).await.map_err(store_failure)
    }

    /// Uploads the model card, `plan.json` and the report, then ends the run
    /// with the job's outcome. A refused upload is counted and skipped.
    async fn finish(
        &mut self,
        job: &Job,
        run: &TrackedRun,
        state: JobState,
        end_ms: i64,
    ) -> std::result::Result<(), Failed> {
        let job = self.store.get_job(&job.id).await.map_err(store_failure)?;
        let mut batch = Batch::default();
        batch.tag("scop.state", translate::state_tag(state));
        if let Some(error) = &job.error {
            batch.tag("scop.error", error.chars().take(5000).collect::<String>());
        }
        let tagged = self.retry("log", || self.mlflow.log_batch(&run.run_id, &batch)).await;
        self.tolerate(&job, tagged)?;
        if !run.artifact_path.is_empty() {
            for (name, bytes) in self.artifacts_of(&job).await {
                let upload = self
                    .retry("artifact", || self.mlflow.upload(&run.artifact_path, name, bytes.clone()))
                    .await;
                self.tolerate(&job, upload)?;
            }
        }
        let status = translate::run_status(state);
        self.retry("end", || self.mlflow.end_run(&run.run_id, status, end_ms)).await
    }

    /// The files a run gets: those of them that exist, and the report.
    async fn artifacts_of(&self, job: &Job) -> Vec<(&'static str, Vec<u8>)> {
        let dir = JobDir::new(self.artifacts.job_dir(&job.id));
        let mut files = Vec::new();
        for (name, path) in [(CARD_FILE, dir.export_dir().join(CARD_FILE)), (PLAN_FILE, dir.plan())] {
            if let Ok(bytes) = tokio::fs::read(&path).await {
                files.push((name, bytes));
            }
        }
        let mut events = Vec::new();
        let mut from = 1;
        while let Ok((page, _)) = self.store.events_since(&job.id, from).await {
            let Some(last) = page.last().map(|e| e.sequence) else { break };
            events.extend(page);
            from = last + 1;
        }
        let plan = self.store.get_plan(&job.id).await.ok();
        let report = translate::report(job, &events, plan.as_ref());
        files.push(("report.json", serde_json::to_vec_pretty(&report).unwrap_or_default()));
        files
    }

    /// `call` until it succeeds, is refused, or failed [`ATTEMPTS`] times.
    async fn retry<T, F, Fut>(&self, call: &'static str, mut attempt: F) -> std::result::Result<T, Failed>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, CallError>>,
    {
        let mut delay = FIRST_RETRY;
        let mut n = 1;
        loop {
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(CallError::Transient(error)) if n < ATTEMPTS => {
                    tracing::debug!(call, attempt = n, %error, "tracking: retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    n += 1;
                }
                Err(error) => return Err(Failed { call, error }),
            }
        }
    }

    /// A refused call counted and logged, so what comes after it still goes
    /// to the run; a server that cannot be reached stays an error.
    fn tolerate(&self, job: &Job, done: std::result::Result<(), Failed>) -> std::result::Result<(), Failed> {
        match done {
            Err(Failed { call, error: CallError::Refused(error) }) => {
                self.metrics.tracking_failed(call);
                tracing::warn!(job_id = %job.id, call, %error, "tracking: MLflow refused a call; skipped");
                Ok(())
            }
            other => other,
        }
    }
}

/// The store failing is not the tracking server's fault, but tracking waits
/// for it the same way.
fn store_failure(error: Error) -> Failed {
    Failed { call: "log", error: CallError::Transient(format!("store: {error}")) }
}
