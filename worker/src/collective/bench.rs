//! The rank side of `cargo xtask bench collectives`: times TCP-ring all-reduces of
//! one large f32 tensor (run as `scop-worker bench-allreduce`, one process per rank).

use std::time::{Duration, Instant};

use scop_core::rendezvous::{BackendRendezvous, Rendezvous};
use tch::{Device, Kind, Tensor};

use super::error::{Error, Result};
use super::{Collective, ReduceOp, TcpRing};

/// One rank's part of the benchmark.
#[derive(Debug, Clone)]
pub struct AllReduceBench {
    pub rank: u32,
    /// `host:port` of every rank.
    pub peers: Vec<String>,
    /// Size of the reduced tensor in bytes (rounded down to whole f32s).
    pub bytes: usize,
    pub warmup: usize,
    pub iters: usize,
    /// Chunk size on the wire; `None` keeps [`super::DEFAULT_CHUNK_BYTES`].
    pub chunk_bytes: Option<usize>,
}

/// Runs the benchmark and returns the time of each measured all-reduce.
///
/// Each measured call starts right after a barrier, so it times the collective
/// itself rather than the ranks' differing start times. The last call is checked:
/// every element must equal the world size after summing ones.
pub fn bench_all_reduce(bench: &AllReduceBench) -> Result<Vec<Duration>> {
    let world = bench.peers.len() as u32;
    let rendezvous = Rendezvous {
        rank: bench.rank,
        world,
        job_token: "bench-allreduce".into(),
        timeout_ms: 60_000,
        connect_timeout_ms: 60_000,
        backend: BackendRendezvous::Tcp { peers: bench.peers.clone(), listen: None },
    };
    let mut ring = TcpRing::connect(&rendezvous)?;
    if let Some(chunk) = bench.chunk_bytes {
        ring.set_chunk_bytes(chunk);
    }
    let elems = (bench.bytes / 4) as i64;
    let mut tensor = Tensor::f_full([elems], 0.5, (Kind::Float, Device::Cpu))?;
    for _ in 0..bench.warmup {
        ring.all_reduce(&mut tensor, ReduceOp::Avg)?;
    }
    let mut times = Vec::with_capacity(bench.iters);
    for _ in 0..bench.iters {
        let _ = tensor.f_fill_(1.0)?;
        ring.barrier()?;
        let start = Instant::now();
        ring.all_reduce(&mut tensor, ReduceOp::Sum)?;
        times.push(start.elapsed());
    }
    if bench.iters > 0 {
        let (lo, hi) = (tensor.f_min()?.double_value(&[]), tensor.f_max()?.double_value(&[]));
        if lo != f64::from(world) || hi != f64::from(world) {
            return Err(Error::BenchCheck(format!("elements in [{lo}, {hi}], expected all {world}")));
        }
    }
    Ok(times)
}
