//! Score statistics, plans and artifacts: the records of the central decision
//! and of what a job produced, each stored with its event.

use rusqlite::{Connection, OptionalExtension, params};

use super::events::append_in;
use super::jobs::load_job;
use super::{Store, now_ms};
use crate::domain::{Artifact, EventKind, JobEvent, Plan, Stage, UnitStatistics};
use crate::error::{Error, Result};

impl Store {
    /// Stores one epoch's per-unit statistics (replacing that epoch's earlier
    /// ones from a failed attempt) and emits `ScoreStatisticsReceived`.
    pub async fn record_score_statistics(
        &self,
        job_id: &str,
        attempt_id: &str,
        stage: Stage,
        epoch: u32,
        units: Vec<UnitStatistics>,
    ) -> Result<JobEvent> {
        let (job_id, attempt_id) = (job_id.to_owned(), attempt_id.to_owned());
        let event = self
            .call(move |conn| {
                let tx = conn.transaction()?;
                let event = statistics_in(&tx, &job_id, &attempt_id, stage, epoch, &units)?;
                tx.commit()?;
                Ok(event)
            })
            .await?;
        self.hub().notify(&event.job_id, event.sequence);
        Ok(event)
    }

    /// The statistics of `epoch`, or of the latest epoch when `None`; `None`
    /// when the job has none.
    pub async fn score_statistics(
        &self,
        job_id: &str,
        epoch: Option<u32>,
    ) -> Result<Option<(u32, Vec<UnitStatistics>)>> {
        let job_id = job_id.to_owned();
        self.read(move |conn| {
            let epoch = match epoch {
                Some(epoch) => Some(epoch),
                None => conn
                    .prepare_cached("SELECT max(epoch) FROM score_statistics WHERE job_id = ?1")?
                    .query_row([&job_id], |r| r.get::<_, Option<u32>>(0))?,
            };
            let Some(epoch) = epoch else { return Ok(None) };
            let mut statement = conn.prepare_cached(
                "SELECT unit, beta, gamma_abs, score FROM score_statistics WHERE job_id = ?1 AND epoch = ?2 \
                 ORDER BY unit_index",
            )?;
            let rows = statement.query_map(params![job_id, epoch], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                ))
            })?;
            let mut units = Vec::new();
            for row in rows {
                let (unit, beta, gamma_abs, score) = row?;
                let key = format!("{job_id}/{epoch}/{unit}");
                units.push(UnitStatistics {
                    beta: blob_to_floats(&beta)
                        .ok_or_else(|| Error::corrupt("score_statistics", &key, "beta length"))?,
                    gamma_abs: blob_to_floats(&gamma_abs)
                        .ok_or_else(|| Error::corrupt("score_statistics", &key, "gamma_abs length"))?,
                    score: blob_to_floats(&score)
                        .ok_or_else(|| Error::corrupt("score_statistics", &key, "score length"))?,
                    unit,
                });
            }
            Ok(if units.is_empty() { None } else { Some((epoch, units)) })
        })
        .await
    }

    /// Which attempt sent each epoch's statistics, by epoch.
    pub async fn statistics_sources(&self, job_id: &str) -> Result<Vec<(u32, String)>> {
        let job_id = job_id.to_owned();
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT DISTINCT epoch, attempt_id FROM score_statistics WHERE job_id = ?1 ORDER BY epoch",
            )?;
            let rows =
                statement.query_map([&job_id], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// Persists the decided plan with the decide stage's events (`StageStarted`,
    /// `PlanDecided`, `StageFinished` after `seconds`, carrying the params and
    /// FLOPs totals as metrics): one transaction. Returns the `PlanDecided` event.
    pub async fn save_plan(&self, plan: Plan, seconds: f64) -> Result<JobEvent> {
        let (decided, last) = self
            .call(move |conn| {
                let tx = conn.transaction()?;
                let body =
                    serde_json::to_string(&plan).map_err(|e| Error::corrupt("plans", &plan.job_id, e))?;
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO plans (job_id, decided_at_ms, body) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![plan.job_id, plan.decided_at_ms, body])?;
                let now = now_ms();
                let started = EventKind::StageStarted { stage: Stage::Decide, attempt: 1, world_size: 0 };
                append_in(&tx, &plan.job_id, started, now)?;
                let kind = EventKind::PlanDecided {
                    units: u32::try_from(plan.units.len()).unwrap_or(u32::MAX),
                    channels_before: plan.channels_before(),
                    channels_after: plan.channels_after(),
                };
                let decided = append_in(&tx, &plan.job_id, kind, now)?;
                let metrics = plan.totals.map_or_else(Default::default, |t| {
                    [
                        ("params_before", t.params_before),
                        ("params_after", t.params_after),
                        ("flops_before", t.flops_before),
                        ("flops_after", t.flops_after),
                    ]
                    .into_iter()
                    .map(|(name, value)| (name.to_owned(), value as f64))
                    .collect()
                });
                let finished =
                    EventKind::StageFinished { stage: Stage::Decide, attempt: 1, seconds, metrics };
                let last = append_in(&tx, &plan.job_id, finished, now)?;
                tx.commit()?;
                Ok((decided, last))
            })
            .await?;
        self.hub().notify(&last.job_id, last.sequence);
        Ok(decided)
    }

    /// The job's plan; `PlanNotFound` (naming the job's state) before the decision.
    pub async fn get_plan(&self, job_id: &str) -> Result<Plan> {
        let job_id = job_id.to_owned();
        self.read(move |conn| load_plan(conn, &job_id)).await
    }

    /// Records files a stage wrote and emits `ArtifactsReady`.
    pub async fn record_artifacts(
        &self,
        job_id: &str,
        stage: Stage,
        artifacts: Vec<Artifact>,
    ) -> Result<JobEvent> {
        let job_id = job_id.to_owned();
        let event = self
            .call(move |conn| {
                let tx = conn.transaction()?;
                let now = now_ms();
                for artifact in &artifacts {
                    tx.prepare_cached("INSERT OR REPLACE INTO artifacts (job_id, path, kind, stage, size_bytes, created_at_ms) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?.execute(params![job_id, artifact.path, artifact.kind, stage.as_str(), artifact.size_bytes, now],
                    )?;
                }
                let event = append_in(&tx, &job_id, EventKind::ArtifactsReady { stage, artifacts }, now)?;
                tx.commit()?;
                Ok(event)
            })
            .await?;
        self.hub().notify(&event.job_id, event.sequence);
        Ok(event)
    }

    /// Every artifact of a job with the stage that wrote it, by path.
    pub async fn list_artifacts(&self, job_id: &str) -> Result<Vec<(Stage, Artifact)>> {
        let job_id = job_id.to_owned();
        self.read(move |conn| {
            load_job(conn, &job_id)?;
            let mut statement = conn.prepare_cached(
                "SELECT stage, kind, path, size_bytes FROM artifacts WHERE job_id = ?1 ORDER BY path",
            )?;
            let rows = statement.query_map([&job_id], |r| {
                let artifact = Artifact { kind: r.get(1)?, path: r.get(2)?, size_bytes: r.get(3)? };
                Ok((r.get::<_, String>(0)?, artifact))
            })?;
            let mut artifacts = Vec::new();
            for row in rows {
                let (stage, artifact) = row?;
                let stage = Stage::parse(&stage).ok_or_else(|| {
                    Error::corrupt(
                        "artifacts",
                        format!("{job_id}/{}", artifact.path),
                        format!("stage {stage:?}"),
                    )
                })?;
                artifacts.push((stage, artifact));
            }
            Ok(artifacts)
        })
        .await
    }
}

/// Replaces `epoch`'s statistics of `job_id` inside the caller's transaction,
/// with the `ScoreStatisticsReceived` event.
pub(super) fn statistics_in(
    tx: &Connection,
    job_id: &str,
    attempt_id: &str,
    stage: Stage,
    epoch: u32,
    units: &[UnitStatistics],
) -> Result<JobEvent> {
    let now = now_ms();
    tx.prepare_cached("DELETE FROM score_statistics WHERE job_id = ?1 AND epoch = ?2")?
        .execute(params![job_id, epoch])?;
    for (index, unit) in units.iter().enumerate() {
        tx.prepare_cached(
            "INSERT INTO score_statistics (job_id, epoch, unit_index, unit, beta, gamma_abs, attempt_id, \
             received_at_ms, score) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            job_id,
            epoch,
            index,
            unit.unit,
            floats_to_blob(&unit.beta),
            floats_to_blob(&unit.gamma_abs),
            attempt_id,
            now,
            floats_to_blob(&unit.score)
        ])?;
    }
    let units = u32::try_from(units.len()).unwrap_or(u32::MAX);
    append_in(tx, job_id, EventKind::ScoreStatisticsReceived { stage, epoch, units }, now)
}

fn load_plan(conn: &Connection, job_id: &str) -> Result<Plan> {
    let job = load_job(conn, job_id)?;
    let body: Option<String> = conn
        .prepare_cached("SELECT body FROM plans WHERE job_id = ?1")?
        .query_row([job_id], |r| r.get(0))
        .optional()?;
    let body = body.ok_or_else(|| Error::PlanNotFound { job_id: job_id.to_owned(), state: job.state })?;
    serde_json::from_str(&body).map_err(|e| Error::corrupt("plans", job_id, e))
}

fn floats_to_blob(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn blob_to_floats(bytes: &[u8]) -> Option<Vec<f32>> {
    let chunks = bytes.chunks_exact(4);
    if !chunks.remainder().is_empty() {
        return None;
    }
    Some(chunks.map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}
