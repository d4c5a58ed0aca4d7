//! Jobs: submission (idempotent by request id), lookup, filtered paging,
//! state transitions and cancellation — each change one transaction with its event.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::events::append_in;
use super::{Store, new_id, now_ms};
use crate::domain::{EventKind, Job, JobEvent, JobState, NewJob, Stage, StagePlan, StateKind};
use crate::error::{Error, Result};

const JOB_COLUMNS: &str = "id, state, stage, stages, spec_yaml, labels_json, priority, request_id, \
                           created_at_ms, updated_at_ms, error, attempt, last_sequence, seq, owner, name, \
                           parent_id, candidate";

/// Which jobs `list_jobs` returns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobFilter {
    /// Only jobs in this state (whatever their stage).
    pub state: Option<StateKind>,
    /// Only jobs carrying every one of these labels.
    pub labels: BTreeMap<String, String>,
    /// Only jobs submitted by this user.
    pub owner: Option<String>,
    /// Only the branches of this sweep.
    pub parent_id: Option<String>,
}

/// One page of jobs, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPage {
    pub jobs: Vec<Job>,
    /// Pass back as `after` for the next page; `None` on the last page.
    pub next: Option<i64>,
}

/// How many jobs are in each state, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobCounts {
    pub queued: u64,
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
}

impl Store {
    /// Creates a queued job with its first event (`→ queued`). When
    /// `request_id` was used before with the same spec, labels and priority, the
    /// earlier job is returned and `false` says nothing was created.
    pub async fn submit_job(&self, new: NewJob) -> Result<(Job, bool)> {
        let (job, created) = self
            .call(move |conn| {
                let tx = conn.transaction()?;
                if let Some(request_id) = &new.request_id {
                    let existing: Option<String> = tx
                        .prepare_cached("SELECT id FROM jobs WHERE request_id = ?1")?
                        .query_row([request_id], |r| r.get(0))
                        .optional()?;
                    if let Some(id) = existing {
                        let job = load_job(&tx, &id)?;
                        let same = job.spec_yaml == new.spec_yaml
                            && job.labels == new.labels
                            && job.priority == new.priority
                            && job.owner == new.owner;
                        return if same {
                            Ok((job, false))
                        } else {
                            Err(Error::RequestIdReused { request_id: request_id.clone(), job_id: id })
                        };
                    }
                }
                let (id, _) = insert_job_in(&tx, &new, None)?;
                let job = load_job(&tx, &id)?;
                tx.commit()?;
                Ok((job, true))
            })
            .await?;
        if created {
            self.hub().notify(&job.id, job.last_sequence);
        }
        Ok((job, created))
    }

    /// One job by id.
    pub async fn get_job(&self, id: &str) -> Result<Job> {
        let id = id.to_owned();
        self.read(move |conn| load_job(conn, &id)).await
    }

    /// Jobs matching `filter`, newest first, at most `limit`, submitted before
    /// the job at position `after` (from the previous page's `next`).
    pub async fn list_jobs(&self, filter: JobFilter, limit: u32, after: Option<i64>) -> Result<JobPage> {
        self.read(move |conn| {
            let mut sql = format!("SELECT {JOB_COLUMNS} FROM jobs j WHERE 1 = 1");
            let mut values: Vec<rusqlite::types::Value> = Vec::new();
            if let Some(state) = filter.state {
                values.push(state.name().to_owned().into());
                sql.push_str(&format!(" AND j.state = ?{}", values.len()));
            }
            if let Some(owner) = &filter.owner {
                values.push(owner.clone().into());
                sql.push_str(&format!(" AND j.owner = ?{}", values.len()));
            }
            if let Some(parent) = &filter.parent_id {
                values.push(parent.clone().into());
                sql.push_str(&format!(" AND j.parent_id = ?{}", values.len()));
            }
            for (key, value) in &filter.labels {
                values.push(key.clone().into());
                values.push(value.clone().into());
                sql.push_str(&format!(
                    " AND EXISTS (SELECT 1 FROM job_labels l WHERE l.job_id = j.id AND l.key = ?{} AND l.value = ?{})",
                    values.len() - 1,
                    values.len()
                ));
            }
            if let Some(after) = after {
                values.push(after.into());
                sql.push_str(&format!(" AND j.seq < ?{}", values.len()));
            }
            // One extra row tells whether another page exists.
            values.push(i64::from(limit).saturating_add(1).into());
            sql.push_str(&format!(" ORDER BY j.seq DESC LIMIT ?{}", values.len()));
            let mut statement = conn.prepare_cached(&sql)?;
            let rows = statement.query_map(rusqlite::params_from_iter(values), RawJob::from_row)?;
            let mut raws = rows.collect::<rusqlite::Result<Vec<RawJob>>>()?;
            let more = raws.len() > limit as usize;
            raws.truncate(limit as usize);
            let next = if more { raws.last().map(|r| r.seq) } else { None };
            let jobs = raws.into_iter().map(RawJob::into_job).collect::<Result<Vec<Job>>>()?;
            Ok(JobPage { jobs, next })
        })
        .await
    }

    /// Queued jobs in scheduling order: higher priority first, then submission order.
    pub async fn queued_jobs(&self) -> Result<Vec<Job>> {
        self.read(|conn| {
            let sql = format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'queued' ORDER BY priority DESC, seq ASC"
            );
            let mut statement = conn.prepare_cached(&sql)?;
            let raws =
                statement.query_map([], RawJob::from_row)?.collect::<rusqlite::Result<Vec<RawJob>>>()?;
            raws.into_iter().map(RawJob::into_job).collect()
        })
        .await
    }

    /// Running jobs in scheduling order: priority, then submission.
    pub async fn running_jobs(&self) -> Result<Vec<Job>> {
        self.read(|conn| {
            let sql = format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'running' ORDER BY priority DESC, seq ASC"
            );
            let mut statement = conn.prepare_cached(&sql)?;
            let raws =
                statement.query_map([], RawJob::from_row)?.collect::<rusqlite::Result<Vec<RawJob>>>()?;
            raws.into_iter().map(RawJob::into_job).collect()
        })
        .await
    }

    /// Moves a job to `to` if its state machine allows it, with its event, in
    /// one transaction. Also keeps the `stages` table in step.
    pub async fn transition_job(
        &self,
        id: &str,
        to: JobState,
        reason: Option<String>,
    ) -> Result<(Job, JobEvent)> {
        let id = id.to_owned();
        let (job, event) = self
            .call(move |conn| {
                let tx = conn.transaction()?;
                let (job, event) = transition_in(&tx, &id, to, reason)?;
                let parent_event = branch_ended_in(&tx, &job)?;
                tx.commit()?;
                Ok((job, event, parent_event))
            })
            .await
            .map(|(job, event, parent_event)| {
                if let Some((parent, sequence)) = parent_event {
                    self.hub().notify(&parent, sequence);
                }
                (job, event)
            })?;
        self.hub().notify(&job.id, event.sequence);
        Ok((job, event))
    }

    /// Cancels a job that has not ended, with its live attempts and, for a
    /// sweep, every branch that has not ended, all in one transaction; a job
    /// that already ended is returned unchanged.
    pub async fn cancel_job(&self, id: &str, reason: String) -> Result<Job> {
        let id = id.to_owned();
        let (job, events) = self
            .call(move |conn| {
                let tx = conn.transaction()?;
                let job = load_job(&tx, &id)?;
                if job.state.is_terminal() {
                    return Ok((job, Vec::new()));
                }
                let mut events = Vec::new();
                let branches: Vec<String> = tx
                    .prepare_cached(
                        "SELECT id FROM jobs WHERE parent_id = ?1 AND state IN ('queued', 'running') ORDER BY seq",
                    )?
                    .query_map([&id], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                for branch in branches {
                    let why = format!("its sweep {id} was cancelled: {reason}");
                    let (_, event) = cancel_in(&tx, &branch, why)?;
                    events.push((branch, event.sequence));
                }
                let (job, event) = cancel_in(&tx, &id, reason)?;
                events.push((id.clone(), event.sequence));
                if let Some(parent_event) = branch_ended_in(&tx, &job)? {
                    events.push(parent_event);
                }
                tx.commit()?;
                Ok((job, events))
            })
            .await?;
        for (job_id, sequence) in events {
            self.hub().notify(&job_id, sequence);
        }
        Ok(job)
    }

    /// Creates the branches of sweep `parent` that do not exist yet, one queued
    /// job per candidate, in one transaction; a branch that exists (created
    /// before a restart) is kept as it is, and a sweep that has ended gets no
    /// new ones. Returns every branch, in candidate order.
    pub async fn fork_branches(&self, parent: &str, branches: Vec<NewBranch>) -> Result<Vec<Job>> {
        let parent = parent.to_owned();
        let (jobs, created) = self
            .call(move |conn| {
                let tx = conn.transaction()?;
                let sweep = load_job(&tx, &parent)?;
                // A sweep cancelled since the scheduler looked gets no new branches.
                let open = !sweep.state.is_terminal();
                let mut jobs = Vec::with_capacity(branches.len());
                let mut created = Vec::new();
                for branch in branches {
                    let existing: Option<String> = tx
                        .prepare_cached("SELECT id FROM jobs WHERE parent_id = ?1 AND candidate = ?2")?
                        .query_row(params![parent, branch.candidate], |r| r.get(0))
                        .optional()?;
                    let id = match existing {
                        Some(id) => id,
                        None if !open => continue,
                        None => {
                            let sweep = (parent.as_str(), branch.candidate.as_str());
                            let (id, event) = insert_job_in(&tx, &branch.job, Some(sweep))?;
                            created.push((id.clone(), event.sequence));
                            id
                        }
                    };
                    jobs.push(load_job(&tx, &id)?);
                }
                if !created.is_empty() {
                    let names: Vec<&str> = jobs.iter().map(|j| j.candidate.as_str()).collect();
                    let message = format!("{} branch(es) queued: {}", created.len(), names.join(", "));
                    let stage = sweep.stage.unwrap_or(Stage::Sweep);
                    let notice = EventKind::Notice { stage, attempt: 0, message };
                    let event = append_in(&tx, &parent, notice, now_ms())?;
                    created.push((parent.clone(), event.sequence));
                }
                tx.commit()?;
                Ok((jobs, created))
            })
            .await?;
        for (job_id, sequence) in created {
            self.hub().notify(&job_id, sequence);
        }
        Ok(jobs)
    }

    /// The branches of sweep `parent`, in the order they were created.
    pub async fn branches(&self, parent: &str) -> Result<Vec<Job>> {
        let parent = parent.to_owned();
        self.read(move |conn| {
            let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE parent_id = ?1 ORDER BY seq ASC");
            let mut statement = conn.prepare_cached(&sql)?;
            let raws = statement
                .query_map([&parent], RawJob::from_row)?
                .collect::<rusqlite::Result<Vec<RawJob>>>()?;
            raws.into_iter().map(RawJob::into_job).collect()
        })
        .await
    }

    /// What `owner` has queued and running now, for quota admission.
    pub async fn usage_of(&self, owner: &str) -> Result<crate::users::Usage> {
        let owner = owner.to_owned();
        self.read(move |conn| {
            let mut usage = crate::users::Usage::default();
            let mut statement = conn.prepare_cached(
                "SELECT state, count(*), coalesce(sum(world_size), 0) FROM jobs \
                 WHERE owner = ?1 AND state IN ('queued', 'running') GROUP BY state",
            )?;
            let rows = statement.query_map([&owner], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?, r.get::<_, u32>(2)?))
            })?;
            for row in rows {
                let (state, count, slots) = row?;
                if state == "queued" {
                    usage.queued_jobs = count;
                } else {
                    usage.running_jobs = count;
                }
                usage.rank_slots += slots;
            }
            Ok(usage)
        })
        .await
    }

    /// Jobs per state, for metrics.
    pub async fn job_counts(&self) -> Result<JobCounts> {
        self.read(|conn| {
            let mut counts = JobCounts::default();
            let mut statement = conn.prepare_cached("SELECT state, count(*) FROM jobs GROUP BY state")?;
            let rows = statement.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))?;
            for row in rows {
                let (state, count) = row?;
                let slot = match state.as_str() {
                    "queued" => &mut counts.queued,
                    "running" => &mut counts.running,
                    "succeeded" => &mut counts.succeeded,
                    "failed" => &mut counts.failed,
                    "cancelled" => &mut counts.cancelled,
                    other => return Err(Error::corrupt("jobs", other, "unknown state")),
                };
                *slot = count;
            }
            Ok(counts)
        })
        .await
    }
}

/// Inserts a queued job with its labels, its stage rows and its first event
/// (`→ queued`), inside the caller's transaction; `branch_of` is the sweep and
/// candidate of a branch. Returns the new id and the event.
fn insert_job_in(
    conn: &Connection,
    new: &NewJob,
    branch_of: Option<(&str, &str)>,
) -> Result<(String, JobEvent)> {
    let id = new_id();
    let now = now_ms();
    let labels_json = serde_json::to_string(&new.labels).map_err(|e| Error::corrupt("jobs", &id, e))?;
    let (parent_id, candidate) = branch_of.map_or((None, ""), |(sweep, candidate)| (Some(sweep), candidate));
    conn.prepare_cached(
        "INSERT INTO jobs (id, request_id, state, stage, stages, spec_yaml, labels_json, priority, \
         created_at_ms, updated_at_ms, owner, world_size, name, parent_id, candidate) \
         VALUES (?1, ?2, 'queued', NULL, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        id,
        new.request_id,
        new.stages.to_stored(),
        new.spec_yaml,
        labels_json,
        new.priority,
        now,
        new.owner,
        new.world_size,
        new.name,
        parent_id,
        candidate
    ])?;
    for (key, value) in &new.labels {
        conn.prepare_cached("INSERT INTO job_labels (job_id, key, value) VALUES (?1, ?2, ?3)")?
            .execute(params![id, key, value])?;
    }
    for (position, stage) in new.stages.stages().iter().enumerate() {
        conn.prepare_cached(
            "INSERT INTO stages (job_id, stage, position, state) VALUES (?1, ?2, ?3, 'pending')",
        )?
        .execute(params![id, stage.as_str(), position])?;
    }
    let event = append_in(
        conn,
        &id,
        EventKind::StateChanged { from: None, to: JobState::Queued, reason: None },
        now,
    )?;
    Ok((id, event))
}

/// One branch of a sweep, for [`Store::fork_branches`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewBranch {
    pub candidate: String,
    pub job: NewJob,
}

/// Cancels one job that has not ended and its live attempts, inside the caller's transaction.
fn cancel_in(conn: &Connection, id: &str, reason: String) -> Result<(Job, JobEvent)> {
    conn.prepare_cached(
        "UPDATE attempts SET state = 'cancelled', finished_at_ms = ?2, error = ?3 \
         WHERE job_id = ?1 AND state IN ('pending', 'running')",
    )?
    .execute(params![id, now_ms(), reason])?;
    transition_in(conn, id, JobState::Cancelled, Some(reason))
}

/// When `job` is a branch of a sweep that just ended, tells the sweep in a
/// notice (unless the sweep itself has ended). Returns the sweep's id and the
/// notice's sequence, for the caller to wake its watchers after the commit.
fn branch_ended_in(conn: &Connection, job: &Job) -> Result<Option<(String, u64)>> {
    let Some(parent) = &job.parent_id else { return Ok(None) };
    if !job.state.is_terminal() {
        return Ok(None);
    }
    let sweep = load_job(conn, parent)?;
    if sweep.state.is_terminal() {
        return Ok(None);
    }
    let message = match &job.error {
        Some(why) => format!("branch {} ({}) {}: {why}", job.candidate, job.id, job.state),
        None => format!("branch {} ({}) {}", job.candidate, job.id, job.state),
    };
    let notice = EventKind::Notice { stage: sweep.stage.unwrap_or(Stage::Sweep), attempt: 0, message };
    let event = append_in(conn, parent, notice, now_ms())?;
    Ok(Some((parent.clone(), event.sequence)))
}

/// The transition itself, inside the caller's transaction.
pub(super) fn transition_in(
    conn: &Connection,
    id: &str,
    to: JobState,
    reason: Option<String>,
) -> Result<(Job, JobEvent)> {
    let job = load_job(conn, id)?;
    job.state
        .check_transition(to, &job.stages)
        .map_err(|source| Error::Transition { job_id: id.to_owned(), source })?;
    let now = now_ms();
    let event = append_in(
        conn,
        id,
        EventKind::StateChanged { from: Some(job.state), to, reason: reason.clone() },
        now,
    )?;
    let stage = match to {
        JobState::Running(stage) => Some(stage),
        JobState::Queued | JobState::Succeeded | JobState::Failed | JobState::Cancelled => job.stage,
    };
    let error = match to {
        JobState::Failed | JobState::Cancelled => reason,
        JobState::Queued | JobState::Running(_) | JobState::Succeeded => None,
    };
    let attempt = if matches!(to, JobState::Running(_)) { 0 } else { job.attempt };
    conn.prepare_cached(
        "UPDATE jobs SET state = ?2, stage = ?3, error = ?4, attempt = ?5, updated_at_ms = ?6 WHERE id = ?1",
    )?
    .execute(params![id, to.name(), stage.map(Stage::as_str), error, attempt, now])?;
    // The stage that was running ends with the job's new state...
    if let JobState::Running(previous) = job.state {
        let ended = match to {
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Queued | JobState::Running(_) | JobState::Succeeded => "succeeded",
        };
        conn.prepare_cached(
            "UPDATE stages SET state = ?3, finished_at_ms = ?4 WHERE job_id = ?1 AND stage = ?2",
        )?
        .execute(params![id, previous.as_str(), ended, now])?;
    }
    // ...and the next one starts.
    if let JobState::Running(next) = to {
        conn.prepare_cached(
            "UPDATE stages SET state = 'running', started_at_ms = ?3 WHERE job_id = ?1 AND stage = ?2",
        )?
        .execute(params![id, next.as_str(), now])?;
    }
    Ok((load_job(conn, id)?, event))
}

/// Reads one job inside any connection or transaction.
pub(super) fn load_job(conn: &Connection, id: &str) -> Result<Job> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1");
    let raw = conn.prepare_cached(&sql)?.query_row([id], RawJob::from_row).optional()?;
    raw.ok_or_else(|| Error::JobNotFound(id.to_owned()))?.into_job()
}

/// A jobs row before its text columns are parsed.
struct RawJob {
    id: String,
    state: String,
    stage: Option<String>,
    stages: String,
    spec_yaml: String,
    labels_json: String,
    priority: i32,
    request_id: Option<String>,
    created_at_ms: i64,
    updated_at_ms: i64,
    error: Option<String>,
    attempt: u32,
    last_sequence: u64,
    seq: i64,
    owner: String,
    name: String,
    parent_id: Option<String>,
    candidate: String,
}

impl RawJob {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<RawJob> {
        Ok(RawJob {
            id: row.get(0)?,
            state: row.get(1)?,
            stage: row.get(2)?,
            stages: row.get(3)?,
            spec_yaml: row.get(4)?,
            labels_json: row.get(5)?,
            priority: row.get(6)?,
            request_id: row.get(7)?,
            created_at_ms: row.get(8)?,
            updated_at_ms: row.get(9)?,
            error: row.get(10)?,
            attempt: row.get(11)?,
            last_sequence: row.get(12)?,
            seq: row.get(13)?,
            owner: row.get(14)?,
            name: row.get(15)?,
            parent_id: row.get(16)?,
            candidate: row.get(17)?,
        })
    }

    fn into_job(self) -> Result<Job> {
        let stage = match &self.stage {
            Some(name) => Some(
                Stage::parse(name)
                    .ok_or_else(|| Error::corrupt("jobs", &self.id, format!("stage {name:?}")))?,
            ),
            None => None,
        };
        let state = JobState::from_stored(&self.state, stage)
            .ok_or_else(|| Error::corrupt("jobs", &self.id, format!("state {:?}", self.state)))?;
        let stages = StagePlan::from_stored(&self.stages)
            .ok_or_else(|| Error::corrupt("jobs", &self.id, format!("stages {:?}", self.stages)))?;
        let labels =
            serde_json::from_str(&self.labels_json).map_err(|e| Error::corrupt("jobs", &self.id, e))?;
        Ok(Job {
            id: self.id,
            state,
            stage,
            stages,
            spec_yaml: self.spec_yaml,
            labels,
            priority: self.priority,
            request_id: self.request_id,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
            error: self.error,
            attempt: self.attempt,
            last_sequence: self.last_sequence,
            owner: self.owner,
            name: self.name,
            parent_id: self.parent_id,
            candidate: self.candidate,
        })
    }
}
