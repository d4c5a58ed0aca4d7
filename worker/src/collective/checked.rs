//! [`Checked`]: a collective layer that enforces NCCL's preconditions on any
//! backend, so that CPU runs over the TCP ring fail exactly where a GPU run would.
//!
//! Per rank it applies [`super::contract::check_tensor`] (the function `NcclComm`
//! itself uses). Across ranks it first exchanges each call's signature (call
//! number, operation, root, kind, element count) and fails on every rank, naming
//! the ranks that differ, if they do not all match: NCCL would hang or read past
//! a buffer instead. The exchange is one small extra collective per call, so the
//! layer is meant for tests and debugging: it is on in debug builds and wherever
//! `SCOP_COLLECTIVE_CHECKS=strict` is set (`cargo xtask test` sets it), and off in
//! release builds unless asked for.

use tch::Device;

use super::contract::{check_root, check_tensor};
use super::error::{Error, Result};
use super::{Backend, Collective, ReduceOp};

/// The environment variable that turns the strict layer on (`strict`) or off (`off`).
pub const CHECKS_ENV: &str = "SCOP_COLLECTIVE_CHECKS";

/// Whether data-parallel groups should be wrapped in [`Checked`]: as
/// [`CHECKS_ENV`] says, else on in debug builds.
pub fn strict_checks_requested() -> bool {
    match std::env::var(CHECKS_ENV).as_deref() {
        Ok("strict") => true,
        Ok("off") => false,
        _ => cfg!(debug_assertions),
    }
}

/// A collective group whose every call is checked against the contract.
pub struct Checked {
    inner: Box<dyn Collective>,
    calls: u64,
}

impl std::fmt::Debug for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checked").field("rank", &self.inner.rank()).field("calls", &self.calls).finish()
    }
}

/// What one call looks like to the other ranks.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Signature {
    call: u64,
    /// 1 all-reduce sum, 2 all-reduce mean, 3 broadcast.
    op: u8,
    root: usize,
    kind: u8,
    numel: usize,
}

impl Signature {
    fn to_row(self) -> [f64; 5] {
        [self.call as f64, f64::from(self.op), self.root as f64, f64::from(self.kind), self.numel as f64]
    }

    fn describe(row: &[f64]) -> String {
        let op = match row[1] as u8 {
            1 => "all_reduce(sum)".to_owned(),
            2 => "all_reduce(avg)".to_owned(),
            3 => format!("broadcast(root {})", row[2]),
            other => format!("op {other}"),
        };
        format!("call #{} {op} of {} elements of kind code {}", row[0], row[4], row[3])
    }
}

impl Checked {
    pub fn new(inner: Box<dyn Collective>) -> Self {
        Self { inner, calls: 0 }
    }

    /// Exchanges `mine` with every rank; fails if any rank's differs.
    fn agree(&mut self, mine: Signature) -> Result<()> {
        let rows = self.inner.all_gather_f64(&mine.to_row())?;
        if rows.iter().all(|row| row.as_slice() == mine.to_row().as_slice()) {
            return Ok(());
        }
        let listed: Vec<String> = rows
            .iter()
            .enumerate()
            .map(|(r, row)| format!("rank {r}: {}", Signature::describe(row)))
            .collect();
        Err(Error::Protocol {
            rank: self.inner.rank(),
            reason: format!("the ranks' collective calls differ: {}", listed.join("; ")),
        })
    }

    fn signature(&mut self, op: u8, root: usize, tensor: &tch::Tensor) -> Result<Signature> {
        let kind = check_tensor(tensor, self.inner.device(), self.inner.rank())?;
        self.calls += 1;
        Ok(Signature { call: self.calls, op, root, kind: kind.code(), numel: tensor.numel() })
    }
}

impl Collective for Checked {
    fn rank(&self) -> usize {
        self.inner.rank()
    }

    fn world(&self) -> usize {
        self.inner.world()
    }

    fn backend(&self) -> Backend {
        self.inner.backend()
    }

    fn device(&self) -> Device {
        self.inner.device()
    }

    fn all_reduce(&mut self, tensor: &mut tch::Tensor, op: ReduceOp) -> Result<()> {
        let code = match op {
            ReduceOp::Sum => 1,
            ReduceOp::Avg => 2,
        };
        let signature = self.signature(code, 0, tensor)?;
        self.agree(signature)?;
        self.inner.all_reduce(tensor, op)
    }

    fn broadcast(&mut self, tensor: &mut tch::Tensor, root: usize) -> Result<()> {
        check_root(root, self.inner.world())?;
        let signature = self.signature(3, root, tensor)?;
        self.agree(signature)?;
        self.inner.broadcast(tensor, root)
    }

    fn all_gather_f64(&mut self, values: &[f64]) -> Result<Vec<Vec<f64>>> {
        self.inner.all_gather_f64(values)
    }
}
