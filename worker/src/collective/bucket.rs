//! [`GradBucketer`]: reduces or broadcasts many small tensors (gradients,
//! parameters, BN statistics) with a few large collectives, by packing them into
//! flat contiguous buckets of about 25 MB.
//!
//! This is how the DDP layer meets the collective contract
//! ([`super::contract`]): whatever the tensors' layout (channels-last conv
//! weights, views), a backend only ever sees a flat, contiguous bucket of one
//! kind on the group's device.

use tch::{Device, Kind, Tensor};

use super::error::{Error, Result};
use super::{Collective, ReduceOp};

/// PyTorch DDP's default bucket size.
pub const DEFAULT_BUCKET_BYTES: usize = 25 * 1024 * 1024;

/// One flat buffer and the tensors packed into it, in order.
struct Bucket {
    flat: Tensor,
    /// `(index into the caller's list, offset in elements, element count)`.
    members: Vec<(usize, i64, i64)>,
}

/// A packing plan for a fixed list of tensors, with its flat buffers allocated once.
///
/// Tensors are packed in list order, never split; consecutive tensors of the same
/// kind and device share a bucket until it would exceed the bucket size (a tensor
/// larger than a bucket gets one of its own). Pass the gradients in the order
/// backward produces them (roughly reverse parameter order) if a later version is
/// to overlap the reduction with the backward pass.
pub struct GradBucketer {
    buckets: Vec<Bucket>,
    /// `(kind, device, shape)` of each tensor in the plan, checked on every call.
    signature: Vec<(Kind, Device, Vec<i64>)>,
}

impl std::fmt::Debug for GradBucketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GradBucketer")
            .field("tensors", &self.signature.len())
            .field("buckets", &self.bucket_sizes())
            .finish()
    }
}

impl GradBucketer {
    /// Plans buckets of at most `bucket_bytes` for tensors shaped like `tensors`.
    pub fn new(tensors: &[Tensor], bucket_bytes: usize) -> Result<Self> {
        let mut signature = Vec::with_capacity(tensors.len());
        let mut buckets: Vec<Bucket> = Vec::new();
        let mut open: Option<(Kind, Device, i64)> = None;
        for (i, t) in tensors.iter().enumerate() {
            if !t.defined() {
                return Err(Error::Tensor(format!(
                    "tensor {i} of the bucket plan is undefined (no gradient?)"
                )));
            }
            let (kind, device, numel) = (t.kind(), t.device(), t.numel() as i64);
            signature.push((kind, device, t.size()));
            let bytes = |elems: i64| elems as usize * kind.elt_size_in_bytes();
            let fits = matches!(open, Some((k, d, used)) if k == kind && d == device && bytes(used + numel) <= bucket_bytes);
            if fits {
                let bucket = buckets.last_mut().expect("an open bucket exists");
                let used = open.as_ref().map_or(0, |o| o.2);
                bucket.members.push((i, used, numel));
                open = Some((kind, device, used + numel));
            } else {
                buckets.push(Bucket { flat: Tensor::new(), members: vec![(i, 0, numel)] });
                open = Some((kind, device, numel));
            }
        }
        for bucket in &mut buckets {
            let (_, offset, numel) = *bucket.members.last().expect("a bucket has a member");
            let (kind, device, _) = &signature[bucket.members[0].0];
            bucket.flat = Tensor::f_zeros([offset + numel], (*kind, *device))?;
        }
        Ok(Self { buckets, signature })
    }

    /// Element counts of the buckets, in order.
    pub fn bucket_sizes(&self) -> Vec<i64> {
        self.buckets.iter().map(|b| b.flat.numel() as i64).collect()
    }

    /// Reduces every tensor of `tensors` across ranks: packs each bucket, runs one
    /// collective on it, and copies the result back into the tensors in place.
    /// `tensors` must match the plan (same count, kinds, devices, shapes).
    pub fn all_reduce(
        &mut self,
        group: &mut dyn Collective,
        tensors: &mut [Tensor],
        op: ReduceOp,
    ) -> Result<()> {
        self.through_buckets(tensors, true, |flat| group.all_reduce(flat, op))
    }

    /// Gives every rank `root`'s `tensors`, bucket by bucket (only `root` packs).
    pub fn broadcast(
        &mut self,
        group: &mut dyn Collective,
        tensors: &mut [Tensor],
        root: usize,
    ) -> Result<()> {
        let pack = group.rank() == root;
        self.through_buckets(tensors, pack, |flat| group.broadcast(flat, root))
    }

    /// Checks `tensors` against the plan, then per bucket: packs (if `pack`),
    /// runs `collective` on the flat buffer and copies the result back.
    fn through_buckets(
        &mut self,
        tensors: &mut [Tensor],
        pack: bool,
        mut collective: impl FnMut(&mut Tensor) -> Result<()>,
    ) -> Result<()> {
        if tensors.len() != self.signature.len() {
            return Err(Error::Tensor(format!(
                "the bucket plan has {} tensors, got {}",
                self.signature.len(),
                tensors.len()
            )));
        }
        for (i, (t, (kind, device, shape))) in tensors.iter().zip(&self.signature).enumerate() {
            if !t.defined() || t.kind() != *kind || t.device() != *device || t.size() != *shape {
                return Err(Error::Tensor(format!(
                    "tensor {i} does not match the bucket plan: expected {kind:?} {shape:?} on {device:?}, got {}",
                    if t.defined() {
                        format!("{:?} {:?} on {:?}", t.kind(), t.size(), t.device())
                    } else {
                        "undefined".into()
                    }
                )));
            }
        }
        for bucket in &mut self.buckets {
            if pack {
                for &(i, offset, numel) in &bucket.members {
                    // copy_ follows each side's strides: a channels-last tensor packs in
                    // logical (NCHW) order and unpacks the same way.
                    let mut dst =
                        bucket.flat.f_narrow(0, offset, numel)?.f_view(tensors[i].size().as_slice())?;
                    dst.f_copy_(&tensors[i])?;
                }
            }
            collective(&mut bucket.flat)?;
            for &(i, offset, numel) in &bucket.members {
                let reduced = bucket.flat.f_narrow(0, offset, numel)?.f_view(tensors[i].size().as_slice())?;
                tensors[i].f_copy_(&reduced)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_in_order_without_splitting_and_respects_kind() {
        let f = |n: i64| Tensor::zeros([n], (Kind::Float, Device::Cpu));
        let d = |n: i64| Tensor::zeros([n], (Kind::Double, Device::Cpu));
        // 40-byte buckets: 10 floats or 5 doubles.
        let plan = GradBucketer::new(&[f(4), f(6), f(1), f(30), d(2), d(3), f(2)], 40).unwrap();
        assert_eq!(plan.bucket_sizes(), vec![10, 1, 30, 5, 2]);
    }
}
