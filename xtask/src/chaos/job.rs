//! A submitted job as the suite sees it: its events, followed with
//! `scopctl watch -o json` (restarted when the coordinator goes away), and
//! waits on them.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use scop_core::spec::JobSpec;
use serde_json::Value;

use super::cluster::Cluster;

#[derive(Debug, Default)]
struct Shared {
    /// Events by sequence number (a resumed watch repeats some).
    events: Mutex<BTreeMap<u64, Value>>,
    result: Mutex<Option<Value>>,
    stop: AtomicBool,
}

/// A job being followed; the follower stops when this is dropped.
#[derive(Debug)]
pub struct Job {
    pub id: String,
    pub spec: JobSpec,
    /// Submission, on the coordinator's clock (ms since the epoch).
    pub submitted_ms: i64,
    scopctl: PathBuf,
    config: PathBuf,
    shared: Arc<Shared>,
}

impl Job {
    pub fn follow(cluster: &Cluster, id: String, spec: JobSpec) -> Job {
        let shared = Arc::new(Shared::default());
        let job = Job {
            id: id.clone(),
            spec,
            submitted_ms: now_ms(),
            scopctl: cluster.bin.join("scopctl"),
            config: cluster.dir.join("scopctl.yaml"),
            shared: shared.clone(),
        };
        let (scopctl, config) = (job.scopctl.clone(), job.config.clone());
        std::thread::spawn(move || {
            while !shared.stop.load(Ordering::SeqCst) {
                let child = Command::new(&scopctl)
                    .args(["watch", &id, "-o", "json"])
                    .env("SCOPCTL_CONFIG", &config)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn();
                let Ok(mut child) = child else { return };
                if let Some(stdout) = child.stdout.take() {
                    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                        let Ok(value) = serde_json::from_str::<Value>(&line) else { continue };
                        match value["type"].as_str() {
                            Some("event") => {
                                if let Some(seq) = value["sequence"].as_u64() {
                                    shared.events.lock().unwrap().insert(seq, value);
                                }
                            }
                            Some("result") => {
                                *shared.result.lock().unwrap() = Some(value);
                            }
                            _ => {}
                        }
                    }
                }
                let _ = child.wait();
                if shared.result.lock().unwrap().is_some() {
                    return;
                }
                // The coordinator went away (a scenario killed it): follow again.
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        job
    }

    pub fn events(&self) -> Vec<Value> {
        self.shared.events.lock().unwrap().values().cloned().collect()
    }

    pub fn result(&self) -> Option<Value> {
        self.shared.result.lock().unwrap().clone()
    }

    /// Waits until `done` holds for the events so far; fails when the job
    /// ends first or `timeout` passes, saying what was awaited.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if done(&self.events()) {
                return Ok(());
            }
            if self.result().is_some() {
                bail!("the job ended before {what}");
            }
            if Instant::now() > deadline {
                bail!("no {what} within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits for rank 0 to report global step `step` (or later) of `stage`.
    pub fn wait_step(&self, stage: &str, step: u64, timeout: Duration) -> anyhow::Result<()> {
        self.wait_until(&format!("{stage} step {step}"), timeout, |events| {
            events.iter().any(|e| is(e, "progress", stage) && global_step(e) >= step)
        })
    }

    pub fn wait_event(&self, kind: &str, stage: &str, timeout: Duration) -> anyhow::Result<()> {
        self.wait_until(&format!("{kind} of {stage}"), timeout, |events| {
            events.iter().any(|e| is(e, kind, stage))
        })
    }

    /// Waits for the job's result.
    pub fn wait_end(&self, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(result) = self.result() {
                return Ok(result);
            }
            if Instant::now() > deadline {
                bail!("the job did not end within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

/// Whether `event` is of `kind` and in `stage`.
pub fn is(event: &Value, kind: &str, stage: &str) -> bool {
    event["kind"] == kind && event["stage"] == stage
}

/// The stage-wide step of a progress event (1-based, across epochs).
pub fn global_step(event: &Value) -> u64 {
    let epoch = event["epoch"].as_u64().unwrap_or(1).max(1);
    (epoch - 1) * event["steps"].as_u64().unwrap_or(0) + event["step"].as_u64().unwrap_or(0)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
