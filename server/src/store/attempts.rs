//! Stage attempts and their rank placements: what the scheduler creates, finishes,
//! re-attaches after a restart and retries from the last checkpoint.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::events::append_in;
use super::jobs::load_job;
use super::{Store, new_id, now_ms};
use crate::domain::{Attempt, AttemptState, EventKind, JobEvent, JobState, NewAttempt, RankPlacement, Stage};
use crate::error::{Error, Result};

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    /// Every rank finished; the stage is done (emits `StageFinished`).
    Succeeded { metrics: BTreeMap<String, f64> },
    /// A rank failed or its worker was lost (emits `Error`); `retrying` says
    /// whether the scheduler will start another attempt.
    Failed { reason: String, retrying: bool },
    /// Stopped because the job was cancelled (no event: the job's state change says it).
    Cancelled { reason: String },
}

const ATTEMPT_COLUMNS: &str = "id, job_id, stage, number, state, world_size, resume_from, last_checkpoint, \
                               rendezvous_json, created_at_ms, finished_at_ms, error";

impl Store {
    /// Starts the next attempt of the stage the job is running, with its rank
    /// placement, and emits `StageStarted`: one transaction.
    pub async fn create_attempt(&self, new: NewAttempt) -> Result<(Attempt, JobEvent)> {
        let (attempt, event) = self
            .call(move |conn| {
                let tx = conn.transaction()?;
                let job = load_job(&tx, &new.job_id)?;
                if job.state != JobState::Running(new.stage) {
                    return Err(Error::StageNotRunning { job_id: job.id, stage: new.stage, state: job.state });
                }
                let number: u32 = tx.query_row(
                    "SELECT attempts + 1 FROM stages WHERE job_id = ?1 AND stage = ?2",
                    params![job.id, new.stage.as_str()],
                    |r| r.get(0),
                )?;
                let id = new_id();
                let now = now_ms();
                tx.execute(
                    "INSERT INTO attempts (id, job_id, stage, number, state, world_size, resume_from, created_at_ms) \
                     VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?7)",
                    params![id, job.id, new.stage.as_str(), number, new.world_size, new.resume_from, now],
                )?;
                for (rank, (worker_id, device_index)) in new.placement.iter().enumerate() {
                    tx.execute(
                        "INSERT INTO attempt_ranks (attempt_id, rank, worker_id, device_index, task_id) \
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![id, rank, worker_id, device_index, format!("{id}/{rank}")],
                    )?;
                }
                tx.execute(
                    "UPDATE stages SET attempts = ?3 WHERE job_id = ?1 AND stage = ?2",
                    params![job.id, new.stage.as_str(), number],
                )?;
                tx.execute("UPDATE jobs SET attempt = ?2 WHERE id = ?1", params![job.id, number])?;
                let kind = EventKind::StageStarted { stage: new.stage, attempt: number, world_size: new.world_size };
                let event = append_in(&tx, &job.id, kind, now)?;
                let attempt = load_attempt(&tx, &id)?;
                tx.commit()?;
                Ok((attempt, event))
            })
            .await?;
        self.hub().notify(&event.job_id, event.sequence);
        Ok((attempt, event))
    }

    /// Marks a pending attempt running once every rank was assigned.
    pub async fn mark_attempt_running(&self, attempt_id: &str) -> Result<Attempt> {
        self.update_live_attempt(attempt_id, |conn, id| {
            conn.execute("UPDATE attempts SET state = 'running' WHERE id = ?1", [id])?;
            Ok(())
        })
        .await
    }

    /// Stores rank 0's rendezvous record, to relay to the other ranks.
    pub async fn record_rendezvous(&self, attempt_id: &str, record_json: String) -> Result<Attempt> {
        self.update_live_attempt(attempt_id, move |conn, id| {
            conn.execute("UPDATE attempts SET rendezvous_json = ?2 WHERE id = ?1", params![id, record_json])?;
            Ok(())
        })
        .await
    }

    /// Remembers the latest checkpoint, which a retry resumes from.
    pub async fn record_checkpoint(&self, attempt_id: &str, path: String) -> Result<Attempt> {
        self.update_live_attempt(attempt_id, move |conn, id| {
            conn.execute("UPDATE attempts SET last_checkpoint = ?2 WHERE id = ?1", params![id, path])?;
            Ok(())
        })
        .await
    }

    /// Ends a live attempt, with its event where the outcome has one.
    pub async fn finish_attempt(
        &self,
        attempt_id: &str,
        outcome: AttemptOutcome,
    ) -> Result<(Attempt, Option<JobEvent>)> {
        let attempt_id = attempt_id.to_owned();
        let (attempt, event) = self
            .call(move |conn| {
                let tx = conn.transaction()?;
                let attempt = load_attempt(&tx, &attempt_id)?;
                if !attempt.state.is_live() {
                    return Err(Error::AttemptEnded { attempt_id, state: attempt.state.as_str() });
                }
                let now = now_ms();
                let (state, error, kind) = match outcome {
                    AttemptOutcome::Succeeded { metrics } => {
                        let started: Option<i64> = tx.query_row(
                            "SELECT started_at_ms FROM stages WHERE job_id = ?1 AND stage = ?2",
                            params![attempt.job_id, attempt.stage.as_str()],
                            |r| r.get(0),
                        )?;
                        let seconds = (now - started.unwrap_or(attempt.created_at_ms)) as f64 / 1000.0;
                        let kind = EventKind::StageFinished {
                            stage: attempt.stage,
                            attempt: attempt.number,
                            seconds,
                            metrics,
                        };
                        (AttemptState::Succeeded, None, Some(kind))
                    }
                    AttemptOutcome::Failed { reason, retrying } => {
                        let kind = EventKind::Error {
                            stage: Some(attempt.stage),
                            attempt: attempt.number,
                            message: reason.clone(),
                            retrying,
                        };
                        (AttemptState::Failed, Some(reason), Some(kind))
                    }
                    AttemptOutcome::Cancelled { reason } => (AttemptState::Cancelled, Some(reason), None),
                };
                tx.execute(
                    "UPDATE attempts SET state = ?2, finished_at_ms = ?3, error = ?4 WHERE id = ?1",
                    params![attempt_id, state.as_str(), now, error],
                )?;
                let event = kind.map(|kind| append_in(&tx, &attempt.job_id, kind, now)).transpose()?;
                let attempt = load_attempt(&tx, &attempt_id)?;
                tx.commit()?;
                Ok((attempt, event))
            })
            .await?;
        if let Some(event) = &event {
            self.hub().notify(&event.job_id, event.sequence);
        }
        Ok((attempt, event))
    }

    /// One attempt by id.
    pub async fn get_attempt(&self, attempt_id: &str) -> Result<Attempt> {
        let attempt_id = attempt_id.to_owned();
        self.call(move |conn| load_attempt(conn, &attempt_id)).await
    }

    /// The attempt and rank a worker's task id belongs to.
    pub async fn attempt_for_task(&self, task_id: &str) -> Result<(Attempt, u32)> {
        let task_id = task_id.to_owned();
        self.call(move |conn| {
            let found: Option<(String, u32)> = conn
                .query_row("SELECT attempt_id, rank FROM attempt_ranks WHERE task_id = ?1", [&task_id], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            let (attempt_id, rank) = found.ok_or(Error::AttemptNotFound(task_id))?;
            Ok((load_attempt(conn, &attempt_id)?, rank))
        })
        .await
    }

    /// Pending and running attempts, oldest first: after a restart, the ones to
    /// re-attach or retry.
    pub async fn live_attempts(&self) -> Result<Vec<Attempt>> {
        self.call(|conn| {
            let ids = select_ids(
                conn,
                "SELECT id FROM attempts WHERE state IN ('pending', 'running') ORDER BY created_at_ms, id",
                [],
            )?;
            ids.iter().map(|id| load_attempt(conn, id)).collect()
        })
        .await
    }

    /// Live attempts with a rank on `worker_id`: what a lost worker takes down.
    pub async fn live_attempts_on_worker(&self, worker_id: &str) -> Result<Vec<Attempt>> {
        let worker_id = worker_id.to_owned();
        self.call(move |conn| {
            let ids = select_ids(
                conn,
                "SELECT DISTINCT a.id FROM attempts a JOIN attempt_ranks r ON r.attempt_id = a.id \
                 WHERE r.worker_id = ?1 AND a.state IN ('pending', 'running') ORDER BY a.id",
                [&worker_id],
            )?;
            ids.iter().map(|id| load_attempt(conn, id)).collect()
        })
        .await
    }

    /// Every attempt of one stage of a job, oldest first: the retry count and
    /// the checkpoint a retry resumes from.
    pub async fn stage_attempts(&self, job_id: &str, stage: Stage) -> Result<Vec<Attempt>> {
        let job_id = job_id.to_owned();
        self.call(move |conn| {
            let ids = select_ids(
                conn,
                "SELECT id FROM attempts WHERE job_id = ?1 AND stage = ?2 ORDER BY number",
                params![job_id, stage.as_str()],
            )?;
            ids.iter().map(|id| load_attempt(conn, id)).collect()
        })
        .await
    }

    async fn update_live_attempt<F>(&self, attempt_id: &str, update: F) -> Result<Attempt>
    where
        F: FnOnce(&Connection, &str) -> Result<()> + Send + 'static,
    {
        let attempt_id = attempt_id.to_owned();
        self.call(move |conn| {
            let attempt = load_attempt(conn, &attempt_id)?;
            if !attempt.state.is_live() {
                return Err(Error::AttemptEnded { attempt_id, state: attempt.state.as_str() });
            }
            update(conn, &attempt_id)?;
            load_attempt(conn, &attempt_id)
        })
        .await
    }
}

fn select_ids<P: rusqlite::Params>(conn: &Connection, sql: &str, params: P) -> Result<Vec<String>> {
    let mut statement = conn.prepare(sql)?;
    let rows = statement.query_map(params, |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
}

fn load_attempt(conn: &Connection, id: &str) -> Result<Attempt> {
    let sql = format!("SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE id = ?1");
    type Raw = (
        String,
        String,
        String,
        u32,
        String,
        u32,
        Option<String>,
        Option<String>,
        Option<String>,
        i64,
        Option<i64>,
        Option<String>,
    );
    let raw: Option<Raw> = conn
        .query_row(&sql, [id], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
                r.get(11)?,
            ))
        })
        .optional()?;
    let (
        id,
        job_id,
        stage,
        number,
        state,
        world_size,
        resume_from,
        last_checkpoint,
        rendezvous_json,
        created_at_ms,
        finished_at_ms,
        error,
    ) = raw.ok_or_else(|| Error::AttemptNotFound(id.to_owned()))?;
    let stage =
        Stage::parse(&stage).ok_or_else(|| Error::corrupt("attempts", &id, format!("stage {stage:?}")))?;
    let state = AttemptState::parse(&state)
        .ok_or_else(|| Error::corrupt("attempts", &id, format!("state {state:?}")))?;
    let mut statement = conn.prepare_cached(
        "SELECT rank, worker_id, device_index, task_id FROM attempt_ranks WHERE attempt_id = ?1 ORDER BY rank",
    )?;
    let ranks = statement
        .query_map([&id], |r| {
            Ok(RankPlacement {
                rank: r.get(0)?,
                worker_id: r.get(1)?,
                device_index: r.get(2)?,
                task_id: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Attempt {
        id,
        job_id,
        stage,
        number,
        state,
        world_size,
        resume_from,
        last_checkpoint,
        rendezvous_json,
        created_at_ms,
        finished_at_ms,
        error,
        ranks,
    })
}
