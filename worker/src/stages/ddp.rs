//! [`GroupReplicas`]: the trainer's [`Replicas`] over a [`Collective`] group, with
//! DDP semantics: rank 0's variables broadcast at the start, gradients averaged in
//! flat ~25 MB buckets, metrics summed, parameters compared once per epoch.

use tch::{Device, Kind, Tensor};

use super::parallel::{ParallelError, Replicas};
use crate::collective::{
    Backend, Checked, Collective, DEFAULT_BUCKET_BYTES, Error, GradBucketer, ReduceOp, check_replicas_agree,
    parameter_fingerprint, strict_checks_requested,
};

/// Data-parallel replicas that synchronise through a collective group.
pub struct GroupReplicas {
    group: Box<dyn Collective>,
    bucket_bytes: usize,
    /// The bucket plan and the positions (in the caller's list) of the gradients it
    /// covers. Rebuilt when that set changes, which happens on every rank alike
    /// since every rank runs the same model code.
    plan: Option<(Vec<usize>, GradBucketer)>,
    /// This rank's parameter fingerprint at the last [`Replicas::check_in_sync`].
    last_fingerprint: Option<u64>,
    /// Time spent averaging gradients since it was last taken.
    allreduce: std::time::Duration,
}

impl std::fmt::Debug for GroupReplicas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupReplicas")
            .field("rank", &self.group.rank())
            .field("world", &self.group.world())
            .field("backend", &self.group.backend())
            .finish()
    }
}

impl GroupReplicas {
    pub fn new(group: Box<dyn Collective>) -> Self {
        Self::with_bucket_bytes(group, DEFAULT_BUCKET_BYTES)
    }

    /// As [`GroupReplicas::new`] with another bucket size (tests use small ones).
    ///
    /// The group is wrapped in [`Checked`] when strict checks are requested
    /// ([`strict_checks_requested`]: debug builds, `cargo xtask test`), so that
    /// every data-parallel run on the CPU obeys NCCL's preconditions.
    pub fn with_bucket_bytes(group: Box<dyn Collective>, bucket_bytes: usize) -> Self {
        let group: Box<dyn Collective> =
            if strict_checks_requested() { Box::new(Checked::new(group)) } else { group };
        Self { group, bucket_bytes, plan: None, last_fingerprint: None, allreduce: std::time::Duration::ZERO }
    }

    /// The fingerprint of this rank's parameters when they were last checked
    /// against the other ranks (the end of the last epoch).
    pub fn last_fingerprint(&self) -> Option<u64> {
        self.last_fingerprint
    }

    /// Where the group's tensors must live.
    pub fn device(&self) -> Device {
        self.group.device()
    }

    /// Whether calls must reach the backend: always with two or more ranks, and
    /// with NCCL even alone (a one-rank communicator exercises the GPU path). A
    /// one-rank TCP group has nothing to exchange, and its tensors may be on a GPU
    /// that the ring does not reach.
    fn exchanges(&self) -> bool {
        self.group.world() > 1 || self.group.backend() == Backend::Nccl
    }
}

/// The tensors' positions grouped by kind (stable within a kind), so that a
/// mixed list (f32 parameters and i64 BN counters) packs into few buckets.
fn grouped_by_kind(tensors: &[Tensor]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by_key(|&i| format!("{:?}", tensors[i].kind()));
    order
}

/// Turns a collective error into the trainer's message; a lost rank is named first.
fn explain(what: &str, e: &Error) -> ParallelError {
    match e.lost_rank() {
        Some(rank) => format!("{what}: lost rank {rank}: {e}"),
        None => format!("{what}: {e}"),
    }
}

impl Replicas for GroupReplicas {
    fn rank(&self) -> usize {
        self.group.rank()
    }

    fn world(&self) -> usize {
        self.group.world()
    }

    fn broadcast_from_root(&mut self, tensors: &[Tensor]) -> Result<(), ParallelError> {
        if !self.exchanges() || tensors.is_empty() {
            return Ok(());
        }
        let what = "broadcasting rank 0's variables";
        // Flat contiguous buckets, as for gradients: the backend never sees a
        // channels-last weight or a mix of kinds.
        let mut packed: Vec<Tensor> =
            grouped_by_kind(tensors).into_iter().map(|i| tensors[i].shallow_clone()).collect();
        tch::no_grad(|| {
            let mut buckets = GradBucketer::new(&packed, self.bucket_bytes)?;
            buckets.broadcast(self.group.as_mut(), &mut packed, 0)
        })
        .map_err(|e| explain(what, &e))
    }

    fn average_gradients(&mut self, grads: &[Tensor]) -> Result<(), ParallelError> {
        if !self.exchanges() {
            return Ok(());
        }
        let what = "averaging gradients";
        // Frozen variables have no gradient; every rank skips the same ones.
        let defined: Vec<usize> = (0..grads.len()).filter(|&i| grads[i].defined()).collect();
        let mut present: Vec<Tensor> = defined.iter().map(|&i| grads[i].shallow_clone()).collect();
        if present.is_empty() {
            return Ok(());
        }
        if self.plan.as_ref().is_none_or(|(covered, _)| *covered != defined) {
            let bucketer = GradBucketer::new(&present, self.bucket_bytes).map_err(|e| explain(what, &e))?;
            self.plan = Some((defined, bucketer));
        }
        let (_, bucketer) = self.plan.as_mut().expect("the plan was just built");
        let started = std::time::Instant::now();
        let reduced = tch::no_grad(|| bucketer.all_reduce(self.group.as_mut(), &mut present, ReduceOp::Avg));
        self.allreduce += started.elapsed();
        reduced.map_err(|e| explain(what, &e))
    }

    fn take_allreduce_seconds(&mut self) -> f64 {
        std::mem::take(&mut self.allreduce).as_secs_f64()
    }

    fn sum_scalars(&mut self, values: &mut [f64]) -> Result<(), ParallelError> {
        let what = "summing metrics";
        if values.is_empty() {
            return Ok(());
        }
        let run = |group: &mut dyn Collective| -> Result<Vec<f64>, Error> {
            let mut t = Tensor::f_from_slice(values)?.f_to_device(group.device())?;
            group.all_reduce(&mut t, ReduceOp::Sum)?;
            Ok(Vec::<f64>::try_from(t.f_to_device(Device::Cpu)?.f_to_kind(Kind::Double)?)?)
        };
        let summed = run(self.group.as_mut()).map_err(|e| explain(what, &e))?;
        values.copy_from_slice(&summed);
        Ok(())
    }

    fn check_in_sync(&mut self, params: &[Tensor]) -> Result<(), ParallelError> {
        let what = "comparing the replicas";
        self.last_fingerprint = Some(parameter_fingerprint(params).map_err(|e| explain(what, &e))?);
        check_replicas_agree(self.group.as_mut(), params).map_err(|e| explain(what, &e))
    }
}
