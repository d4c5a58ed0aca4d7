//! Numbered task events applied exactly once: the counter of the rank's last
//! applied sequence number moves in the same transaction as the event's
//! effect, so an event an agent sends again (after a reconnect or a restart)
//! is recognised and skipped, and one that failed to apply leaves nothing
//! behind and is applied when it comes again.

use rusqlite::{OptionalExtension, params};

use super::events::append_in;
use super::plans::statistics_in;
use super::{Store, now_ms};
use crate::domain::{EventKind, JobEvent, Stage, UnitStatistics};
use crate::error::{Error, Result};

/// What one task event does to the store.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskEffect {
    /// Only counted: the scheduler acts on it (a finish, a failure, a rendezvous part).
    Counted,
    /// A job event (progress, an evaluation).
    Event { job_id: String, kind: EventKind },
    /// One knockoff epoch's statistics, with their event.
    Statistics { job_id: String, attempt_id: String, stage: Stage, epoch: u32, units: Vec<UnitStatistics> },
    /// The attempt's latest checkpoint (ignored once the attempt ended).
    Checkpoint { attempt_id: String, path: String },
}

/// What became of a task event.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// Applied now, with the job event it appended, if any.
    Now(Option<JobEvent>),
    /// Its sequence number was applied before: a repeat, skipped.
    Repeat,
    /// An earlier number is missing (it failed to apply): not applied; the
    /// agent sends it again from the gap.
    Gap { expected: u64 },
}

impl Store {
    /// Applies `effect` for task `task_id`'s event `sequence` (from 1) unless
    /// that number was applied already; 0 applies it unnumbered. The counter
    /// and the effect commit together.
    pub async fn apply_task_event(
        &self,
        task_id: &str,
        sequence: u64,
        effect: TaskEffect,
    ) -> Result<Applied> {
        let task_id = task_id.to_owned();
        let applied = self
            .call(move |conn| {
                let tx = conn.transaction()?;
                if sequence > 0 {
                    let last: Option<u64> = tx
                        .prepare_cached("SELECT events_applied FROM attempt_ranks WHERE task_id = ?1")?
                        .query_row([&task_id], |r| r.get(0))
                        .optional()?;
                    let last = last.ok_or_else(|| Error::AttemptNotFound(task_id.clone()))?;
                    if sequence <= last {
                        return Ok(Applied::Repeat);
                    }
                    if sequence > last + 1 {
                        return Ok(Applied::Gap { expected: last + 1 });
                    }
                    tx.prepare_cached("UPDATE attempt_ranks SET events_applied = ?2 WHERE task_id = ?1")?
                        .execute(params![task_id, sequence])?;
                }
                let event = match effect {
                    TaskEffect::Counted => None,
                    TaskEffect::Event { job_id, kind } => Some(append_in(&tx, &job_id, kind, now_ms())?),
                    TaskEffect::Statistics { job_id, attempt_id, stage, epoch, units } => {
                        Some(statistics_in(&tx, &job_id, &attempt_id, stage, epoch, &units)?)
                    }
                    TaskEffect::Checkpoint { attempt_id, path } => {
                        tx.prepare_cached(
                            "UPDATE attempts SET last_checkpoint = ?2 WHERE id = ?1 AND state IN ('pending', 'running')",
                        )?
                        .execute(params![attempt_id, path])?;
                        None
                    }
                };
                tx.commit()?;
                Ok(Applied::Now(event))
            })
            .await?;
        if let Applied::Now(Some(event)) = &applied {
            self.hub().notify(&event.job_id, event.sequence);
        }
        Ok(applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Device, NewAttempt, NewJob, StagePlan, WorkerHello};
    use crate::store::test_support::temp_store;

    #[tokio::test]
    async fn each_numbered_event_is_applied_once_and_in_order() {
        let (store, _dir) = temp_store().await;
        let new_job = NewJob {
            spec_yaml: "model: {arch: resnet20, num_classes: 10}\n".into(),
            stages: StagePlan::from_stored("knockoff,decide,finetune,export").unwrap(),
            labels: Default::default(),
            priority: 0,
            request_id: None,
            owner: "alice".into(),
            world_size: 1,
            name: String::new(),
        };
        let (job, _) = store.submit_job(new_job).await.unwrap();
        let hello = WorkerHello {
            worker_id: None,
            hostname: "w".into(),
            agent_version: "t".into(),
            devices: vec![Device { kind: "cpu".into(), index: 0, name: "cpu".into(), memory_bytes: 0 }],
            cpu_cores: 1,
        };
        let worker = store.register_worker(hello).await.unwrap();
        store.transition_job(&job.id, crate::domain::JobState::Running(Stage::Knockoff), None).await.unwrap();
        let new = NewAttempt {
            job_id: job.id.clone(),
            stage: Stage::Knockoff,
            world_size: 1,
            resume_from: None,
            placement: vec![(worker.id.clone(), 0)],
        };
        let (attempt, _) = store.create_attempt(new).await.unwrap();
        let task = attempt.ranks[0].task_id.clone();
        let checkpoint =
            |path: &str| TaskEffect::Checkpoint { attempt_id: attempt.id.clone(), path: path.to_owned() };

        assert!(matches!(
            store.apply_task_event(&task, 1, checkpoint("c1")).await.unwrap(),
            Applied::Now(None)
        ));
        // Sent again after a reconnect: skipped, the later checkpoint is not overwritten.
        assert!(matches!(
            store.apply_task_event(&task, 2, checkpoint("c2")).await.unwrap(),
            Applied::Now(None)
        ));
        assert_eq!(store.apply_task_event(&task, 1, checkpoint("c1")).await.unwrap(), Applied::Repeat);
        assert_eq!(store.get_attempt(&attempt.id).await.unwrap().last_checkpoint.as_deref(), Some("c2"));
        // A gap (number 3 never applied) is refused until 3 comes.
        assert_eq!(
            store.apply_task_event(&task, 4, checkpoint("c4")).await.unwrap(),
            Applied::Gap { expected: 3 }
        );
        assert_eq!(store.get_attempt(&attempt.id).await.unwrap().last_checkpoint.as_deref(), Some("c2"));
        assert!(matches!(
            store.apply_task_event(&task, 3, checkpoint("c3")).await.unwrap(),
            Applied::Now(None)
        ));
        // Unnumbered events are applied as they come.
        assert!(matches!(
            store.apply_task_event(&task, 0, checkpoint("c0")).await.unwrap(),
            Applied::Now(None)
        ));
        assert_eq!(store.get_attempt(&attempt.id).await.unwrap().last_checkpoint.as_deref(), Some("c0"));
        let error = store.apply_task_event("nope", 1, TaskEffect::Counted).await.unwrap_err();
        assert!(matches!(error, Error::AttemptNotFound(_)), "{error}");
    }
}
