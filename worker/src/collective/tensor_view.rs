//! Borrowing a contiguous CPU tensor's memory as a Rust slice, so that the TCP ring
//! reduces into and sends from the tensor itself instead of copying it.

use std::ops::{AddAssign, MulAssign};

use tch::{Device, Kind, Tensor};

use super::error::{Error, Result};

/// An element type the TCP ring can reduce: plain bytes on the wire, `+=` and `*=`.
pub(crate) trait Element: bytemuck::Pod + AddAssign + MulAssign + Send + Sync {
    /// `1 / world` in this type, for [`super::ReduceOp::Avg`].
    fn reciprocal(world: usize) -> Self;
}

impl Element for f32 {
    fn reciprocal(world: usize) -> Self {
        1.0 / world as f32
    }
}

impl Element for f64 {
    fn reciprocal(world: usize) -> Self {
        1.0 / world as f64
    }
}

/// A mutable view of a tensor's elements, by kind.
pub(crate) enum SliceMut<'a> {
    F32(&'a mut [f32]),
    F64(&'a mut [f64]),
}

/// Borrows the elements of a contiguous CPU `Float` or `Double` tensor.
pub(crate) fn cpu_slice_mut(tensor: &mut Tensor) -> Result<SliceMut<'_>> {
    check_cpu_contiguous(tensor)?;
    let len = tensor.numel();
    match tensor.kind() {
        Kind::Float => Ok(SliceMut::F32(raw_slice_mut(tensor, len))),
        Kind::Double => Ok(SliceMut::F64(raw_slice_mut(tensor, len))),
        other => {
            Err(Error::Tensor(format!("the tcp backend reduces Float or Double tensors, got {other:?}")))
        }
    }
}

/// Borrows the bytes of a contiguous CPU tensor of any kind (broadcast, hashing).
pub(crate) fn cpu_bytes_mut(tensor: &mut Tensor) -> Result<&mut [u8]> {
    check_cpu_contiguous(tensor)?;
    let len = tensor.numel() * tensor.kind().elt_size_in_bytes();
    Ok(raw_slice_mut(tensor, len))
}

fn check_cpu_contiguous(tensor: &Tensor) -> Result<()> {
    if !tensor.defined() {
        return Err(Error::Tensor("the tensor is undefined (a parameter without a gradient?)".into()));
    }
    if tensor.device() != Device::Cpu {
        return Err(Error::Tensor(format!("expected a CPU tensor, got one on {:?}", tensor.device())));
    }
    if !tensor.is_contiguous() {
        return Err(Error::Tensor(format!(
            "expected a contiguous tensor, got strides {:?}",
            tensor.stride()
        )));
    }
    Ok(())
}

/// The caller has checked that `tensor` is a defined, contiguous CPU tensor whose
/// storage holds `len` values of `T` from its data pointer on: `numel` elements of
/// its own kind (`Float` as f32, `Double` as f64), or `numel * element size` bytes.
fn raw_slice_mut<T: bytemuck::Pod>(tensor: &mut Tensor, len: usize) -> &mut [T] {
    if len == 0 {
        // An empty tensor may have a null data pointer, which a slice may not.
        return &mut [];
    }
    // SAFETY: libtorch owns a CPU allocation of at least `len` values of `T`
    // starting at `data_ptr()` (which includes the storage offset), because the
    // tensor is defined, contiguous and on the CPU, and the caller matched `T` and
    // `len` to its kind and size; libtorch aligns storage to at least 64 bytes and
    // element offsets keep the element's alignment (u8 needs none). The
    // returned slice borrows `tensor` mutably, so the storage stays alive and this
    // handle cannot be used (or dropped) while the slice exists. Other handles to
    // the same storage (views, shallow clones) could still alias it; the
    // `Collective` contract forbids touching the storage during a call, which is
    // the same contract `torch.distributed` has. Every bit pattern is a valid
    // f32/f64/u8, so whatever is in the storage is a valid `T`.
    #[allow(unsafe_code)]
    unsafe {
        std::slice::from_raw_parts_mut(tensor.data_ptr().cast::<T>(), len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_through_the_view_reach_the_tensor() {
        let mut t = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).narrow(0, 1, 2);
        match cpu_slice_mut(&mut t).unwrap() {
            SliceMut::F32(s) => {
                assert_eq!(s, &[2.0, 3.0]);
                s[1] = 30.0;
            }
            SliceMut::F64(_) => panic!("expected f32"),
        }
        assert_eq!(Vec::<f32>::try_from(&t).unwrap(), vec![2.0, 30.0]);
    }

    #[test]
    fn rejects_what_it_cannot_view() {
        let check = |mut t: Tensor, expected: &str| match cpu_slice_mut(&mut t) {
            Err(e) => assert!(e.to_string().contains(expected), "{e}"),
            Ok(_) => panic!("expected an error containing {expected:?}"),
        };
        check(
            Tensor::zeros([2, 3], (Kind::Float, Device::Cpu)).transpose(0, 1),
            "expected a contiguous tensor",
        );
        check(Tensor::zeros([2], (Kind::Int64, Device::Cpu)), "Float or Double tensors, got Int64");
        check(Tensor::new(), "undefined");
    }
}
