//! `scop-worker check-nccl` (hidden, feature `nccl`): the NCCL path on one GPU as
//! a one-rank communicator, for `scripts/gpu-check`. Each check prints one JSON
//! line `{"check": ..., "ok": ..., "detail": ...}`; the command fails if any fails.
//!
//! `--cpu` runs the same checks on a one-rank TCP ring inside the strict
//! [`Checked`] layer (NCCL's preconditions on the CPU), for the script's CPU
//! rehearsal: every line and every comparison of the GPU run, no CUDA call.
//!
//! With one rank a sum is the tensor itself, so every result is compared bit for
//! bit with its input: what is checked is that real device memory goes through
//! NCCL (communicator, all-reduce, broadcast) and through the DDP layer (flat
//! buckets for channels-last and bf16 variables, gradient averaging, the
//! fingerprint) without being refused, reordered or corrupted.

use scop_core::rendezvous::{BackendRendezvous, DEFAULT_CONNECT_TIMEOUT_MS, Rendezvous, encode_unique_id};
use tch::{Device, Kind, Tensor};

use crate::collective::{
    Checked, Collective, NcclComm, ReduceOp, TcpRing, new_unique_id, parameter_fingerprint,
};
use crate::models::layout::{channels_last, is_channels_last};
use crate::stages::ddp::GroupReplicas;
use crate::stages::parallel::Replicas;

/// One check's outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckLine {
    pub check: String,
    pub ok: bool,
    pub detail: String,
}

type Outcome = Result<String, String>;

/// Where the checks run: one GPU through NCCL, or the CPU rehearsal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Gpu(usize),
    /// A one-rank TCP ring under the strict [`Checked`] layer.
    Cpu,
}

impl Target {
    fn device(self) -> Device {
        match self {
            Target::Gpu(i) => Device::Cuda(i),
            Target::Cpu => Device::Cpu,
        }
    }

    /// The transport's name in the check names.
    fn transport(self) -> &'static str {
        match self {
            Target::Gpu(_) => "nccl",
            Target::Cpu => "tcp (nccl rules)",
        }
    }
}

fn connect(target: Target) -> Result<Box<dyn Collective>, String> {
    let record = |backend| Rendezvous {
        rank: 0,
        world: 1,
        job_token: "check-nccl".into(),
        timeout_ms: 60_000,
        connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
        backend,
    };
    match target {
        Target::Gpu(device) => {
            let id = new_unique_id().map_err(|e| e.to_string())?;
            let unique_id = encode_unique_id(&id);
            let comm =
                NcclComm::connect(&record(BackendRendezvous::Nccl { unique_id, device: device as u32 }))
                    .map_err(|e| e.to_string())?;
            Ok(Box::new(comm))
        }
        Target::Cpu => {
            let peers = vec!["127.0.0.1:0".to_owned()];
            let ring = TcpRing::connect(&record(BackendRendezvous::Tcp { peers, listen: None }))
                .map_err(|e| e.to_string())?;
            Ok(Box::new(Checked::new(Box::new(ring))))
        }
    }
}

fn same(what: &str, got: &Tensor, want: &Tensor) -> Result<(), String> {
    if got.kind() == want.kind() && got.size() == want.size() && got.equal(want) {
        Ok(())
    } else {
        Err(format!("{what}: the result differs from the input"))
    }
}

/// The dtypes the raw collectives are checked with: every one the DDP layer
/// hands NCCL; the TCP ring reduces only f32 and f64 (the DDP layer's buckets
/// carry the others as those), so the rehearsal checks those two directly.
fn raw_kinds(target: Target) -> &'static [(Kind, &'static str)] {
    match target {
        Target::Gpu(_) => {
            &[(Kind::Float, "f32"), (Kind::BFloat16, "bf16"), (Kind::Double, "f64"), (Kind::Int64, "i64")]
        }
        Target::Cpu => &[(Kind::Float, "f32"), (Kind::Double, "f64")],
    }
}

fn collectives(comm: &mut dyn Collective, target: Target) -> Outcome {
    let device = target.device();
    let kinds = raw_kinds(target);
    let mut n = 0;
    for &(kind, _) in kinds {
        for len in [1i64, 7, (1 << 20) + 3] {
            let input = Tensor::arange(len, (Kind::Float, device)).remainder(97.0).to_kind(kind);
            let mut t = input.copy();
            comm.all_reduce(&mut t, ReduceOp::Sum).map_err(|e| e.to_string())?;
            same(&format!("all_reduce sum {kind:?}[{len}]"), &t, &input)?;
            if kind != Kind::Int64 {
                comm.all_reduce(&mut t, ReduceOp::Avg).map_err(|e| e.to_string())?;
                same(&format!("all_reduce avg {kind:?}[{len}]"), &t, &input)?;
            }
            comm.broadcast(&mut t, 0).map_err(|e| e.to_string())?;
            same(&format!("broadcast {kind:?}[{len}]"), &t, &input)?;
            n += 1;
        }
    }
    let names: Vec<&str> = kinds.iter().map(|(_, name)| *name).collect();
    Ok(format!("{n} tensors ({}; up to 1M elements): sum, avg, broadcast exact", names.join(", ")))
}

fn contract(comm: &mut dyn Collective, device: Device) -> Outcome {
    let mut weight =
        channels_last(&Tensor::ones([64, 64, 3, 3], (Kind::Float, device))).map_err(|e| e.to_string())?;
    match comm.broadcast(&mut weight, 0) {
        Err(e) if e.to_string().contains("contiguous") => Ok("a raw channels-last weight is refused".into()),
        Err(e) => Err(format!("refused for the wrong reason: {e}")),
        Ok(()) => Err("the group accepted a channels-last tensor".into()),
    }
}

fn ddp(comm: Box<dyn Collective>, device: Device) -> Outcome {
    let mut replicas = GroupReplicas::with_bucket_bytes(comm, 64 * 1024);
    let cl = |shape: [i64; 4]| {
        channels_last(&Tensor::randn(shape, (Kind::Float, device))).map_err(|e| e.to_string())
    };
    let variables = [
        cl([64, 32, 3, 3])?,
        Tensor::randn([64], (Kind::Float, device)),
        Tensor::full([1], 12, (Kind::Int64, device)),
        Tensor::randn([256, 64], (Kind::Float, device)).to_kind(Kind::BFloat16),
        cl([128, 64, 1, 1])?,
    ];
    let before: Vec<Tensor> = variables.iter().map(Tensor::copy).collect();
    replicas.broadcast_from_root(&variables).map_err(|e| format!("start broadcast: {e}"))?;
    for (i, (v, b)) in variables.iter().zip(&before).enumerate() {
        same(&format!("broadcast variable {i}"), v, b)?;
    }
    if !is_channels_last(&variables[0]) {
        return Err("the broadcast changed a weight's layout".into());
    }
    let grads = [cl([64, 32, 3, 3])?, Tensor::randn([64], (Kind::Float, device)), cl([128, 64, 1, 1])?];
    let before: Vec<Tensor> = grads.iter().map(Tensor::copy).collect();
    replicas.average_gradients(&grads).map_err(|e| format!("gradient averaging: {e}"))?;
    for (i, (g, b)) in grads.iter().zip(&before).enumerate() {
        same(&format!("gradient {i}"), g, b)?;
    }
    let params: Vec<Tensor> = variables.iter().map(Tensor::shallow_clone).collect();
    replicas.check_in_sync(&params).map_err(|e| format!("fingerprint check: {e}"))?;
    let expected = parameter_fingerprint(&params).map_err(|e| e.to_string())?;
    if replicas.last_fingerprint() != Some(expected) {
        return Err("the fingerprint differs from the local one".into());
    }
    let mut sums = [3.0, 4.5];
    replicas.sum_scalars(&mut sums).map_err(|e| format!("metric sums: {e}"))?;
    if sums != [3.0, 4.5] {
        return Err(format!("metric sums changed: {sums:?}"));
    }
    Ok("channels-last f32, bf16 and i64 variables in flat buckets: broadcast, averaging, fingerprint, sums exact".into())
}

/// Runs every check on `target`; each is reported, later ones run after a
/// failure where they can.
pub fn run(target: Target) -> Vec<CheckLine> {
    let line = |check: String, outcome: Outcome| match outcome {
        Ok(detail) => CheckLine { check, ok: true, detail },
        Err(detail) => CheckLine { check, ok: false, detail },
    };
    let (device, name) = (target.device(), target.transport());
    let mut lines = Vec::new();
    match connect(target) {
        Err(e) => lines.push(line(format!("{name} communicator (1 rank)"), Err(e))),
        Ok(mut comm) => {
            lines.push(line(format!("{name} communicator (1 rank)"), Ok(format!("on {device:?}"))));
            lines.push(line(format!("{name} all_reduce / broadcast"), collectives(comm.as_mut(), target)));
            lines.push(line("collective contract".to_owned(), contract(comm.as_mut(), device)));
        }
    }
    match connect(target) {
        Err(e) => lines.push(line(format!("ddp over {name}"), Err(e))),
        Ok(comm) => lines.push(line(format!("ddp over {name}"), ddp(comm, device))),
    }
    lines
}
