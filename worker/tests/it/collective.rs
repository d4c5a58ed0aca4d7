//! The TCP ring on real sockets on 127.0.0.1, one thread per rank: results against
//! exact references, lost and silent peers, refused handshakes.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;

use scop_core::rendezvous::{BackendRendezvous, Rendezvous};
use scop_worker::collective::{
    Collective, Error, GradBucketer, ReduceOp, Result, TcpRing, check_replicas_agree,
};
use tch::{Device, Kind, Tensor};

/// A small chunk so that a few hundred elements already span several chunks.
const CHUNK_BYTES: usize = 64;
const CHUNK_F32: usize = CHUNK_BYTES / 4;

/// Rendezvous records for `world` ranks on fresh 127.0.0.1 ports, with their listeners.
pub(crate) fn group(world: usize, timeout_ms: u64) -> Vec<(Rendezvous, TcpListener)> {
    let listeners: Vec<TcpListener> = (0..world).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let peers: Vec<String> = listeners.iter().map(|l| l.local_addr().unwrap().to_string()).collect();
    listeners
        .into_iter()
        .enumerate()
        .map(|(rank, listener)| {
            let record = Rendezvous {
                rank: rank as u32,
                world: world as u32,
                job_token: "job-42".into(),
                timeout_ms,
                connect_timeout_ms: timeout_ms,
                backend: BackendRendezvous::Tcp { peers: peers.clone(), listen: None },
            };
            (record, listener)
        })
        .collect()
}

/// Runs `body` on every rank of a fresh ring, each on its own thread.
fn on_ring<R: Send>(
    world: usize,
    timeout_ms: u64,
    body: impl Fn(usize, &mut TcpRing) -> Result<R> + Sync,
) -> Vec<Result<R>> {
    let body = &body;
    std::thread::scope(|scope| {
        let handles: Vec<_> = group(world, timeout_ms)
            .into_iter()
            .map(|(record, listener)| {
                scope.spawn(move || {
                    let mut ring = TcpRing::connect_with_listener(&record, listener)?;
                    ring.set_chunk_bytes(CHUNK_BYTES);
                    body(record.rank as usize, &mut ring)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("rank thread panicked")).collect()
    })
}

/// Integer-valued data, different on each rank, so that sums are exact.
fn rank_data(rank: usize, len: usize) -> Vec<f32> {
    (0..len).map(|i| ((i * 7 + rank * 13) % 101) as f32 - 50.0).collect()
}

fn sizes(world: usize) -> Vec<usize> {
    // empty, one element, odd, one chunk per segment, several uneven chunks per segment
    vec![0, 1, 7, CHUNK_F32 * world, CHUNK_F32 * world * 3 + 5]
}

#[test]
fn all_reduce_sum_and_avg_match_the_reference_at_worlds_2_3_4() {
    for world in [2, 3, 4] {
        for len in sizes(world) {
            let reference: Vec<f32> =
                (0..len).map(|i| (0..world).map(|r| rank_data(r, len)[i]).sum()).collect();
            let results = on_ring(world, 5_000, |rank, ring| {
                let mut sum = Tensor::from_slice(&rank_data(rank, len));
                ring.all_reduce(&mut sum, ReduceOp::Sum)?;
                let mut avg = Tensor::from_slice(&rank_data(rank, len));
                ring.all_reduce(&mut avg, ReduceOp::Avg)?;
                Ok((Vec::<f32>::try_from(&sum)?, Vec::<f32>::try_from(&avg)?))
            });
            let scale = 1.0 / world as f32;
            let avg_reference: Vec<f32> = reference.iter().map(|x| x * scale).collect();
            for (rank, result) in results.into_iter().enumerate() {
                let (sum, avg) = result.unwrap();
                assert_eq!(sum, reference, "sum, world {world}, len {len}, rank {rank}");
                assert_eq!(avg, avg_reference, "avg, world {world}, len {len}, rank {rank}");
            }
        }
    }
}

#[test]
fn all_reduce_handles_f64_multi_megabyte_tensors_and_refuses_strided_ones() {
    let results = on_ring(3, 5_000, |rank, ring| {
        ring.set_chunk_bytes(scop_worker::collective::DEFAULT_CHUNK_BYTES);
        // A strided view breaks the collective contract (NCCL would read its storage
        // order), so the ring refuses it before sending anything, as NcclComm does.
        let mut strided = Tensor::from_slice(&rank_data(rank, 12)).reshape([3, 4]).transpose(0, 1);
        let refused = ring.all_reduce(&mut strided, ReduceOp::Sum).unwrap_err().to_string();
        let mut big = Tensor::f_full([3 * 262_144 + 11], rank as f64 + 1.0, (Kind::Double, Device::Cpu))?;
        ring.all_reduce(&mut big, ReduceOp::Sum)?;
        Ok((big.min().double_value(&[]), big.max().double_value(&[]), refused))
    });
    for result in results {
        let (lo, hi, refused) = result.unwrap();
        assert_eq!((lo, hi), (6.0, 6.0));
        assert!(refused.contains("collectives take contiguous tensors"), "{refused}");
    }
}

#[test]
fn broadcast_copies_the_root_tensor_of_any_kind_to_every_rank() {
    for world in [2, 3, 4] {
        for len in sizes(world) {
            for root in 0..world {
                let results = on_ring(world, 5_000, |rank, ring| {
                    let mut floats = Tensor::from_slice(&rank_data(rank, len));
                    ring.broadcast(&mut floats, root)?;
                    let mut counters = Tensor::from_slice(&vec![rank as i64; len]);
                    ring.broadcast(&mut counters, root)?;
                    Ok((Vec::<f32>::try_from(&floats)?, Vec::<i64>::try_from(&counters)?))
                });
                for (rank, result) in results.into_iter().enumerate() {
                    let (floats, counters) = result.unwrap();
                    assert_eq!(
                        floats,
                        rank_data(root, len),
                        "world {world}, len {len}, root {root}, rank {rank}"
                    );
                    assert_eq!(counters, vec![root as i64; len]);
                }
            }
        }
    }
}

#[test]
fn all_gather_and_barrier_at_worlds_2_3_4() {
    for world in [2, 3, 4] {
        let results = on_ring(world, 5_000, |rank, ring| {
            ring.barrier()?;
            let metrics = ring.all_gather_f64(&[rank as f64 * 0.1, -(rank as f64), 1e300])?;
            let none = ring.all_gather_f64(&[])?;
            Ok((metrics, none))
        });
        let expected: Vec<Vec<f64>> = (0..world).map(|r| vec![r as f64 * 0.1, -(r as f64), 1e300]).collect();
        for result in results {
            let (metrics, none) = result.unwrap();
            assert_eq!(metrics, expected);
            assert_eq!(none, vec![Vec::<f64>::new(); world]);
        }
    }
}

#[test]
fn bucketer_averages_gradients_of_mixed_shapes_in_place() {
    let shapes: [&[i64]; 4] = [&[3, 5], &[7], &[2, 2, 2], &[40]];
    let grads_of = |rank: usize| -> Vec<Tensor> {
        shapes.iter().map(|s| Tensor::full(*s, rank as f64 + 1.0, (Kind::Float, Device::Cpu))).collect()
    };
    let results = on_ring(2, 5_000, |rank, ring| {
        let mut grads = grads_of(rank);
        let mut buckets = GradBucketer::new(&grads, 100)?;
        assert_eq!(buckets.bucket_sizes(), vec![22, 8, 40]);
        buckets.all_reduce(ring, &mut grads, ReduceOp::Avg)?;
        buckets.all_reduce(ring, &mut grads, ReduceOp::Sum)?;
        Ok(grads)
    });
    for grads in results {
        for (g, s) in grads.unwrap().iter().zip(shapes) {
            assert_eq!(g.size(), s);
            assert!(g.equal(&Tensor::full(s, 3.0, (Kind::Float, Device::Cpu))), "(1+2)/2 summed twice = 3");
        }
    }
}

#[test]
fn replica_check_passes_for_equal_parameters_and_names_the_diverged_rank() {
    let results = on_ring(3, 5_000, |rank, ring| {
        let same = vec![Tensor::arange(10, (Kind::Float, Device::Cpu))];
        check_replicas_agree(ring, &same)?;
        let drifted =
            vec![Tensor::arange(10, (Kind::Float, Device::Cpu)) + if rank == 1 { 1e-3 } else { 0.0 }];
        Ok(check_replicas_agree(ring, &drifted))
    });
    for result in results {
        let err = result.unwrap().unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("replicas diverged"), "{text}");
        let line = |r: usize| {
            text.split(", ")
                .find(|p| p.contains(&format!("rank {r}:")))
                .unwrap()
                .rsplit(": ")
                .next()
                .unwrap()
                .to_owned()
        };
        assert_eq!(line(0), line(2));
        assert_ne!(line(0), line(1));
    }
}

#[test]
fn a_rank_that_leaves_mid_job_is_named_by_the_others_and_breaks_the_group() {
    let results = on_ring(3, 5_000, |rank, ring| {
        let mut t = Tensor::from_slice(&rank_data(rank, 100));
        ring.all_reduce(&mut t, ReduceOp::Sum)?;
        if rank == 2 {
            return Ok(None); // closes its sockets while the others start the next call
        }
        let mut big = Tensor::ones([200_000], (Kind::Float, Device::Cpu));
        let first = ring.all_reduce(&mut big, ReduceOp::Sum).unwrap_err();
        let second = ring.barrier().unwrap_err();
        Ok(Some((first, second)))
    });
    for (rank, result) in results.into_iter().enumerate().take(2) {
        let (first, second) = result.unwrap().unwrap();
        assert_eq!(first.lost_rank(), Some(2), "rank {rank}: {first}");
        assert!(first.to_string().starts_with("rank 2 lost"), "rank {rank}: {first}");
        assert!(matches!(second, Error::Broken(_)), "rank {rank}: {second}");
    }
}

#[test]
fn a_silent_rank_times_out_with_its_name() {
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let done_rx = std::sync::Mutex::new(done_rx);
    let results = on_ring(2, 300, |rank, ring| {
        if rank == 1 {
            // Connected but never joins the collective, until rank 0 has given up.
            let _ = done_rx.lock().unwrap().recv();
            return Ok(None);
        }
        let mut t = Tensor::ones([10], (Kind::Float, Device::Cpu));
        let err = ring.all_reduce(&mut t, ReduceOp::Sum).unwrap_err();
        done_tx.send(()).unwrap();
        Ok(Some(err))
    });
    let err = results.into_iter().next().unwrap().unwrap().unwrap();
    assert!(matches!(err, Error::Timeout { rank: 1, .. }), "{err}");
    assert!(err.to_string().starts_with("rank 1 lost: no progress for 300ms"), "{err}");
}

/// Runs two ranks whose records `tweak` makes disagree; returns their setup errors.
fn mismatched_pair(tweak: impl Fn(&mut Rendezvous)) -> Vec<String> {
    let mut pair = group(2, 400);
    tweak(&mut pair[1].0);
    std::thread::scope(|scope| {
        let handles: Vec<_> = pair
            .into_iter()
            .map(|(record, listener)| {
                scope
                    .spawn(move || TcpRing::connect_with_listener(&record, listener).unwrap_err().to_string())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn handshakes_with_the_wrong_token_or_world_size_are_refused_with_the_reason() {
    let errors = mismatched_pair(|r| r.job_token = "another-job".into());
    for e in &errors {
        assert!(e.contains("refused the handshake") && e.contains("job token mismatch"), "{e}");
    }

    let errors = mismatched_pair(|r| {
        // Rank 1 believes in a world of 3 whose last member is rank 0's address.
        let BackendRendezvous::Tcp { peers, .. } = &mut r.backend else { unreachable!() };
        let zero = peers[0].clone();
        peers.push(zero);
        r.world = 3;
    });
    assert!(
        errors[1].contains("world size mismatch: this rank has world 2, the peer says 3"),
        "{}",
        errors[1]
    );
    assert!(
        errors[0].contains("world size mismatch: this rank has world 3, the peer says 2"),
        "{}",
        errors[0]
    );
}

#[test]
fn a_stray_connection_is_refused_and_the_ring_still_forms() {
    let mut pair = group(2, 5_000);
    let addr = pair[0].1.local_addr().unwrap();
    let (rank1, rank0) = (pair.pop().unwrap(), pair.pop().unwrap());
    std::thread::scope(|scope| {
        let first = scope.spawn(move || {
            let mut ring = TcpRing::connect_with_listener(&rank0.0, rank0.1)?;
            let mut t = Tensor::from_slice(&[1.0f32, 2.0]);
            ring.all_reduce(&mut t, ReduceOp::Sum)?;
            Ok::<_, Error>(Vec::<f32>::try_from(&t)?)
        });
        let mut stray = TcpStream::connect(addr).unwrap();
        // Exactly the size of a hello, so the listener reads all of it before closing.
        stray.write_all(b"GET / HTTP/1.1\r\nHost:abc").unwrap();
        let mut reply = Vec::new();
        stray.read_to_end(&mut reply).unwrap();
        assert_eq!(reply[0], 1, "refused");
        assert!(String::from_utf8_lossy(&reply[5..]).contains("not a scop ring peer"));
        let second = scope.spawn(move || {
            let mut ring = TcpRing::connect_with_listener(&rank1.0, rank1.1)?;
            let mut t = Tensor::from_slice(&[10.0f32, 20.0]);
            ring.all_reduce(&mut t, ReduceOp::Sum)?;
            Ok::<_, Error>(Vec::<f32>::try_from(&t)?)
        });
        assert_eq!(first.join().unwrap().unwrap(), vec![11.0, 22.0]);
        assert_eq!(second.join().unwrap().unwrap(), vec![11.0, 22.0]);
    });
}

#[test]
fn a_world_of_one_needs_no_sockets() {
    let record = Rendezvous {
        rank: 0,
        world: 1,
        job_token: "solo".into(),
        timeout_ms: 100,
        connect_timeout_ms: 100,
        backend: BackendRendezvous::Tcp { peers: vec!["127.0.0.1:1".into()], listen: None },
    };
    let mut group = scop_worker::collective::connect(&record).unwrap();
    let mut t = Tensor::from_slice(&[3.0f32, 4.0]);
    group.all_reduce(&mut t, ReduceOp::Avg).unwrap();
    group.broadcast(&mut t, 0).unwrap();
    group.barrier().unwrap();
    assert_eq!(Vec::<f32>::try_from(&t).unwrap(), vec![3.0, 4.0]);
    assert_eq!(group.all_gather_f64(&[1.5]).unwrap(), vec![vec![1.5]]);
}
