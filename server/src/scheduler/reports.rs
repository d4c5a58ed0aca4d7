//! What ranks report that moves the scheduler: finish, failure, rendezvous
//! parts, and the ranks a reconnecting worker still runs.

use super::Scheduler;
use super::rendezvous::{self, Transport};
use crate::domain::{Artifact, AttemptState, WorkerCommand};
use crate::error::{Error, Result};
use crate::store::AttemptOutcome;

/// A rank's report, forwarded by the worker port.
#[derive(Debug, Clone, PartialEq)]
pub enum RankReport {
    Finished {
        task_id: String,
        metrics: std::collections::BTreeMap<String, f64>,
        artifacts: Vec<Artifact>,
    },
    Failed {
        task_id: String,
        reason: String,
        /// No retry can fix it: the job fails at once.
        permanent: bool,
    },
    /// This rank's part of its group's rendezvous (see `rendezvous_ready`).
    RendezvousPart {
        task_id: String,
        part: String,
    },
    /// A worker (re)connected still running these tasks.
    Alive {
        task_ids: Vec<String>,
    },
    /// A heartbeat's complete list of the tasks a worker runs (or waits to start).
    Running {
        worker_id: String,
        task_ids: Vec<String>,
    },
}

impl Scheduler {
    pub(super) async fn on_report(&mut self, report: RankReport) -> Result<()> {
        match report {
            RankReport::Finished { task_id, metrics, artifacts } => {
                self.on_finished(&task_id, metrics, artifacts).await
            }
            RankReport::Failed { task_id, reason, permanent } => {
                let (attempt, rank) = self.store.attempt_for_task(&task_id).await?;
                if attempt.state.is_live() {
                    let reason = format!("rank {rank}: {reason}");
                    if permanent {
                        self.fail_permanently(attempt, reason).await?;
                    } else {
                        self.fail(attempt, reason).await?;
                    }
                }
                Ok(())
            }
            RankReport::RendezvousPart { task_id, part } => self.on_part(&task_id, part).await,
            RankReport::Alive { task_ids } => self.on_alive(task_ids).await,
            RankReport::Running { worker_id, task_ids } => self.reconcile(&worker_id, task_ids).await,
        }
    }

    /// Reconciles what a worker says it runs with what the scheduler placed on
    /// it. A rank of a tracked attempt that has not finished and is missing
    /// from two heartbeats in a row (one may have left before the assignment
    /// arrived) fails its attempt, which is retried; a listed task whose
    /// attempt is over, or that the coordinator never knew, is cancelled on
    /// the worker.
    async fn reconcile(&mut self, worker_id: &str, task_ids: Vec<String>) -> Result<()> {
        let listed: std::collections::HashSet<&str> = task_ids.iter().map(String::as_str).collect();
        let mut vanished = None;
        for entry in self.dispatched.values() {
            for rank in entry.attempt.ranks.iter().filter(|r| r.worker_id == worker_id) {
                if listed.contains(rank.task_id.as_str()) || entry.finished.contains(&rank.rank) {
                    self.missing.remove(&rank.task_id);
                    continue;
                }
                let misses = self.missing.entry(rank.task_id.clone()).or_insert(0);
                *misses += 1;
                if *misses >= 2 && vanished.is_none() {
                    vanished = Some((entry.attempt.clone(), rank.rank, rank.task_id.clone()));
                }
            }
        }
        if let Some((attempt, rank, task_id)) = vanished {
            self.missing.remove(&task_id);
            let reason = format!(
                "worker {worker_id} no longer runs rank {rank}: its heartbeats do not list task {task_id}"
            );
            self.fail(attempt, reason).await?;
        }
        for task_id in task_ids {
            if self.dispatched.values().any(|d| d.attempt.ranks.iter().any(|r| r.task_id == task_id)) {
                continue;
            }
            let live = match self.store.attempt_for_task(&task_id).await {
                Ok((attempt, _)) => attempt.state.is_live(),
                Err(Error::AttemptNotFound(_)) => false,
                Err(error) => return Err(error),
            };
            if !live {
                tracing::info!(%worker_id, %task_id, "cancelling a task the coordinator no longer runs");
                let reason = "the coordinator no longer runs this task".to_owned();
                self.links.send(worker_id, WorkerCommand::Cancel { task_id, reason });
            }
        }
        Ok(())
    }

    async fn on_finished(
        &mut self,
        task_id: &str,
        metrics: std::collections::BTreeMap<String, f64>,
        artifacts: Vec<Artifact>,
    ) -> Result<()> {
        let (attempt, rank) = self.store.attempt_for_task(task_id).await?;
        if !attempt.state.is_live() {
            return Ok(());
        }
        self.adopt(&attempt.id).await?;
        let Some(entry) = self.dispatched.get_mut(&attempt.id) else { return Ok(()) };
        entry.finished.insert(rank);
        if rank == 0 {
            entry.metrics = metrics;
            entry.artifacts = artifacts;
        }
        if entry.finished.len() < attempt.world_size as usize {
            return Ok(());
        }
        let Some(done) = self.dispatched.remove(&attempt.id) else { return Ok(()) };
        match self
            .store
            .finish_attempt(&attempt.id, AttemptOutcome::Succeeded { metrics: done.metrics })
            .await
        {
            Err(Error::AttemptEnded { .. }) => return Ok(()),
            other => other?,
        };
        if !done.artifacts.is_empty() {
            self.store.record_artifacts(&attempt.job_id, attempt.stage, done.artifacts).await?;
        }
        let job = self.store.get_job(&attempt.job_id).await?;
        tracing::info!(job_id = %job.id, stage = %attempt.stage, "stage finished");
        self.next_stage(&job, attempt.stage).await?;
        // Place the next stage now rather than on the next tick.
        self.tick().await
    }

    async fn on_part(&mut self, task_id: &str, part: String) -> Result<()> {
        let (attempt, rank) = self.store.attempt_for_task(task_id).await?;
        let Some(entry) = self.dispatched.get_mut(&attempt.id) else { return Ok(()) };
        entry.parts.insert(rank, part.clone());
        if rank == 0 {
            self.store.record_rendezvous(&attempt.id, part).await?;
        }
        let Some(entry) = self.dispatched.get(&attempt.id) else { return Ok(()) };
        if !rendezvous::complete(entry.transport, attempt.world_size, &entry.parts) {
            return Ok(());
        }
        let devices: Vec<u32> = attempt.ranks.iter().map(|r| r.device_index).collect();
        let records =
            rendezvous::records(entry.transport, &entry.job_token, &entry.resources, &entry.parts, &devices);
        for (placement, record) in attempt.ranks.iter().zip(records) {
            let message = WorkerCommand::Rendezvous { task_id: placement.task_id.clone(), record };
            if !self.links.send(&placement.worker_id, message) {
                let reason =
                    format!("worker {} is unreachable; rendezvous not delivered", placement.worker_id);
                return self.fail(attempt, reason).await;
            }
        }
        Ok(())
    }

    /// Claims orphaned attempts whose ranks a reconnecting worker still runs;
    /// once every rank is claimed, the attempt is tracked again.
    async fn on_alive(&mut self, task_ids: Vec<String>) -> Result<()> {
        for task_id in task_ids {
            let (attempt, rank) = match self.store.attempt_for_task(&task_id).await {
                Ok(found) => found,
                Err(Error::AttemptNotFound(_)) => continue,
                Err(error) => return Err(error),
            };
            if let Some(claimed) = self.orphans.get_mut(&attempt.id) {
                claimed.insert(rank);
                if claimed.len() == attempt.world_size as usize {
                    tracing::info!(attempt_id = %attempt.id, "attempt re-attached after a restart");
                    self.adopt(&attempt.id).await?;
                }
            }
        }
        Ok(())
    }

    /// Moves an orphan (known from the store only) into the tracked attempts.
    async fn adopt(&mut self, attempt_id: &str) -> Result<()> {
        if self.dispatched.contains_key(attempt_id) || self.orphans.remove(attempt_id).is_none() {
            return Ok(());
        }
        let attempt = self.store.get_attempt(attempt_id).await?;
        if attempt.state == AttemptState::Pending {
            self.store.mark_attempt_running(attempt_id).await?;
        }
        let job = self.store.get_job(&attempt.job_id).await?;
        let resources = self.spec_of(&job).map(|s| s.resources.clone()).unwrap_or_default();
        let transport = Transport::of(&resources, attempt.stage, attempt.world_size);
        self.track(attempt, transport, resources, String::new());
        Ok(())
    }
}
