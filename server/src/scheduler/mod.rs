//! The scheduler: moves jobs through their stages. It places each worker stage's
//! ranks as one gang, relays rendezvous records, runs `decide` itself, advances
//! a job when every rank finished, retries a failed stage from its last
//! checkpoint, and stops the ranks of cancelled jobs.
//!
//! The store is the truth; the scheduler's memory only holds what a restart may
//! lose without harm (which ranks finished, rendezvous parts): an attempt it no
//! longer knows is re-attached when its workers report the ranks alive, and
//! otherwise failed and retried.

pub mod decide;
pub mod links;
pub mod placement;
pub mod rendezvous;
mod reports;
pub mod wake;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use scop_core::job_dir::JobDir;
use scop_core::spec::{DeviceKind, JobSpec, ResourcesSpec};
use tokio::sync::mpsc;
use tokio::time::Instant;

pub use self::links::WorkerLinks;
use self::rendezvous::Transport;
pub use self::reports::RankReport;
pub use self::wake::Wake;
use crate::artifacts::{ArtifactStore, LocalArtifacts};
use crate::domain::{
    Assignment, Attempt, Job, JobState, NewAttempt, NewJob, Stage, StagePlan, WorkerCommand, WorkerState,
};
use crate::error::{Error, Result};
use crate::shutdown::Shutdown;
use crate::store::{AttemptOutcome, NewBranch, Store, now_ms};

/// Rank reports buffered between the worker port and the scheduler.
pub const REPORTS: usize = 1024;
/// How often the scheduler looks for work when nothing woke it (lost workers,
/// the restart grace period, anything a wake-up missed).
const BACKSTOP: Duration = Duration::from_secs(1);
/// The shortest time between two passes, so a burst of submissions or
/// connecting workers is handled in a few passes rather than one each.
const DEBOUNCE: Duration = Duration::from_millis(20);

/// What one dispatched attempt is waiting for.
#[derive(Debug)]
struct Dispatched {
    attempt: Attempt,
    /// How its ranks talk, from the spec's `resources.backend`.
    transport: Transport,
    /// The spec's resources, whose timeouts the records carry.
    resources: ResourcesSpec,
    job_token: String,
    /// Rendezvous parts reported so far, by rank (empty when not needed).
    parts: BTreeMap<u32, String>,
    /// Ranks that finished, with rank 0's metrics and artifacts kept.
    finished: HashSet<u32>,
    metrics: BTreeMap<String, f64>,
    artifacts: Vec<crate::domain::Artifact>,
    /// The spec's `resources.stage_timeout`: how long the stage may go without progress.
    stage_timeout: Option<Duration>,
}

/// The scheduler's state; [`Scheduler::run`] drives it.
#[derive(Debug)]
pub struct Scheduler {
    store: Store,
    links: WorkerLinks,
    artifacts: LocalArtifacts,
    dispatched: HashMap<String, Dispatched>,
    /// Live attempts found at start-up that no worker has claimed yet, with the
    /// ranks claimed so far; failed and retried after the grace period.
    orphans: HashMap<String, HashSet<u32>>,
    grace_until: Instant,
    wake: Wake,
    /// Tasks of tracked attempts missing from their worker's last heartbeats, with the count.
    missing: HashMap<String, u32>,
    /// The parsed specs of the jobs being moved, by job id: a spec (validated
    /// at submission) is parsed once by this process, not on every pass.
    specs: HashMap<String, Arc<JobSpec>>,
}

impl Scheduler {
    /// A scheduler over `store`; `grace` is how long live attempts found at
    /// start-up wait for their workers to reconnect (the heartbeat timeout).
    pub async fn new(
        store: Store,
        links: WorkerLinks,
        artifacts: LocalArtifacts,
        grace: Duration,
        wake: Wake,
    ) -> Result<Self> {
        let orphans = store.live_attempts().await?.into_iter().map(|a| (a.id, HashSet::new())).collect();
        Ok(Scheduler {
            store,
            links,
            artifacts,
            dispatched: HashMap::new(),
            orphans,
            grace_until: Instant::now() + grace,
            wake,
            missing: HashMap::new(),
            specs: HashMap::new(),
        })
    }

    /// Schedules until shutdown: on every rank report, when woken, and on a
    /// slow backstop tick.
    pub async fn run(mut self, mut reports: mpsc::Receiver<RankReport>, mut shutdown: Shutdown) {
        let mut ticker = tokio::time::interval(BACKSTOP);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let wake = self.wake.clone();
        loop {
            let pass = tokio::select! {
                report = reports.recv() => match report {
                    Some(report) => {
                        if let Err(error) = self.on_report(report).await {
                            tracing::warn!(%error, "rank report not applied");
                        }
                        false
                    }
                    None => return,
                },
                () = wake.woken() => {
                    tokio::time::sleep(DEBOUNCE).await;
                    true
                }
                _ = ticker.tick() => true,
                () = shutdown.wait() => return,
            };
            if pass {
                if let Err(error) = self.tick().await {
                    tracing::error!(%error, "scheduling pass failed");
                }
                ticker.reset();
            }
        }
    }

    /// One scheduling pass. It reads the workers and the live attempts once
    /// (again only after failing some), and skips queued jobs when no slot is free.
    pub async fn tick(&mut self) -> Result<()> {
        let mut workers = self.store.list_workers(true).await?;
        let mut live = self.store.live_attempts().await?;
        let live_ids: HashSet<&str> = live.iter().map(|a| a.id.as_str()).collect();

        // Attempts that ended behind our back (a cancelled job): stop their ranks.
        let ended: Vec<String> =
            self.dispatched.keys().filter(|id| !live_ids.contains(id.as_str())).cloned().collect();
        for id in ended {
            if let Some(gone) = self.dispatched.remove(&id) {
                self.forget_spec(&gone.attempt.job_id);
                self.cancel_ranks(&gone.attempt, "the job was cancelled");
            }
        }
        self.orphans.retain(|id, _| live_ids.contains(id.as_str()));

        // Ranks on lost workers, and orphans nobody claimed in time, fail their attempt.
        let lost: HashSet<&str> =
            workers.iter().filter(|w| w.state == WorkerState::Lost).map(|w| w.id.as_str()).collect();
        let grace_over = Instant::now() >= self.grace_until;
        let mut failed_any = false;
        for attempt in &live {
            let on_lost = attempt.ranks.iter().find(|r| lost.contains(r.worker_id.as_str()));
            if let Some(rank) = on_lost {
                let reason = format!(
                    "worker {} was lost (no heartbeat) while running rank {}",
                    rank.worker_id, rank.rank
                );
                self.fail(attempt.clone(), reason).await?;
                failed_any = true;
            } else if grace_over && self.orphans.contains_key(&attempt.id) {
                self.orphans.remove(&attempt.id);
                let reason = "the coordinator restarted and no worker reported the ranks alive".to_owned();
                self.fail(attempt.clone(), reason).await?;
                failed_any = true;
            }
        }
        failed_any |= self.fail_stalled().await?;
        if failed_any {
            live = self.store.live_attempts().await?;
            workers = self.store.list_workers(true).await?;
        }

        // Only workers whose stream is attached can be sent their assignments.
        workers.retain(|w| w.state != WorkerState::Lost && self.links.is_attached(&w.id));
        let any_free = [DeviceKind::Cpu, DeviceKind::Cuda]
            .into_iter()
            .any(|kind| !placement::free_slots_of_kind(&workers, &live, kind).is_empty());
        // Running jobs without a live attempt (between stages), then queued jobs
        // when a slot is free: place or decide.
        let busy: HashSet<&str> = live.iter().map(|a| a.job_id.as_str()).collect();
        let mut candidates: Vec<Job> =
            self.store.running_jobs().await?.into_iter().filter(|j| !busy.contains(j.id.as_str())).collect();
        if any_free {
            candidates.extend(self.store.queued_jobs().await?);
        }
        candidates.sort_by_key(|j| std::cmp::Reverse(j.priority));
        // Specs of jobs that are neither live nor waiting here any more are dropped.
        let moving: HashSet<&str> =
            live.iter().map(|a| a.job_id.as_str()).chain(candidates.iter().map(|j| j.id.as_str())).collect();
        self.specs.retain(|id, _| moving.contains(id.as_str()));
        let mut free = live.clone();
        for job in candidates {
            if let Some(attempt) = self.advance(&job, &workers, &free).await? {
                free.push(attempt);
            }
        }
        Ok(())
    }

    /// Moves one job on: decides, finishes, or places its stage's gang when
    /// the slots are free. Returns the attempt it created.
    async fn advance(
        &mut self,
        job: &Job,
        workers: &[crate::domain::Worker],
        live: &[Attempt],
    ) -> Result<Option<Attempt>> {
        let spec = match self.spec_of(job) {
            Ok(spec) => spec,
            Err(error) => {
                self.transition_job(&job.id, JobState::Failed, Some(format!("spec: {error}"))).await?;
                return Ok(None);
            }
        };
        let stage = match job.state {
            JobState::Queued => job.stages.first(),
            JobState::Running(stage) => stage,
            _ => return Ok(None),
        };
        let history = self.store.stage_attempts(&job.id, stage).await?;
        if history.last().is_some_and(|a| a.state == crate::domain::AttemptState::Succeeded) {
            // Finished before a restart, but the job did not move on yet.
            self.next_stage(job, stage).await?;
            return Ok(None);
        }
        if job.state == JobState::Queued && !stage.runs_on_workers() {
            // A line that starts in the coordinator (a sweep's branch starts
            // with decide; a sweep without pretrain or knockoff with sweep).
            if let Err(reason) = self.take_shared_outputs(job).await? {
                return self.fail_job(job, reason).await.map(|()| None);
            }
            let job = match self.transition_job(&job.id, JobState::Running(stage), None).await {
                Ok(job) => job,
                // A cancel won the race.
                Err(Error::Transition { .. }) => return Ok(None),
                Err(other) => return Err(other),
            };
            return Box::pin(self.advance(&job, workers, live)).await;
        }
        if stage == Stage::Decide {
            self.decide(job, &spec).await?;
            return Ok(None);
        }
        if stage == Stage::Sweep {
            self.sweep(job, &spec).await?;
            return Ok(None);
        }
        let world = if stage == Stage::Export { 1 } else { spec.resources.world_size.max(1) };
        let kind = spec.resources.device;
        let free = placement::free_slots_of_kind(workers, live, kind);
        let Some(placed) = placement::place(world, &free) else { return Ok(None) };
        if job.state == JobState::Queued {
            if let Err(reason) = self.take_shared_outputs(job).await? {
                self.fail_job(job, reason).await?;
                return Ok(None);
            }
            self.transition_job(&job.id, JobState::Running(stage), None).await?;
        }
        let resume_from =
            history.iter().rev().find_map(|a| a.last_checkpoint.clone().or(a.resume_from.clone()));
        let new =
            NewAttempt { job_id: job.id.clone(), stage, world_size: world, resume_from, placement: placed };
        let (attempt, _) = self.store.create_attempt(new).await?;
        self.dispatch(job, &spec, attempt.clone()).await?;
        Ok(Some(attempt))
    }

    /// A sweep's last stage. On its first pass it forks one branch job per
    /// candidate (a restart finds the ones it made); later passes wait until
    /// every branch has ended. The sweep then succeeds when any branch did —
    /// the branches that failed are in its events and in the branch jobs —
    /// and fails, naming each branch's reason, when none did.
    async fn sweep(&mut self, job: &Job, spec: &JobSpec) -> Result<()> {
        let candidates = spec.candidates();
        let mut branches = self.store.branches(&job.id).await?;
        if branches.len() < candidates.len() {
            let mut new = Vec::with_capacity(candidates.len());
            for name in candidates.iter().filter_map(|c| c.name.clone()) {
                let Some(branch) = spec.candidate_spec(&name) else { continue };
                new.push(NewBranch {
                    job: NewJob {
                        stages: StagePlan::branch(&branch),
                        spec_yaml: branch.normalised_yaml(),
                        labels: job.labels.clone(),
                        priority: job.priority,
                        request_id: None,
                        owner: job.owner.clone(),
                        world_size: branch.resources.world_size,
                        name: branch.name.clone().unwrap_or_default(),
                    },
                    candidate: name,
                });
            }
            branches = self.store.fork_branches(&job.id, new).await?;
            tracing::info!(job_id = %job.id, branches = branches.len(), "sweep forked its branches");
            self.wake.wake();
        }
        if branches.iter().any(|b| !b.state.is_terminal()) {
            return Ok(());
        }
        let succeeded = branches.iter().filter(|b| b.state == JobState::Succeeded).count();
        if succeeded > 0 {
            tracing::info!(job_id = %job.id, succeeded, branches = branches.len(), "sweep finished");
            return self.next_stage(job, Stage::Sweep).await;
        }
        let reasons: Vec<String> = branches
            .iter()
            .map(|b| format!("{}: {}", b.candidate, b.error.as_deref().unwrap_or("no reason recorded")))
            .collect();
        self.fail_job(job, format!("every branch of the sweep failed; {}", reasons.join("; "))).await
    }

    /// Before a sweep's branch starts: the outputs of the stages its sweep ran
    /// for it (pretrain, knockoff), into the branch's own job directory, where
    /// its stages look for them. A job that is no branch needs nothing.
    async fn take_shared_outputs(&self, job: &Job) -> Result<std::result::Result<(), String>> {
        let Some(parent) = &job.parent_id else { return Ok(Ok(())) };
        let sweep = self.store.get_job(parent).await?;
        let shared = sweep.stages.shared_with_branches();
        let from = JobDir::new(self.artifacts.job_dir(parent));
        Ok(from
            .share_outputs(&JobDir::new(self.artifacts.job_dir(&job.id)), &shared)
            .map(drop)
            .map_err(|e| format!("the outputs of sweep {parent} cannot be handed to this branch: {e}")))
    }

    /// `job`'s spec, parsed on first use and kept while the job moves.
    fn spec_of(&mut self, job: &Job) -> scop_core::Result<Arc<JobSpec>> {
        if let Some(spec) = self.specs.get(&job.id) {
            return Ok(spec.clone());
        }
        let spec = Arc::new(JobSpec::from_yaml(&job.spec_yaml)?);
        self.specs.insert(job.id.clone(), spec.clone());
        Ok(spec)
    }

    /// Moves `job_id` to `to` in the store. A job that ends (succeeded or failed
    /// here, or found cancelled: the store refuses the move) leaves the spec
    /// cache at once, so the cache holds only jobs that can still move.
    async fn transition_job(&mut self, job_id: &str, to: JobState, reason: Option<String>) -> Result<Job> {
        let moved = self.store.transition_job(job_id, to, reason).await;
        match &moved {
            Ok((job, _)) if job.state.is_terminal() => self.forget_spec(job_id),
            // Refused: the job may have ended behind our back (a cancel won the race).
            Err(Error::Transition { .. }) => self.forget_spec(job_id),
            _ => {}
        }
        moved.map(|(job, _)| job)
    }

    /// Drops `job_id`'s cached spec.
    fn forget_spec(&mut self, job_id: &str) {
        self.specs.remove(job_id);
    }

    /// Sends every rank its assignment.
    async fn dispatch(&mut self, job: &Job, spec: &JobSpec, attempt: Attempt) -> Result<()> {
        let kind = spec.resources.device;
        let job_token = crate::secret::random_hex(16)
            .map_err(|source| Error::Io { path: "/dev/urandom".into(), source })?;
        let output = self.artifacts.job_dir(&job.id);
        // The stages after decide are handed the plan with their assignment.
        let plan = if attempt.stage > Stage::Decide {
            match JobDir::new(&output).read_plan() {
                Ok(plan) => Some(plan),
                Err(error) => {
                    let reason = format!("the plan for {} cannot be read: {error}", attempt.stage);
                    self.fail(attempt, reason).await?;
                    return Ok(());
                }
            }
        } else {
            None
        };
        let transport = Transport::of(&spec.resources, attempt.stage, attempt.world_size);
        let solo = rendezvous::single(transport, attempt.world_size, &job_token, &spec.resources);
        for rank in &attempt.ranks {
            let assign = Assignment {
                task_id: rank.task_id.clone(),
                job_id: job.id.clone(),
                stage: attempt.stage,
                spec_yaml: job.spec_yaml.clone(),
                rank: rank.rank,
                world_size: attempt.world_size,
                rendezvous: solo.clone(),
                resume_from: attempt.resume_from.clone(),
                attempt: attempt.number,
                checkpoint_dir: output.clone(),
                device: kind,
                device_index: rank.device_index,
                plan: plan.clone(),
            };
            if !self.links.send(&rank.worker_id, WorkerCommand::Assign(Box::new(assign))) {
                let reason =
                    format!("worker {} is unreachable; rank {} was not assigned", rank.worker_id, rank.rank);
                self.fail(attempt, reason).await?;
                return Ok(());
            }
        }
        let attempt = self.store.mark_attempt_running(&attempt.id).await?;
        tracing::info!(job_id = %job.id, stage = %attempt.stage, attempt = attempt.number, world = attempt.world_size, "stage dispatched");
        self.track(attempt, transport, spec.resources.clone(), job_token);
        Ok(())
    }

    fn track(&mut self, attempt: Attempt, transport: Transport, resources: ResourcesSpec, job_token: String) {
        let stage_timeout = resources.stage_timeout;
        let entry = Dispatched {
            attempt,
            transport,
            resources,
            job_token,
            parts: BTreeMap::new(),
            finished: HashSet::new(),
            metrics: BTreeMap::new(),
            artifacts: Vec::new(),
            stage_timeout: stage_timeout.map(Duration::from_secs),
        };
        self.dispatched.insert(entry.attempt.id.clone(), entry);
    }

    /// Fails the tracked attempts whose job has had no event (progress,
    /// evaluation, statistics, a state change) for longer than the spec's
    /// `resources.stage_timeout`. True when it failed any.
    async fn fail_stalled(&mut self) -> Result<bool> {
        let timed: Vec<(Attempt, Duration)> = self
            .dispatched
            .values()
            .filter_map(|d| d.stage_timeout.map(|t| (d.attempt.clone(), t)))
            .collect();
        let mut failed = false;
        for (attempt, timeout) in timed {
            let job = self.store.get_job(&attempt.job_id).await?;
            let last = job.updated_at_ms.max(attempt.created_at_ms);
            let quiet_ms = now_ms() - last;
            if quiet_ms > i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX) {
                let reason = format!(
                    "stage {} made no progress for {} s (resources.stage_timeout: {})",
                    attempt.stage,
                    quiet_ms / 1000,
                    timeout.as_secs()
                );
                self.fail(attempt, reason).await?;
                failed = true;
            }
        }
        Ok(failed)
    }

    /// Runs the decision in the coordinator and moves on to finetune. It
    /// decides only from the final epoch of the scoring stage (knockoff, or
    /// score for criteria other than SCOP) of the attempt that succeeded;
    /// anything else, and a plan that cannot be written, fails the job with
    /// the reason.
    async fn decide(&mut self, job: &Job, spec: &JobSpec) -> Result<()> {
        let scoring = job.stages.scoring();
        // A sweep's branch that scores by knockoff decides from its sweep's knockoff.
        let source = match &job.parent_id {
            Some(parent) if !job.stages.contains(scoring) => parent.clone(),
            _ => job.id.clone(),
        };
        let attempts = self.store.stage_attempts(&source, scoring).await?;
        let succeeded = attempts.iter().rev().find(|a| a.state == crate::domain::AttemptState::Succeeded);
        let received = self.store.statistics_sources(&source).await?;
        let final_epoch = spec.final_statistics_epoch();
        if let Err(reason) = decide::check_final_statistics(scoring, final_epoch, succeeded, &received) {
            return self.fail_job(job, reason).await;
        }
        let Some((epoch, units)) = self.store.score_statistics(&source, Some(final_epoch)).await? else {
            let reason = format!("decide: the score statistics of {scoring} epoch {final_epoch} are gone");
            return self.fail_job(job, reason).await;
        };
        let started = Instant::now();
        match decide::decide(&job.id, spec, epoch, units, now_ms()) {
            Ok((plan, record)) => {
                if let Err(error) = decide::write_plan(&self.artifacts.job_dir(&job.id), &plan) {
                    return self.fail_job(job, format!("decide: writing the plan failed: {error}")).await;
                }
                self.store.save_plan(record, started.elapsed().as_secs_f64()).await?;
                tracing::info!(job_id = %job.id, epoch, "plan decided");
                self.next_stage(job, Stage::Decide).await
            }
            Err(error) => self.fail_job(job, error.to_string()).await,
        }
    }

    /// Fails a job from the scheduler (a cancel that won the race is left alone).
    async fn fail_job(&mut self, job: &Job, reason: String) -> Result<()> {
        tracing::warn!(job_id = %job.id, %reason, "job failed");
        match self.transition_job(&job.id, JobState::Failed, Some(reason)).await {
            Err(Error::Transition { .. }) => Ok(()),
            other => other.map(drop),
        }
    }

    async fn next_stage(&mut self, job: &Job, stage: Stage) -> Result<()> {
        let to = match job.stages.next(stage) {
            Some(next) => JobState::Running(next),
            None => JobState::Succeeded,
        };
        match self.transition_job(&job.id, to, None).await {
            // A cancel won the race; nothing to move on.
            Err(Error::Transition { .. }) => Ok(()),
            other => other.map(drop),
        }
    }

    /// Fails an attempt, stops its other ranks, and fails the job when no
    /// restart is left (`max_restarts` retries after the first attempt).
    async fn fail(&mut self, attempt: Attempt, reason: String) -> Result<()> {
        self.fail_attempt(attempt, reason, false).await
    }

    /// Fails an attempt whose rank classed the failure as permanent (missing or
    /// malformed data, a spec the worker rejects, ...): the job fails now,
    /// whatever `max_restarts` says, since every retry would fail alike.
    async fn fail_permanently(&mut self, attempt: Attempt, reason: String) -> Result<()> {
        self.fail_attempt(attempt, reason, true).await
    }

    async fn fail_attempt(&mut self, attempt: Attempt, reason: String, permanent: bool) -> Result<()> {
        self.dispatched.remove(&attempt.id);
        for rank in &attempt.ranks {
            self.missing.remove(&rank.task_id);
        }
        self.cancel_ranks(&attempt, &reason);
        let job = self.store.get_job(&attempt.job_id).await?;
        let max_restarts = self.spec_of(&job).map(|s| s.max_restarts).unwrap_or(0);
        let retrying = !permanent && attempt.number <= max_restarts;
        tracing::warn!(job_id = %job.id, stage = %attempt.stage, attempt = attempt.number, retrying, %reason, "attempt failed");
        match self
            .store
            .finish_attempt(&attempt.id, AttemptOutcome::Failed { reason: reason.clone(), retrying })
            .await
        {
            Err(Error::AttemptEnded { .. }) => return Ok(()),
            other => other?,
        };
        if !retrying {
            let reason = if permanent {
                format!("stage {} failed permanently (not retried): {reason}", attempt.stage)
            } else {
                format!("stage {} failed {} times; last: {reason}", attempt.stage, attempt.number)
            };
            match self.transition_job(&job.id, JobState::Failed, Some(reason)).await {
                Err(Error::Transition { .. }) => {}
                other => drop(other?),
            }
        }
        Ok(())
    }

    fn cancel_ranks(&self, attempt: &Attempt, reason: &str) {
        for rank in &attempt.ranks {
            let cancel = WorkerCommand::Cancel { task_id: rank.task_id.clone(), reason: reason.to_owned() };
            self.links.send(&rank.worker_id, cancel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Device, NewJob, StagePlan, WorkerHello};
    use crate::store::test_support::temp_store;

    const SPEC: &str = "model: {arch: resnet20, num_classes: 10}\n\
                        data: {format: idx, root: data}\n\
                        knockoff: {epochs: 1, batch_size: 8}\n\
                        prune: {rate: 0.5}\n\
                        finetune: {epochs: 1, batch_size: 8}\n";

    async fn scheduler() -> (Scheduler, Store, tempfile::TempDir) {
        let (store, dir) = temp_store().await;
        let artifacts = LocalArtifacts::new(dir.path().join("artifacts"));
        let scheduler =
            Scheduler::new(store.clone(), WorkerLinks::default(), artifacts, Duration::ZERO, Wake::default())
                .await
                .unwrap();
        (scheduler, store, dir)
    }

    /// A job moved by hand up to `Running(stage)`.
    async fn job_at(store: &Store, stage: Stage) -> Job {
        let new = NewJob {
            spec_yaml: SPEC.into(),
            stages: StagePlan::from_stored("knockoff,decide,finetune,export").unwrap(),
            labels: BTreeMap::new(),
            priority: 0,
            request_id: None,
            owner: "alice".into(),
            world_size: 1,
            name: String::new(),
        };
        let (job, _) = store.submit_job(new).await.unwrap();
        for s in [Stage::Knockoff, Stage::Decide, Stage::Finetune, Stage::Export] {
            if s > stage {
                break;
            }
            store.transition_job(&job.id, JobState::Running(s), None).await.unwrap();
        }
        store.get_job(&job.id).await.unwrap()
    }

    #[tokio::test]
    async fn a_job_that_succeeds_leaves_the_spec_cache_in_the_same_pass() {
        let (mut scheduler, store, _dir) = scheduler().await;
        let worker = store
            .register_worker(WorkerHello {
                worker_id: None,
                hostname: "node-a".into(),
                agent_version: "0.1.0".into(),
                devices: vec![Device { kind: "cpu".into(), index: 0, name: "cpu".into(), memory_bytes: 0 }],
                cpu_cores: 1,
            })
            .await
            .unwrap();
        let job = job_at(&store, Stage::Export).await;
        // The export finished, but the job has not moved on yet (as after a restart).
        let new = NewAttempt {
            job_id: job.id.clone(),
            stage: Stage::Export,
            world_size: 1,
            resume_from: None,
            placement: vec![(worker.id.clone(), 0)],
        };
        let (attempt, _) = store.create_attempt(new).await.unwrap();
        store.mark_attempt_running(&attempt.id).await.unwrap();
        store
            .finish_attempt(&attempt.id, AttemptOutcome::Succeeded { metrics: BTreeMap::new() })
            .await
            .unwrap();

        scheduler.tick().await.unwrap();
        assert_eq!(store.get_job(&job.id).await.unwrap().state, JobState::Succeeded);
        assert!(!scheduler.specs.contains_key(&job.id), "the finished job's spec is still cached");
    }

    #[tokio::test]
    async fn a_job_that_fails_leaves_the_spec_cache_and_a_moving_one_stays() {
        let (mut scheduler, store, _dir) = scheduler().await;
        // Decide without any knockoff statistics fails the job.
        let failing = job_at(&store, Stage::Decide).await;
        // Waits for a worker that never comes, so it stays cached.
        let waiting = job_at(&store, Stage::Knockoff).await;

        scheduler.tick().await.unwrap();
        assert_eq!(store.get_job(&failing.id).await.unwrap().state, JobState::Failed);
        assert!(!scheduler.specs.contains_key(&failing.id), "the failed job's spec is still cached");
        assert!(scheduler.specs.contains_key(&waiting.id), "a job still moving keeps its spec");
    }
}
