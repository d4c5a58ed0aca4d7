//! [`TcpRing`]: the CPU backend, a ring of TCP connections between rank processes.

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use scop_core::rendezvous::{BackendRendezvous, Rendezvous};
use tch::{Device, Tensor};

use super::contract::{check_root, check_tensor};
use super::error::{Error, Result};
use super::ring::Ring;
use super::tcp_setup::{Identity, build_links};
use super::tensor_view::{Element, SliceMut, cpu_bytes_mut, cpu_slice_mut};
use super::wire::Link;
use super::{Backend, Collective, ReduceOp};

/// Default size of one pipelined chunk on the wire.
pub const DEFAULT_CHUNK_BYTES: usize = 1 << 20;

/// The connections of a rank to its ring neighbours (absent when `world == 1`).
struct Links {
    left: Link,
    right: Link,
    left_waker: TcpStream,
}

/// A TCP ring collective group (see [`super::ring`] for the algorithm).
pub struct TcpRing {
    rank: usize,
    world: usize,
    links: Option<Links>,
    seq: u64,
    chunk_bytes: usize,
    broken: Option<String>,
}

impl std::fmt::Debug for TcpRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpRing")
            .field("rank", &self.rank)
            .field("world", &self.world)
            .finish_non_exhaustive()
    }
}

impl TcpRing {
    /// Listens on `backend.listen` (or this rank's entry of `backend.peers`) and
    /// joins the ring. Blocks until both neighbours are connected or the
    /// rendezvous timeout passes.
    pub fn connect(rendezvous: &Rendezvous) -> Result<Self> {
        rendezvous.validate()?;
        let BackendRendezvous::Tcp { peers, listen } = &rendezvous.backend else {
            return Err(Error::Setup("TcpRing::connect needs a rendezvous with backend tcp".into()));
        };
        if rendezvous.world == 1 {
            return Ok(Self::alone());
        }
        let addr = listen.as_deref().unwrap_or(&peers[rendezvous.rank as usize]);
        let listener =
            TcpListener::bind(addr).map_err(|e| Error::Setup(format!("cannot listen on {addr}: {e}")))?;
        Self::connect_with_listener(rendezvous, listener)
    }

    /// Like [`TcpRing::connect`] with a listener bound by the caller (for example on
    /// port 0, whose real port went into the other ranks' `peers`).
    pub fn connect_with_listener(rendezvous: &Rendezvous, listener: TcpListener) -> Result<Self> {
        rendezvous.validate()?;
        let BackendRendezvous::Tcp { peers, .. } = &rendezvous.backend else {
            return Err(Error::Setup("TcpRing needs a rendezvous with backend tcp".into()));
        };
        let (rank, world) = (rendezvous.rank as usize, rendezvous.world as usize);
        if world == 1 {
            return Ok(Self::alone());
        }
        let me = Identity {
            rank,
            world,
            token: &rendezvous.job_token,
            connect_timeout: rendezvous.connect_timeout(),
            timeout: rendezvous.timeout(),
        };
        let (left, right) = build_links(&me, listener, &peers[(rank + 1) % world])?;
        let left_waker =
            left.stream.try_clone().map_err(|e| Error::Setup(format!("cannot clone a socket: {e}")))?;
        let links = Some(Links { left, right, left_waker });
        Ok(Self { rank, world, links, seq: 0, chunk_bytes: DEFAULT_CHUNK_BYTES, broken: None })
    }

    fn alone() -> Self {
        Self { rank: 0, world: 1, links: None, seq: 0, chunk_bytes: DEFAULT_CHUNK_BYTES, broken: None }
    }

    /// Sets the size of one pipelined chunk (at least 8 bytes). Every rank must use
    /// the same value, or the frame sizes will not match.
    pub fn set_chunk_bytes(&mut self, bytes: usize) {
        self.chunk_bytes = bytes.max(8);
    }

    /// The timeout applied to every socket operation.
    pub fn timeout(&self) -> Option<Duration> {
        self.links.as_ref().map(|l| l.left.timeout)
    }

    /// Runs one collective call on the ring, with the bookkeeping every call shares:
    /// refuse if broken, number the call, and break the group on failure.
    fn call<T>(&mut self, op: impl FnOnce(&mut Ring<'_>) -> Result<()>) -> Result<()> {
        if let Some(reason) = &self.broken {
            return Err(Error::Broken(reason.clone()));
        }
        let Some(links) = self.links.as_mut() else {
            return Ok(());
        };
        self.seq += 1;
        let chunk_elems = (self.chunk_bytes / std::mem::size_of::<T>()).max(1);
        let mut ring = Ring {
            rank: self.rank,
            world: self.world,
            left: &mut links.left,
            right: &mut links.right,
            left_waker: &links.left_waker,
            seq: self.seq,
            chunk_elems,
        };
        let result = op(&mut ring);
        if let Err(e) = &result {
            self.broken = Some(e.to_string());
        }
        result
    }
}

impl Collective for TcpRing {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world(&self) -> usize {
        self.world
    }

    fn backend(&self) -> Backend {
        Backend::Tcp
    }

    fn device(&self) -> Device {
        Device::Cpu
    }

    fn all_reduce(&mut self, tensor: &mut Tensor, op: ReduceOp) -> Result<()> {
        check_tensor(tensor, Device::Cpu, self.rank)?;
        let world = self.world;
        match cpu_slice_mut(tensor)? {
            SliceMut::F32(data) => {
                let scale = (op == ReduceOp::Avg && world > 1).then(|| f32::reciprocal(world));
                self.call::<f32>(|ring| ring.all_reduce(data, scale))
            }
            SliceMut::F64(data) => {
                let scale = (op == ReduceOp::Avg && world > 1).then(|| f64::reciprocal(world));
                self.call::<f64>(|ring| ring.all_reduce(data, scale))
            }
        }
    }

    fn broadcast(&mut self, tensor: &mut Tensor, root: usize) -> Result<()> {
        check_root(root, self.world)?;
        check_tensor(tensor, Device::Cpu, self.rank)?;
        // Broadcast only copies, so it moves raw bytes and works for every kind
        // the contract allows (integer BN counters and bf16 included).
        let data = cpu_bytes_mut(tensor)?;
        self.call::<u8>(|ring| ring.broadcast(data, root))
    }
}
