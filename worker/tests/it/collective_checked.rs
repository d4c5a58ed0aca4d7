//! The strict layer over a real TCP ring: it refuses what `NcclComm` refuses,
//! on every rank, and lets through what NCCL accepts.

use scop_worker::collective::{Checked, Collective, ReduceOp, Result, TcpRing};
use tch::{Device, Kind, Tensor};

use crate::collective::group;

/// Runs `body` on every rank of a fresh checked ring of two, each on its own thread.
fn on_checked_pair<R: Send>(body: impl Fn(usize, &mut Checked) -> Result<R> + Sync) -> Vec<Result<R>> {
    let body = &body;
    std::thread::scope(|scope| {
        let handles: Vec<_> = group(2, 10_000)
            .into_iter()
            .map(|(record, listener)| {
                scope.spawn(move || {
                    let ring = TcpRing::connect_with_listener(&record, listener)?;
                    let mut checked = Checked::new(Box::new(ring));
                    body(record.rank as usize, &mut checked)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("rank thread panicked")).collect()
    })
}

fn error_text<R>(result: &Result<R>) -> String {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn contiguous_float_bf16_and_int_tensors_pass() {
    let results = on_checked_pair(|rank, group| {
        let mut sum = Tensor::from_slice(&[1.0f32 + rank as f32, 2.0]);
        group.all_reduce(&mut sum, ReduceOp::Sum)?;
        let mut counter = Tensor::from_slice(&[rank as i64 + 7]);
        group.broadcast(&mut counter, 1)?;
        let mut half = Tensor::ones([4], (Kind::BFloat16, Device::Cpu)) * (rank as f64 + 1.0);
        group.broadcast(&mut half, 0)?;
        Ok((Vec::<f32>::try_from(&sum)?, i64::try_from(&counter)?, f64::try_from(half.sum(Kind::Double))?))
    });
    for result in results {
        assert_eq!(result.unwrap(), (vec![3.0, 4.0], 8, 4.0));
    }
}

#[test]
fn a_channels_last_tensor_is_refused_on_the_rank_that_passes_it() {
    let results = on_checked_pair(|rank, group| {
        let weight = Tensor::ones([8, 8, 3, 3], (Kind::Float, Device::Cpu));
        // Channels-last strides (as training converts conv weights), same shape and values.
        let mut weight =
            if rank == 0 { weight.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]) } else { weight };
        group.broadcast(&mut weight, 0)
    });
    let refused = error_text(&results[0]);
    assert!(refused.contains("rank 0: collectives take contiguous tensors"), "{refused}");
    assert!(refused.contains("strides [72, 1, 24, 8]"), "{refused}");
    // Rank 1 was waiting for rank 0's call, which never came: it must not hang.
    assert!(results[1].is_err());
}

#[test]
fn ranks_that_pass_different_sizes_or_kinds_fail_on_every_rank() {
    let results = on_checked_pair(|rank, group| {
        let mut t = Tensor::zeros([4 + rank as i64], (Kind::Float, Device::Cpu));
        group.all_reduce(&mut t, ReduceOp::Avg)
    });
    for result in &results {
        let text = error_text(result);
        assert!(text.contains("the ranks' collective calls differ"), "{text}");
        assert!(text.contains("rank 0: call #1 all_reduce(avg) of 4 elements"), "{text}");
        assert!(text.contains("rank 1: call #1 all_reduce(avg) of 5 elements"), "{text}");
    }
    let results = on_checked_pair(|rank, group| {
        let kind = if rank == 0 { Kind::Float } else { Kind::Int };
        let mut t = Tensor::zeros([4], (kind, Device::Cpu));
        group.broadcast(&mut t, 0)
    });
    for result in &results {
        assert!(error_text(result).contains("kind code"), "{}", error_text(result));
    }
}

#[test]
fn a_tensor_on_another_device_or_of_an_unsupported_kind_is_refused() {
    let results = on_checked_pair(|_, group| {
        let mut b = Tensor::zeros([3], (Kind::Bool, Device::Cpu));
        let kind = error_text(&group.broadcast(&mut b, 0));
        let mut c = Tensor::zeros([3], (Kind::ComplexFloat, Device::Cpu));
        let complex = error_text(&group.all_reduce(&mut c, ReduceOp::Sum));
        Ok((kind, complex))
    });
    for result in results {
        let (kind, complex) = result.unwrap();
        assert!(kind.contains("do not carry Bool tensors"), "{kind}");
        assert!(complex.contains("do not carry ComplexFloat tensors"), "{complex}");
    }
}
