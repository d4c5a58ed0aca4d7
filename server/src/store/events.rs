//! The per-job event log: appending inside a transaction, and reading from a
//! sequence number on for `WatchJob`.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Store, now_ms};
use crate::domain::{EventKind, JobEvent, JobState, Stage};
use crate::error::{Error, Result};

/// Events one `events_since` call returns at most.
pub const EVENT_PAGE: u32 = 256;

impl Store {
    /// Appends one event that is not a state change (progress, errors, …).
    /// Refused once the job has ended: the terminal state change stays last.
    pub async fn append_event(&self, job_id: &str, kind: EventKind) -> Result<JobEvent> {
        let job_id = job_id.to_owned();
        let event = self
            .call(move |conn| {
                let tx = conn.transaction()?;
                let event = append_in(&tx, &job_id, kind, now_ms())?;
                tx.commit()?;
                Ok(event)
            })
            .await?;
        self.hub().notify(&event.job_id, event.sequence);
        Ok(event)
    }

    /// Events of `job_id` with `sequence >= from`, oldest first, at most
    /// [`EVENT_PAGE`], and whether the job had ended when they were read (then
    /// the returned events, if fewer than a page, run up to its last one).
    pub async fn events_since(&self, job_id: &str, from: u64) -> Result<(Vec<JobEvent>, bool)> {
        let job_id = job_id.to_owned();
        self.read(move |conn| {
            let state: Option<String> = conn
                .prepare_cached("SELECT state FROM jobs WHERE id = ?1")?
                .query_row([&job_id], |r| r.get(0))
                .optional()?;
            let state = state.ok_or_else(|| Error::JobNotFound(job_id.clone()))?;
            let ended = matches!(state.as_str(), "succeeded" | "failed" | "cancelled");
            let mut statement = conn.prepare_cached(
                "SELECT sequence, time_ms, body FROM events WHERE job_id = ?1 AND sequence >= ?2 \
                 ORDER BY sequence LIMIT ?3",
            )?;
            let rows = statement.query_map(params![job_id, from, EVENT_PAGE], |r| {
                Ok((r.get::<_, u64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?))
            })?;
            let mut events = Vec::new();
            for row in rows {
                let (sequence, time_ms, body) = row?;
                let kind = serde_json::from_str(&body)
                    .map_err(|e| Error::corrupt("events", format!("{job_id}#{sequence}"), e))?;
                events.push(JobEvent { job_id: job_id.clone(), sequence, time_ms, kind });
            }
            Ok((events, ended))
        })
        .await
    }
}

/// Appends an event inside the caller's transaction: takes the job's next
/// sequence number and bumps `last_sequence`, so sequences have no gaps.
pub(super) fn append_in(conn: &Connection, job_id: &str, kind: EventKind, now: i64) -> Result<JobEvent> {
    let row: Option<(String, Option<String>, u64)> = conn
        .prepare_cached("SELECT state, stage, last_sequence FROM jobs WHERE id = ?1")?
        .query_row([job_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let (state, stage, last) = row.ok_or_else(|| Error::JobNotFound(job_id.to_owned()))?;
    let stage = stage.as_deref().and_then(Stage::parse);
    let state = JobState::from_stored(&state, stage)
        .ok_or_else(|| Error::corrupt("jobs", job_id, format!("state {state:?}")))?;
    if state.is_terminal() {
        return Err(Error::JobEnded { job_id: job_id.to_owned(), state });
    }
    let sequence = last + 1;
    let body = serde_json::to_string(&kind).map_err(|e| Error::corrupt("events", job_id, e))?;
    conn.prepare_cached(
        "INSERT INTO events (job_id, sequence, time_ms, kind, body) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![job_id, sequence, now, kind.name(), body])?;
    conn.prepare_cached("UPDATE jobs SET last_sequence = ?2, updated_at_ms = ?3 WHERE id = ?1")?
        .execute(params![job_id, sequence, now])?;
    Ok(JobEvent { job_id: job_id.to_owned(), sequence, time_ms: now, kind })
}
