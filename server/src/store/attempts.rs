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
                let number: u32 = tx.prepare_cached("SELECT attempts + 1 FROM stages WHERE job_id = ?1 AND stage = ?2")?.query_row(params![job.id, new.stage.as_str()],
                    |r| r.get(0),
                )?;
                let id = new_id();
                let now = now_ms();
                tx.prepare_cached("INSERT INTO attempts (id, job_id, stage, number, state, world_size, resume_from, created_at_ms) \
                     VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?7)")?.execute(params![id, job.id, new.stage.as_str(), number, new.world_size, new.resume_from, now],
                )?;
                for (rank, (worker_id, device_index)) in new.placement.iter().enumerate() {
                    tx.prepare_cached("INSERT INTO attempt_ranks (attempt_id, rank, worker_id, device_index, task_id) \
                         VALUES (?1, ?2, ?3, ?4, ?5)")?.execute(params![id, rank, worker_id, device_index, format!("{id}/{rank}")],
                    )?;
                }
                tx.prepare_cached("UPDATE stages SET attempts = ?3 WHERE job_id = ?1 AND stage = ?2")?.execute(params![job.id, new.stage.as_str(), number],
                )?;
                tx.prepare_cached("UPDATE jobs SET attempt = ?2 WHERE id = ?1")?.execute(params![job.id, number])?;
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
            conn.prepare_cached("UPDATE attempts SET state = 'running' WHERE id = ?1")?.execute([id])?;
            Ok(())
        })
        .await
    }

    /// Stores rank 0's rendezvous record, to relay to the other ranks.
    pub async fn record_rendezvous(&self, attempt_id: &str, record_json: String) -> Result<Attempt> {
        self.update_live_attempt(attempt_id, move |conn, id| {
            conn.prepare_cached("UPDATE attempts SET rendezvous_json = ?2 WHERE id = ?1")?
                .execute(params![id, record_json])?;
            Ok(())
        })
        .await
    }

    /// Remembers the latest checkpoint, which a retry resumes from.
    pub async fn record_checkpoint(&self, attempt_id: &str, path: String) -> Result<Attempt> {
        self.update_live_attempt(attempt_id, move |conn, id| {
            conn.prepare_cached("UPDATE attempts SET last_checkpoint = ?2 WHERE id = ?1")?
                .execute(params![id, path])?;
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
                        let started: Option<i64> = tx
                            .prepare_cached(
                                "SELECT started_at_ms FROM stages WHERE job_id = ?1 AND stage = ?2",
                            )?
                            .query_row(params![attempt.job_id, attempt.stage.as_str()], |r| r.get(0))?;
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
                tx.prepare_cached(
                    "UPDATE attempts SET state = ?2, finished_at_ms = ?3, error = ?4 WHERE id = ?1",
                )?
                .execute(params![attempt_id, state.as_str(), now, error])?;
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
        self.read(move |conn| load_attempt(conn, &attempt_id)).await
    }

    /// The attempt and rank a worker's task id belongs to.
    pub async fn attempt_for_task(&self, task_id: &str) -> Result<(Attempt, u32)> {
        let task_id = task_id.to_owned();
        self.read(move |conn| {
            let found: Option<(String, u32)> = conn
                .prepare_cached("SELECT attempt_id, rank FROM attempt_ranks WHERE task_id = ?1")?
                .query_row([&task_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let (attempt_id, rank) = found.ok_or(Error::AttemptNotFound(task_id))?;
            Ok((load_attempt(conn, &attempt_id)?, rank))
        })
        .await
    }

    /// Pending and running attempts, oldest first: after a restart, the ones to
    /// re-attach or retry.
    pub async fn live_attempts(&self) -> Result<Vec<Attempt>> {
        self.read(load_live_attempts).await
    }

    /// Live attempts with a rank on `worker_id`: what a lost worker takes down.
    pub async fn live_attempts_on_worker(&self, worker_id: &str) -> Result<Vec<Attempt>> {
        let worker_id = worker_id.to_owned();
        self.read(move |conn| {
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
        self.read(move |conn| {
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
    let mut statement = conn.prepare_cached(sql)?;
    let rows = statement.query_map(params, |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
}

/// An `attempts` row before its enums are parsed and its ranks attached.
struct RawAttempt {
    id: String,
    job_id: String,
    stage: String,
    number: u32,
    state: String,
    world_size: u32,
    resume_from: Option<String>,
    last_checkpoint: Option<String>,
    rendezvous_json: Option<String>,
    created_at_ms: i64,
    finished_at_ms: Option<i64>,
    error: Option<String>,
}

impl RawAttempt {
    /// Reads a row of `SELECT {ATTEMPT_COLUMNS}`.
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawAttempt> {
        Ok(RawAttempt {
            id: r.get(0)?,
            job_id: r.get(1)?,
            stage: r.get(2)?,
            number: r.get(3)?,
            state: r.get(4)?,
            world_size: r.get(5)?,
            resume_from: r.get(6)?,
            last_checkpoint: r.get(7)?,
            rendezvous_json: r.get(8)?,
            created_at_ms: r.get(9)?,
            finished_at_ms: r.get(10)?,
            error: r.get(11)?,
        })
    }

    fn into_attempt(self, ranks: Vec<RankPlacement>) -> Result<Attempt> {
        let stage = Stage::parse(&self.stage)
            .ok_or_else(|| Error::corrupt("attempts", &self.id, format!("stage {:?}", self.stage)))?;
        let state = AttemptState::parse(&self.state)
            .ok_or_else(|| Error::corrupt("attempts", &self.id, format!("state {:?}", self.state)))?;
        Ok(Attempt {
            id: self.id,
            job_id: self.job_id,
            stage,
            number: self.number,
            state,
            world_size: self.world_size,
            resume_from: self.resume_from,
            last_checkpoint: self.last_checkpoint,
            rendezvous_json: self.rendezvous_json,
            created_at_ms: self.created_at_ms,
            finished_at_ms: self.finished_at_ms,
            error: self.error,
            ranks,
        })
    }
}

/// Reads a row of `SELECT rank, worker_id, device_index, task_id`.
fn placement_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RankPlacement> {
    Ok(RankPlacement { rank: r.get(0)?, worker_id: r.get(1)?, device_index: r.get(2)?, task_id: r.get(3)? })
}

fn load_attempt(conn: &Connection, id: &str) -> Result<Attempt> {
    let sql = format!("SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE id = ?1");
    let raw = conn.prepare_cached(&sql)?.query_row([id], RawAttempt::from_row).optional()?;
    let raw = raw.ok_or_else(|| Error::AttemptNotFound(id.to_owned()))?;
    let mut statement = conn.prepare_cached(
        "SELECT rank, worker_id, device_index, task_id FROM attempt_ranks WHERE attempt_id = ?1 ORDER BY rank",
    )?;
    let ranks = statement.query_map([id], placement_from_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
    raw.into_attempt(ranks)
}

/// Every live attempt with its ranks in two statements, whatever their number
/// (the scheduler asks every pass).
fn load_live_attempts(conn: &Connection) -> Result<Vec<Attempt>> {
    let mut ranks: std::collections::HashMap<String, Vec<RankPlacement>> = std::collections::HashMap::new();
    let mut statement = conn.prepare_cached(
        "SELECT r.rank, r.worker_id, r.device_index, r.task_id, r.attempt_id FROM attempt_ranks r \
         JOIN attempts a ON a.id = r.attempt_id WHERE a.state IN ('pending', 'running') ORDER BY r.attempt_id, r.rank",
    )?;
    let rows = statement.query_map([], |r| Ok((r.get::<_, String>(4)?, placement_from_row(r)?)))?;
    for row in rows {
        let (attempt_id, placement) = row?;
        ranks.entry(attempt_id).or_default().push(placement);
    }
    let sql = format!(
        "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE state IN ('pending', 'running') ORDER BY created_at_ms, id"
    );
    let mut statement = conn.prepare_cached(&sql)?;
    let raws = statement.query_map([], RawAttempt::from_row)?;
    raws.map(|raw| {
        let raw = raw?;
        let placed = ranks.remove(&raw.id).unwrap_or_default();
        raw.into_attempt(placed)
    })
    .collect()
}
