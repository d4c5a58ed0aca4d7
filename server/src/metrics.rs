//! Prometheus metrics: the registry, the cluster gauges refreshed from the store
//! at each scrape, gRPC request counters and latencies, and the text exposition.
//!
//! Job and worker figures are read from the store when scraped, so they are
//! right after a restart; the `_total` counters are advanced to the store's
//! counts (jobs are never deleted, so those counts only grow).

use std::sync::Arc;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::domain::{Progress, WorkerState};
use crate::error::Result;
use crate::store::Store;

/// Every metric `scopd` exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    jobs: IntGaugeVec,
    jobs_submitted: IntCounter,
    jobs_finished: IntCounterVec,
    workers: IntGaugeVec,
    devices: IntGaugeVec,
    grpc_requests: IntCounterVec,
    grpc_duration: HistogramVec,
    /// Tracking calls that failed after their retries, by what they were for.
    tracking_failures: IntCounterVec,
    /// Per running job: `stage` (1 on the current stage's label), `epoch`, `step`,
    /// `loss`, `accuracy`, `samples_per_second`; removed when the job ends.
    job_stage: IntGaugeVec,
    job_figures: GaugeVec,
    job_step_seconds: HistogramVec,
    job_allreduce_seconds: HistogramVec,
    /// Jobs with per-job series, and the stage label each has.
    job_series: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// Serialises scrapes, so two never advance the same counter twice.
    refresh: tokio::sync::Mutex<()>,
}

impl Metrics {
    pub fn new() -> Result<Arc<Metrics>> {
        let registry = Registry::new();
        let jobs = IntGaugeVec::new(Opts::new("scop_jobs", "Jobs by state."), &["state"])?;
        let jobs_submitted = IntCounter::new("scop_jobs_submitted_total", "Jobs submitted.")?;
        let jobs_finished = IntCounterVec::new(
            Opts::new("scop_jobs_finished_total", "Jobs that ended, by outcome."),
            &["outcome"],
        )?;
        let workers = IntGaugeVec::new(Opts::new("scop_workers", "Worker agents by state."), &["state"])?;
        let devices = IntGaugeVec::new(
            Opts::new("scop_devices", "Devices (slots) of non-lost workers: busy, free, or unavailable."),
            &["state"],
        )?;
        let grpc_requests = IntCounterVec::new(
            Opts::new("scop_grpc_requests_total", "gRPC requests by method and status code."),
            &["method", "code"],
        )?;
        let grpc_duration = HistogramVec::new(
            HistogramOpts::new(
                "scop_grpc_request_duration_seconds",
                "Time from a gRPC request to its response headers (for streams, to the stream's start).",
            )
            .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
            &["method", "code"],
        )?;
        let tracking_failures = IntCounterVec::new(
            Opts::new(
                "scop_tracking_failures_total",
                "MLflow tracking calls that failed after their retries (the job goes on), by call.",
            ),
            &["call"],
        )?;
        // Every call's series exists from the start, at 0.
        for call in crate::tracking::CALLS {
            tracking_failures.with_label_values(&[call]);
        }
        let job_stage = IntGaugeVec::new(
            Opts::new("scop_job_stage", "The stage a running job is in (1 on its stage's label)."),
            &["job_id", "stage"],
        )?;
        let job_figures = GaugeVec::new(
            Opts::new(
                "scop_job_progress",
                "Latest progress of a running job: figure is epoch, step, loss, accuracy or samples_per_second.",
            ),
            &["job_id", "figure"],
        )?;
        let seconds = vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
        let job_step_seconds = HistogramVec::new(
            HistogramOpts::new("scop_job_step_seconds", "Training step time of a running job (rank 0).")
                .buckets(seconds.clone()),
            &["job_id"],
        )?;
        let job_allreduce_seconds = HistogramVec::new(
            HistogramOpts::new(
                "scop_job_allreduce_seconds",
                "All-reduce time per step of a running job (rank 0).",
            )
            .buckets(seconds),
            &["job_id"],
        )?;
        registry.register(Box::new(job_stage.clone()))?;
        registry.register(Box::new(job_figures.clone()))?;
        registry.register(Box::new(job_step_seconds.clone()))?;
        registry.register(Box::new(job_allreduce_seconds.clone()))?;
        registry.register(Box::new(jobs.clone()))?;
        registry.register(Box::new(jobs_submitted.clone()))?;
        registry.register(Box::new(jobs_finished.clone()))?;
        registry.register(Box::new(workers.clone()))?;
        registry.register(Box::new(devices.clone()))?;
        registry.register(Box::new(grpc_requests.clone()))?;
        registry.register(Box::new(grpc_duration.clone()))?;
        registry.register(Box::new(tracking_failures.clone()))?;
        Ok(Arc::new(Metrics {
            registry,
            jobs,
            jobs_submitted,
            jobs_finished,
            workers,
            devices,
            grpc_requests,
            grpc_duration,
            tracking_failures,
            job_stage,
            job_figures,
            job_step_seconds,
            job_allreduce_seconds,
            job_series: std::sync::Mutex::new(std::collections::HashMap::new()),
            refresh: tokio::sync::Mutex::new(()),
        }))
    }

    /// Counts one finished gRPC call.
    /// Counts a tracking call that failed for good.
    pub fn tracking_failed(&self, call: &str) {
        self.tracking_failures.with_label_values(&[call]).inc();
    }

    pub fn observe_grpc(&self, method: &str, code: &str, seconds: f64) {
        self.grpc_requests.with_label_values(&[method, code]).inc();
        self.grpc_duration.with_label_values(&[method, code]).observe(seconds);
    }

    /// Records rank 0's progress of a running job. `step_seconds` and
    /// `allreduce_seconds` are per-step times (0 when the rank did not measure).
    pub fn observe_progress(
        &self,
        job_id: &str,
        progress: &Progress,
        step_seconds: f64,
        allreduce_seconds: f64,
    ) {
        let stage = progress.stage.as_str();
        let mut series = self.job_series.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match series.insert(job_id.to_owned(), stage.to_owned()) {
            Some(old) if old != stage => drop(self.job_stage.remove_label_values(&[job_id, &old])),
            _ => {}
        }
        self.job_stage.with_label_values(&[job_id, stage]).set(1);
        for (figure, value) in [
            ("epoch", f64::from(progress.epoch)),
            ("step", progress.step as f64),
            ("loss", progress.loss),
            ("accuracy", progress.accuracy),
            ("samples_per_second", progress.samples_per_second),
        ] {
            self.job_figures.with_label_values(&[job_id, figure]).set(value);
        }
        if step_seconds > 0.0 {
            self.job_step_seconds.with_label_values(&[job_id]).observe(step_seconds);
        }
        if allreduce_seconds > 0.0 {
            self.job_allreduce_seconds.with_label_values(&[job_id]).observe(allreduce_seconds);
        }
    }

    /// Removes the per-job series of every job not in `running`.
    fn forget_ended_jobs(&self, running: &std::collections::HashSet<String>) {
        let mut series = self.job_series.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        series.retain(|job_id, stage| {
            if running.contains(job_id) {
                return true;
            }
            let _ = self.job_stage.remove_label_values(&[job_id, stage]);
            for figure in ["epoch", "step", "loss", "accuracy", "samples_per_second"] {
                let _ = self.job_figures.remove_label_values(&[job_id, figure]);
            }
            let _ = self.job_step_seconds.remove_label_values(&[job_id]);
            let _ = self.job_allreduce_seconds.remove_label_values(&[job_id]);
            false
        });
    }

    /// Refreshes the cluster figures from the store and renders the text exposition.
    pub async fn render(&self, store: &Store) -> Result<String> {
        let _guard = self.refresh.lock().await;
        let counts = store.job_counts().await?;
        for (state, count) in [
            ("queued", counts.queued),
            ("running", counts.running),
            ("succeeded", counts.succeeded),
            ("failed", counts.failed),
            ("cancelled", counts.cancelled),
        ] {
            self.jobs.with_label_values(&[state]).set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        let submitted = counts.queued + counts.running + counts.succeeded + counts.failed + counts.cancelled;
        advance(&self.jobs_submitted, submitted);
        for (outcome, count) in
            [("succeeded", counts.succeeded), ("failed", counts.failed), ("cancelled", counts.cancelled)]
        {
            advance(&self.jobs_finished.with_label_values(&[outcome]), count);
        }

        let workers = store.list_workers(true).await?;
        for state in [WorkerState::Connected, WorkerState::Disconnected, WorkerState::Lost] {
            let n = workers.iter().filter(|w| w.state == state).count();
            self.workers.with_label_values(&[state.as_str()]).set(n as i64);
        }
        let (mut busy, mut free, mut unavailable) = (0u64, 0u64, 0u64);
        for worker in workers.iter().filter(|w| w.state != WorkerState::Lost) {
            let (total, worker_busy, worker_free) = (
                u64::from(worker.slots_total()),
                u64::from(worker.slots_busy),
                u64::from(worker.slots_free()),
            );
            busy += worker_busy.min(total);
            free += worker_free;
            unavailable += total.saturating_sub(worker_busy.min(total) + worker_free);
        }
        for (state, n) in [("busy", busy), ("free", free), ("unavailable", unavailable)] {
            self.devices.with_label_values(&[state]).set(n as i64);
        }

        let running = store.running_jobs().await?.into_iter().map(|j| j.id).collect();
        self.forget_ended_jobs(&running);

        let mut text = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut text)?;
        Ok(String::from_utf8_lossy(&text).into_owned())
    }
}

/// Moves a counter up to `target`; never down.
fn advance(counter: &IntCounter, target: u64) {
    let current = counter.get();
    if target > current {
        counter.inc_by(target - current);
    }
}
