//! The one error type of the collective layer.

use std::time::Duration;

/// Everything a collective operation or its setup can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The rendezvous record is invalid (field paths included).
    #[error("rendezvous: {0}")]
    Rendezvous(#[from] scop_core::Error),
    /// A peer closed its connection or the connection failed.
    #[error("rank {rank} lost: {reason}")]
    PeerLost { rank: usize, reason: String },
    /// Another rank detected the loss of `rank` and passed the news along the ring.
    #[error("rank {rank} lost: {reason} (reported through rank {via})")]
    RemoteLoss { rank: usize, reason: String, via: usize },
    /// A peer made no progress for the rendezvous timeout.
    #[error("rank {rank} lost: no progress for {timeout:?} while {during}")]
    Timeout { rank: usize, during: &'static str, timeout: Duration },
    /// Connection setup failed: nobody listening, nobody connecting, or a refused handshake.
    #[error("collective setup: {0}")]
    Setup(String),
    /// A peer sent something this rank did not expect (desynchronised calls).
    #[error("protocol error with rank {rank}: {reason}")]
    Protocol { rank: usize, reason: String },
    /// The tensor cannot be used with this backend (device, kind, layout).
    #[error("unsupported tensor: {0}")]
    Tensor(String),
    /// The operation or backend is not available in this build or configuration.
    #[error("{0}")]
    Unsupported(String),
    /// The replicas' parameters differ (their fingerprints are listed).
    #[error("replicas diverged: parameter fingerprints differ across ranks: {fingerprints}")]
    Diverged { fingerprints: String },
    /// The benchmark's result check found a wrong sum.
    #[error("benchmark check failed: {0}")]
    BenchCheck(String),
    /// An earlier failure left the group unusable.
    #[error("collective group is broken by an earlier failure: {0}")]
    Broken(String),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// NCCL returned an error, or its library could not be loaded.
    #[error("nccl: {0}")]
    Nccl(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The rank this error blames, if it blames one.
    pub fn lost_rank(&self) -> Option<usize> {
        match self {
            Error::PeerLost { rank, .. } | Error::RemoteLoss { rank, .. } | Error::Timeout { rank, .. } => {
                Some(*rank)
            }
            _ => None,
        }
    }
}
