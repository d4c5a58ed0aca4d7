//! Prometheus metrics: the registry, the cluster gauges refreshed from the store
//! at each scrape, gRPC request counters and latencies, and the text exposition.
//!
//! Job and worker figures are read from the store when scraped, so they are
//! right after a restart; the `_total` counters are advanced to the store's
//! counts (jobs are never deleted, so those counts only grow).

use std::sync::Arc;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::domain::WorkerState;
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
        registry.register(Box::new(jobs.clone()))?;
        registry.register(Box::new(jobs_submitted.clone()))?;
        registry.register(Box::new(jobs_finished.clone()))?;
        registry.register(Box::new(workers.clone()))?;
        registry.register(Box::new(devices.clone()))?;
        registry.register(Box::new(grpc_requests.clone()))?;
        registry.register(Box::new(grpc_duration.clone()))?;
        Ok(Arc::new(Metrics {
            registry,
            jobs,
            jobs_submitted,
            jobs_finished,
            workers,
            devices,
            grpc_requests,
            grpc_duration,
            refresh: tokio::sync::Mutex::new(()),
        }))
    }

    /// Counts one finished gRPC call.
    pub fn observe_grpc(&self, method: &str, code: &str, seconds: f64) {
        self.grpc_requests.with_label_values(&[method, code]).inc();
        self.grpc_duration.with_label_values(&[method, code]).observe(seconds);
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
