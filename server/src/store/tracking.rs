//! The MLflow run each tracked job logs to, and how far its events went there,
//! so that a restarted coordinator goes on with the same run from where it was.

use rusqlite::{Connection, OptionalExtension, params};

use super::Store;
use super::jobs::load_job;
use crate::domain::Job;
use crate::error::Result;

/// Jobs one `jobs_to_track` call returns at most.
pub const TRACKING_PAGE: u32 = 64;

/// A job's run in the tracking server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedRun {
    pub job_id: String,
    pub run_id: String,
    pub experiment_id: String,
    /// The run's folder under the tracking server's artifact proxy.
    pub artifact_path: String,
    /// The last event of the job logged to the run.
    pub logged_sequence: u64,
    /// The run got its final status.
    pub ended: bool,
}

impl Store {
    /// Jobs whose events are not all in their run yet, oldest first, each with
    /// its run if it has one: jobs with an open run behind their events, and
    /// jobs without a run that are live or ended at `since_ms` or later (so
    /// jobs that ended before tracking was switched on stay out of it).
    pub async fn jobs_to_track(&self, since_ms: i64) -> Result<Vec<(Job, Option<TrackedRun>)>> {
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT j.id FROM jobs j LEFT JOIN tracking_runs t ON t.job_id = j.id \
                 WHERE (t.job_id IS NOT NULL AND t.ended = 0) \
                    OR (t.job_id IS NULL AND (j.state IN ('queued', 'running') OR j.updated_at_ms >= ?1)) \
                 ORDER BY j.seq LIMIT ?2",
            )?;
            let ids = statement
                .query_map(params![since_ms, TRACKING_PAGE], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut jobs = Vec::with_capacity(ids.len());
            for id in ids {
                let job = load_job(conn, &id)?;
                let run = load_run(conn, &id)?;
                jobs.push((job, run));
            }
            Ok(jobs)
        })
        .await
    }

    /// Remembers the run created for a job; a run already recorded for it wins
    /// (and is returned).
    pub async fn record_tracked_run(&self, run: TrackedRun) -> Result<TrackedRun> {
        self.call(move |conn| {
            conn.prepare_cached(
                "INSERT OR IGNORE INTO tracking_runs (job_id, run_id, experiment_id, artifact_path, \
                 logged_sequence, ended) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                run.job_id,
                run.run_id,
                run.experiment_id,
                run.artifact_path,
                run.logged_sequence,
                run.ended
            ])?;
            Ok(load_run(conn, &run.job_id)?.unwrap_or(run))
        })
        .await
    }

    /// Notes that the job's events up to `sequence` are in its run, and whether
    /// the run got its final status.
    pub async fn advance_tracked_run(&self, job_id: &str, sequence: u64, ended: bool) -> Result<()> {
        let job_id = job_id.to_owned();
        self.call(move |conn| {
            conn.prepare_cached(
                "UPDATE tracking_runs SET logged_sequence = max(logged_sequence, ?2), ended = ?3 \
                 WHERE job_id = ?1",
            )?
            .execute(params![job_id, sequence, ended])?;
            Ok(())
        })
        .await
    }

    /// The job's run, if it has one.
    pub async fn tracked_run(&self, job_id: &str) -> Result<Option<TrackedRun>> {
        let job_id = job_id.to_owned();
        self.read(move |conn| load_run(conn, &job_id)).await
    }
}

fn load_run(conn: &Connection, job_id: &str) -> Result<Option<TrackedRun>> {
    Ok(conn
        .prepare_cached(
            "SELECT run_id, experiment_id, artifact_path, logged_sequence, ended FROM tracking_runs \
             WHERE job_id = ?1",
        )?
        .query_row([job_id], |r| {
            Ok(TrackedRun {
                job_id: job_id.to_owned(),
                run_id: r.get(0)?,
                experiment_id: r.get(1)?,
                artifact_path: r.get(2)?,
                logged_sequence: r.get(3)?,
                ended: r.get(4)?,
            })
        })
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{JobState, NewJob, StagePlan};
    use crate::store::test_support::temp_store;

    fn new_job(name: &str) -> NewJob {
        NewJob {
            spec_yaml: "model: {arch: resnet20}\n".into(),
            stages: StagePlan::from_stored("knockoff,decide,finetune,export").unwrap(),
            labels: Default::default(),
            priority: 0,
            request_id: None,
            owner: "ada".into(),
            world_size: 1,
            name: name.into(),
        }
    }

    fn run(job_id: &str, run_id: &str) -> TrackedRun {
        TrackedRun {
            job_id: job_id.into(),
            run_id: run_id.into(),
            experiment_id: "1".into(),
            artifact_path: format!("1/{run_id}/artifacts"),
            logged_sequence: 0,
            ended: false,
        }
    }

    #[tokio::test]
    async fn a_job_keeps_its_first_run_and_leaves_the_list_once_its_run_ended() {
        let (store, _dir) = temp_store().await;
        let (job, _) = store.submit_job(new_job("a")).await.unwrap();
        let listed = store.jobs_to_track(i64::MAX).await.unwrap();
        assert_eq!(
            listed.iter().map(|(j, r)| (j.id.clone(), r.clone())).collect::<Vec<_>>(),
            [(job.id.clone(), None)]
        );

        let first = store.record_tracked_run(run(&job.id, "r1")).await.unwrap();
        let again = store.record_tracked_run(run(&job.id, "r2")).await.unwrap();
        assert_eq!((first.run_id.as_str(), again.run_id.as_str()), ("r1", "r1"), "one run per job");

        store.advance_tracked_run(&job.id, 5, false).await.unwrap();
        store.advance_tracked_run(&job.id, 3, false).await.unwrap();
        let listed = store.jobs_to_track(i64::MAX).await.unwrap();
        assert_eq!(listed[0].1.as_ref().map(|r| r.logged_sequence), Some(5), "never goes back");

        store.cancel_job(&job.id, "enough".into()).await.unwrap();
        assert_eq!(store.get_job(&job.id).await.unwrap().state, JobState::Cancelled);
        assert_eq!(store.jobs_to_track(i64::MAX).await.unwrap().len(), 1, "its run has not ended");
        store.advance_tracked_run(&job.id, 6, true).await.unwrap();
        assert!(store.jobs_to_track(0).await.unwrap().is_empty());
        assert!(store.tracked_run(&job.id).await.unwrap().unwrap().ended);
    }

    #[tokio::test]
    async fn jobs_that_ended_before_tracking_began_are_left_alone() {
        let (store, _dir) = temp_store().await;
        let (old, _) = store.submit_job(new_job("old")).await.unwrap();
        store.cancel_job(&old.id, "old".into()).await.unwrap();
        let (live, _) = store.submit_job(new_job("live")).await.unwrap();
        let ids = |listed: Vec<(Job, Option<TrackedRun>)>| {
            listed.into_iter().map(|(j, _)| j.id).collect::<Vec<_>>()
        };
        assert_eq!(ids(store.jobs_to_track(i64::MAX).await.unwrap()), std::slice::from_ref(&live.id));
        // Tracking that began before the old job ended sees it too.
        assert_eq!(ids(store.jobs_to_track(0).await.unwrap()), [old.id, live.id]);
    }
}
