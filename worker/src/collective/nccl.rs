//! [`NcclComm`]: the GPU backend, one NCCL communicator per rank process.
//!
//! Stream: tch does not expose libtorch's current CUDA stream, and it never sets
//! one, so libtorch computes on the legacy default stream (the null stream). We
//! enqueue NCCL on that same null stream, so the collective is ordered after the
//! kernels that produced the tensor and before the ones that use it, without an
//! extra device synchronisation. If tch ever starts using side streams this must
//! switch to libtorch's current stream.
//!
//! Timeouts: after enqueueing, the host waits on a CUDA event recorded behind the
//! collective, polling it and `ncclCommGetAsyncError`; past the rendezvous timeout,
//! or on an asynchronous NCCL error, the communicator is aborted (`ncclCommAbort`),
//! which releases the GPU kernels stuck waiting for a lost peer. Communicator
//! creation runs on a helper thread so that it, too, is bounded by the timeout.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cudarc::driver::CudaContext;
use cudarc::driver::result as cu;
use cudarc::driver::sys as cu_sys;
use cudarc::nccl::result as nccl;
use cudarc::nccl::sys;
use scop_core::rendezvous::{BackendRendezvous, NCCL_UNIQUE_ID_BYTES, Rendezvous};
use tch::{Device, Tensor};

use super::contract::{NcclKind, check_root, check_tensor};
use super::error::{Error, Result};
use super::nccl_library::{ensure_cuda_driver_loadable, ensure_nccl_loadable};
use super::{Backend, Collective, ReduceOp};

/// How often the host checks a running collective.
const POLL: Duration = Duration::from_micros(50);

/// Creates a new NCCL unique id for a group (the launcher calls this once per job).
///
/// NCCL's bootstrap root runs inside the process that called this, so that process
/// must stay alive until every rank has connected.
pub fn new_unique_id() -> Result<[u8; NCCL_UNIQUE_ID_BYTES]> {
    ensure_nccl_loadable()?;
    let id = nccl::get_uniqueid().map_err(|e| nccl_error("ncclGetUniqueId", e))?;
    Ok(id.internal.map(|c| c as u8))
}

/// A raw communicator handle, moved once from the creating thread to the owner.
struct CommHandle(sys::ncclComm_t);

// SAFETY: an NCCL communicator may be used from any thread as long as calls on it
// are not concurrent; the handle is only moved, and `NcclComm` (which owns it from
// then on) is used through `&mut self`.
#[allow(unsafe_code)]
unsafe impl Send for CommHandle {}

/// An NCCL communicator for one rank on one GPU.
pub struct NcclComm {
    rank: usize,
    world: usize,
    device: usize,
    ctx: Arc<CudaContext>,
    comm: CommHandle,
    timeout: Duration,
    broken: Option<String>,
}

impl std::fmt::Debug for NcclComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NcclComm")
            .field("rank", &self.rank)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

fn nccl_error(call: &str, e: nccl::NcclError) -> Error {
    Error::Nccl(format!("{call} failed: {:?}", e.0))
}

fn cuda_error(call: &str, e: cu::DriverError) -> Error {
    Error::Nccl(format!("{call} failed: CUDA {:?}", e.0))
}

impl NcclComm {
    /// Creates this rank's communicator from an NCCL rendezvous record.
    pub fn connect(rendezvous: &Rendezvous) -> Result<Self> {
        rendezvous.validate()?;
        let (Some(id_bytes), BackendRendezvous::Nccl { device, .. }) =
            (rendezvous.nccl_unique_id()?, &rendezvous.backend)
        else {
            return Err(Error::Setup("NcclComm::connect needs a rendezvous with backend nccl".into()));
        };
        ensure_nccl_loadable()?;
        ensure_cuda_driver_loadable()?;
        let (rank, world, device, timeout) =
            (rendezvous.rank as usize, rendezvous.world as usize, *device as usize, rendezvous.timeout());
        let connect_timeout = rendezvous.connect_timeout();
        let ctx = CudaContext::new(device).map_err(|e| cuda_error(&format!("opening cuda:{device}"), e))?;
        let id = sys::ncclUniqueId { internal: id_bytes.map(|b| b as _) };
        let (tx, rx) = mpsc::channel();
        let init_ctx = ctx.clone();
        std::thread::spawn(move || {
            let created =
                init_ctx.bind_to_thread().map_err(|e| cuda_error("binding the context", e)).and_then(|()| {
                    let mut comm: sys::ncclComm_t = std::ptr::null_mut();
                    // SAFETY: `comm` is a valid out-pointer; the id came from ncclGetUniqueId.
                    #[allow(unsafe_code)]
                    let status = unsafe { nccl::comm_init_rank(&mut comm, world as i32, id, rank as i32) };
                    status.map(|_| CommHandle(comm)).map_err(|e| nccl_error("ncclCommInitRank", e))
                });
            let _ = tx.send(created);
        });
        let comm = match rx.recv_timeout(connect_timeout) {
            Ok(created) => created?,
            Err(_) => {
                return Err(Error::Nccl(format!(
                    "rank {rank}: not all {world} ranks joined the NCCL communicator within {connect_timeout:?}"
                )));
            }
        };
        Ok(Self { rank, world, device, ctx, comm, timeout, broken: None })
    }

    /// The collective contract ([`check_tensor`]), and the NCCL type of the tensor.
    fn check_tensor(&self, tensor: &Tensor) -> Result<sys::ncclDataType_t> {
        use sys::ncclDataType_t as T;
        Ok(match check_tensor(tensor, Device::Cuda(self.device), self.rank)? {
            NcclKind::Float32 => T::ncclFloat32,
            NcclKind::Float64 => T::ncclFloat64,
            NcclKind::Float16 => T::ncclFloat16,
            NcclKind::BFloat16 => T::ncclBfloat16,
            NcclKind::Int32 => T::ncclInt32,
            NcclKind::Int64 => T::ncclInt64,
            NcclKind::Uint8 => T::ncclUint8,
            NcclKind::Int8 => T::ncclInt8,
        })
    }

    /// Enqueues one collective on the null stream and waits for it with the timeout;
    /// aborts the communicator on timeout or error.
    fn run(
        &mut self,
        what: &'static str,
        enqueue: impl FnOnce(sys::ncclComm_t, sys::cudaStream_t) -> Result<(), nccl::NcclError>,
    ) -> Result<()> {
        if let Some(reason) = &self.broken {
            return Err(Error::Broken(reason.clone()));
        }
        let result = self.run_unchecked(what, enqueue);
        if let Err(e) = &result {
            self.broken = Some(e.to_string());
            // SAFETY: the handle is a live communicator; abort is the documented way to
            // release a communicator whose operations may never complete.
            #[allow(unsafe_code)]
            let _ = unsafe { nccl::comm_abort(self.comm.0) };
        }
        result
    }

    fn run_unchecked(
        &mut self,
        what: &'static str,
        enqueue: impl FnOnce(sys::ncclComm_t, sys::cudaStream_t) -> Result<(), nccl::NcclError>,
    ) -> Result<()> {
        self.ctx.bind_to_thread().map_err(|e| cuda_error("binding the context", e))?;
        enqueue(self.comm.0, std::ptr::null_mut()).map_err(|e| nccl_error(what, e))?;
        let event = cu::event::create(cu_sys::CUevent_flags::CU_EVENT_DISABLE_TIMING)
            .map_err(|e| cuda_error("cuEventCreate", e))?;
        let waited = self.wait(what, event);
        // SAFETY: `event` was created above and is destroyed once; destroying an
        // event whose work is pending is allowed (resources are freed later).
        #[allow(unsafe_code)]
        let _ = unsafe { cu::event::destroy(event) };
        waited
    }

    fn wait(&self, what: &'static str, event: cu_sys::CUevent) -> Result<()> {
        // SAFETY: `event` is a live event of the bound context; the null stream is
        // the legacy default stream the collective was enqueued on.
        #[allow(unsafe_code)]
        unsafe { cu::event::record(event, std::ptr::null_mut()) }
            .map_err(|e| cuda_error("cuEventRecord", e))?;
        let start = Instant::now();
        loop {
            // SAFETY: as above.
            #[allow(unsafe_code)]
            match unsafe { cu::event::query(event) } {
                Ok(()) => return Ok(()),
                Err(e) if e.0 == cu_sys::cudaError_enum::CUDA_ERROR_NOT_READY => {}
                Err(e) => return Err(cuda_error(what, e)),
            }
            let mut state = sys::ncclResult_t::ncclSuccess;
            // SAFETY: live communicator, valid out-pointer.
            #[allow(unsafe_code)]
            let _ = unsafe { sys::ncclCommGetAsyncError(self.comm.0, &mut state) };
            if !matches!(state, sys::ncclResult_t::ncclSuccess | sys::ncclResult_t::ncclInProgress) {
                return Err(Error::Nccl(format!(
                    "rank {}: {what} failed asynchronously ({state:?}), a peer rank was probably lost; communicator aborted",
                    self.rank
                )));
            }
            if start.elapsed() > self.timeout {
                return Err(Error::Nccl(format!(
                    "rank {}: {what} did not complete within {:?}, a peer rank stopped responding; communicator aborted",
                    self.rank, self.timeout
                )));
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for NcclComm {
    fn drop(&mut self) {
        if self.broken.is_none() {
            // SAFETY: the handle is a live communicator, destroyed exactly once.
            #[allow(unsafe_code)]
            let _ = unsafe { nccl::comm_destroy(self.comm.0) };
        }
    }
}

impl Collective for NcclComm {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world(&self) -> usize {
        self.world
    }

    fn backend(&self) -> Backend {
        Backend::Nccl
    }

    fn device(&self) -> Device {
        Device::Cuda(self.device)
    }

    fn all_reduce(&mut self, tensor: &mut Tensor, op: ReduceOp) -> Result<()> {
        let dtype = self.check_tensor(tensor)?;
        let (ptr, count) = (tensor.data_ptr(), tensor.numel());
        if count == 0 {
            return Ok(());
        }
        let op = match op {
            ReduceOp::Sum => sys::ncclRedOp_t::ncclSum,
            ReduceOp::Avg => sys::ncclRedOp_t::ncclAvg,
        };
        // SAFETY: `ptr` addresses `count` elements of `dtype` on this rank's device
        // (checked above), kept alive by `tensor`, which is borrowed for the whole
        // call, and `run` waits for the collective to finish before returning.
        #[allow(unsafe_code)]
        self.run("ncclAllReduce", |comm, stream| unsafe {
            nccl::all_reduce(ptr, ptr, count, dtype, op, comm, stream).map(|_| ())
        })
    }

    fn broadcast(&mut self, tensor: &mut Tensor, root: usize) -> Result<()> {
        check_root(root, self.world)?;
        let dtype = self.check_tensor(tensor)?;
        let (ptr, count) = (tensor.data_ptr(), tensor.numel());
        if count == 0 {
            return Ok(());
        }
        // SAFETY: as in `all_reduce`.
        #[allow(unsafe_code)]
        self.run("ncclBroadcast", |comm, stream| unsafe {
            nccl::broadcast(ptr, ptr, count, dtype, root as i32, comm, stream).map(|_| ())
        })
    }
}
