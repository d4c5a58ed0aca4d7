//! The rendezvous record: everything one rank needs to join its job's collective.
//!
//! The local launcher (`scop-worker run`) hands one to each rank process on its
//! stdin; the coordinator sends the same record over gRPC. Both build a group's
//! records with [`group`], from the spec's resources and where the ranks meet
//! ([`Meeting`]); only how they learn the addresses differs (free loopback
//! ports here, the ranks' reported parts there). The NCCL unique id travels as
//! a hex string so that JSON and YAML stay readable.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, FieldError, Result};
use crate::spec::ResourcesSpec;
use crate::stage::Stage;

/// Bytes in an NCCL unique id (`ncclUniqueId`, `NCCL_UNIQUE_ID_BYTES`).
pub const NCCL_UNIQUE_ID_BYTES: usize = 128;

/// Default for [`Rendezvous::timeout_ms`]: a collective whose peer stays silent
/// this long fails (the spec's `resources.collective_timeout`, 10 min as in
/// PyTorch's NCCL default). A peer that crashes is noticed at once: its
/// connections close.
pub const DEFAULT_TIMEOUT_MS: u64 = 600_000;

/// Default for [`Rendezvous::connect_timeout_ms`] (`resources.connect_timeout`).
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 120_000;

/// One rank's view of its job's collective group. Its `Debug` leaves the job
/// token out, so logging a record never leaks it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rendezvous {
    /// This process's rank, in `0..world`.
    pub rank: u32,
    /// Number of ranks in the group.
    pub world: u32,
    /// A secret shared by the job's ranks; a connection that does not present it is refused.
    pub job_token: String,
    /// Limit, in milliseconds, on each socket operation or collective while a
    /// peer is silent; past it the collective fails (and an NCCL communicator is
    /// aborted).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Limit, in milliseconds, on joining the group (every neighbour connected,
    /// or the NCCL communicator created).
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Which transport the ranks use, with its addressing.
    pub backend: BackendRendezvous,
}

impl std::fmt::Debug for Rendezvous {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rendezvous")
            .field("rank", &self.rank)
            .field("world", &self.world)
            .field("job_token", &"<redacted>")
            .field("timeout_ms", &self.timeout_ms)
            .field("backend", &self.backend)
            .finish()
    }
}

fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

fn default_connect_timeout_ms() -> u64 {
    DEFAULT_CONNECT_TIMEOUT_MS
}

/// The transport of a collective group and how its ranks find each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BackendRendezvous {
    /// A TCP ring between CPU ranks.
    Tcp {
        /// `host:port` of every rank, indexed by rank; rank `r` connects to `peers[(r+1) % world]`.
        peers: Vec<String>,
        /// Local address this rank listens on, when it differs from `peers[rank]`
        /// (for example `0.0.0.0:29500` behind an advertised host name).
        #[serde(default)]
        listen: Option<String>,
    },
    /// NCCL between GPU ranks, one GPU per rank.
    Nccl {
        /// The `ncclUniqueId` created by the launcher, as 256 hex digits.
        unique_id: String,
        /// CUDA device ordinal of this rank on its machine.
        device: u32,
    },
}

impl Rendezvous {
    /// The collective timeout as a [`Duration`].
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The connection timeout as a [`Duration`].
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// The NCCL unique id as bytes, if this is an NCCL record (validated length and digits).
    pub fn nccl_unique_id(&self) -> Result<Option<[u8; NCCL_UNIQUE_ID_BYTES]>> {
        match &self.backend {
            BackendRendezvous::Nccl { unique_id, .. } => decode_unique_id(unique_id)
                .map(Some)
                .map_err(|message| Error::Invalid(vec![FieldError::new("backend.unique_id", message)])),
            BackendRendezvous::Tcp { .. } => Ok(None),
        }
    }

    /// Checks every field; all problems are reported, each with its field path.
    pub fn validate(&self) -> Result<()> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, path: &str, message: String| {
            if !ok {
                errors.push(FieldError::new(path, message));
            }
        };
        check(self.world >= 1, "world", format!("must be >= 1, got {}", self.world));
        check(self.rank < self.world, "rank", format!("must be < world ({}), got {}", self.world, self.rank));
        check(!self.job_token.is_empty(), "job_token", "must not be empty".to_owned());
        check(
            self.job_token.len() <= MAX_TOKEN_BYTES,
            "job_token",
            format!("must be at most {MAX_TOKEN_BYTES} bytes, got {}", self.job_token.len()),
        );
        check(self.timeout_ms >= 1, "timeout_ms", format!("must be >= 1, got {}", self.timeout_ms));
        check(
            self.connect_timeout_ms >= 1,
            "connect_timeout_ms",
            format!("must be >= 1, got {}", self.connect_timeout_ms),
        );
        match &self.backend {
            BackendRendezvous::Tcp { peers, listen } => {
                check(
                    peers.len() == self.world as usize,
                    "backend.peers",
                    format!("must list one address per rank ({}), got {}", self.world, peers.len()),
                );
                for (i, peer) in peers.iter().enumerate() {
                    check(
                        is_host_port(peer),
                        &format!("backend.peers[{i}]"),
                        format!("must be host:port, got {peer:?}"),
                    );
                }
                if let Some(listen) = listen {
                    check(
                        is_host_port(listen),
                        "backend.listen",
                        format!("must be host:port, got {listen:?}"),
                    );
                }
            }
            BackendRendezvous::Nccl { unique_id, .. } => {
                if let Err(message) = decode_unique_id(unique_id) {
                    check(false, "backend.unique_id", message);
                }
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(Error::Invalid(errors)) }
    }
}

/// How the ranks of one group talk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The TCP ring; every rank needs every rank's address.
    Tcp,
    /// NCCL, one GPU per rank; every rank needs rank 0's unique id.
    Nccl,
}

impl Transport {
    /// The transport of a `stage` group of `world` ranks, by the spec's
    /// `resources.backend` ([`ResourcesSpec::stage_uses_nccl`]): export, on
    /// rank 0 alone, never needs a communicator.
    pub fn of(resources: &ResourcesSpec, stage: Stage, world: u32) -> Transport {
        if resources.stage_uses_nccl(stage, world) { Transport::Nccl } else { Transport::Tcp }
    }
}

/// Where the ranks of one group meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Meeting {
    /// `host:port` of every rank, indexed by rank.
    Tcp { peers: Vec<String> },
    /// The group's NCCL unique id (hex) and each rank's CUDA device ordinal.
    Nccl { unique_id: String, devices: Vec<u32> },
}

impl Meeting {
    /// The meeting of a one-rank TCP group: it talks to nobody, so its one
    /// address is never bound.
    pub fn alone() -> Meeting {
        Meeting::Tcp { peers: vec!["127.0.0.1:0".to_owned()] }
    }

    fn world(&self) -> usize {
        match self {
            Meeting::Tcp { peers } => peers.len(),
            Meeting::Nccl { devices, .. } => devices.len(),
        }
    }
}

/// Every rank's record of one group, in rank order: the job token, the spec's
/// `collective_timeout` and `connect_timeout`, and the meeting.
pub fn group(job_token: &str, timeouts: Timeouts, meeting: &Meeting) -> Vec<Rendezvous> {
    let world = u32::try_from(meeting.world()).unwrap_or(u32::MAX);
    (0..world)
        .map(|rank| Rendezvous {
            rank,
            world,
            job_token: job_token.to_owned(),
            timeout_ms: timeouts.timeout_ms,
            connect_timeout_ms: timeouts.connect_timeout_ms,
            backend: match meeting {
                Meeting::Tcp { peers } => BackendRendezvous::Tcp { peers: peers.clone(), listen: None },
                Meeting::Nccl { unique_id, devices } => {
                    BackendRendezvous::Nccl { unique_id: unique_id.clone(), device: devices[rank as usize] }
                }
            },
        })
        .collect()
}

/// The limits a group's records carry, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub timeout_ms: u64,
    pub connect_timeout_ms: u64,
}

impl Timeouts {
    /// The spec's `resources.collective_timeout` and `connect_timeout`.
    pub fn of(resources: &ResourcesSpec) -> Timeouts {
        Timeouts {
            timeout_ms: resources.collective_timeout.as_millis(),
            connect_timeout_ms: resources.connect_timeout.as_millis(),
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { timeout_ms: DEFAULT_TIMEOUT_MS, connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS }
    }
}

/// Longest job token accepted; the handshake sends it in one small frame.
pub const MAX_TOKEN_BYTES: usize = 256;

/// Renders an NCCL unique id as the hex string [`BackendRendezvous::Nccl`] carries.
pub fn encode_unique_id(bytes: &[u8; NCCL_UNIQUE_ID_BYTES]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_unique_id(hex: &str) -> std::result::Result<[u8; NCCL_UNIQUE_ID_BYTES], String> {
    if hex.len() != 2 * NCCL_UNIQUE_ID_BYTES {
        return Err(format!("must be {} hex digits, got {}", 2 * NCCL_UNIQUE_ID_BYTES, hex.len()));
    }
    let mut out = [0u8; NCCL_UNIQUE_ID_BYTES];
    for (i, byte) in out.iter_mut().enumerate() {
        let pair = &hex[2 * i..2 * i + 2];
        *byte = u8::from_str_radix(pair, 16)
            .map_err(|_| format!("must be hex digits, got {pair:?} at offset {}", 2 * i))?;
    }
    Ok(out)
}

fn is_host_port(addr: &str) -> bool {
    match addr.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(rank: u32, world: u32, peers: &[&str]) -> Rendezvous {
        Rendezvous {
            rank,
            world,
            job_token: "t".into(),
            timeout_ms: 1000,
            connect_timeout_ms: 1000,
            backend: BackendRendezvous::Tcp {
                peers: peers.iter().map(|p| p.to_string()).collect(),
                listen: None,
            },
        }
    }

    fn check(record: Rendezvous, expected: &[&str]) {
        let got: Vec<String> = match record.validate() {
            Ok(()) => Vec::new(),
            Err(e) => e.field_errors().iter().map(ToString::to_string).collect(),
        };
        assert_eq!(got, expected);
    }

    #[test]
    fn debug_never_shows_the_job_token() {
        let mut record = tcp(0, 1, &["a:1"]);
        record.job_token = "s3cret-token".into();
        let shown = format!("{record:?}");
        assert!(!shown.contains("s3cret-token") && shown.contains("job_token: \"<redacted>\""), "{shown}");
    }

    #[test]
    fn validation_names_each_bad_field() {
        check(tcp(1, 2, &["127.0.0.1:1", "127.0.0.1:2"]), &[]);
        check(tcp(2, 2, &["a:1", "b:2"]), &["rank: must be < world (2), got 2"]);
        check(tcp(0, 2, &["a:1"]), &["backend.peers: must list one address per rank (2), got 1"]);
        check(tcp(0, 2, &["a:1", "b"]), &["backend.peers[1]: must be host:port, got \"b\""]);
        let mut no_token = tcp(0, 1, &["a:1"]);
        no_token.job_token.clear();
        no_token.timeout_ms = 0;
        check(no_token, &["job_token: must not be empty", "timeout_ms: must be >= 1, got 0"]);
    }

    #[test]
    fn nccl_unique_id_round_trips_through_hex_and_json() {
        let mut id = [0u8; NCCL_UNIQUE_ID_BYTES];
        for (i, b) in id.iter_mut().enumerate() {
            *b = (i * 7 % 256) as u8;
        }
        let record = Rendezvous {
            rank: 0,
            world: 1,
            job_token: "job-1".into(),
            timeout_ms: DEFAULT_TIMEOUT_MS,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            backend: BackendRendezvous::Nccl { unique_id: encode_unique_id(&id), device: 0 },
        };
        let json = serde_json::to_string(&record).unwrap();
        let back: Rendezvous = serde_json::from_str(&json).unwrap();
        assert_eq!(back, record);
        assert_eq!(back.nccl_unique_id().unwrap(), Some(id));

        let mut short = record.clone();
        short.backend = BackendRendezvous::Nccl { unique_id: "abc".into(), device: 0 };
        check(short, &["backend.unique_id: must be 256 hex digits, got 3"]);
    }

    #[test]
    fn a_group_gets_one_valid_record_per_rank_with_the_specs_timeouts() {
        let spec = crate::spec::JobSpec::from_yaml(
            "model: {arch: resnet20, num_classes: 10}\ndata: {format: idx, root: d}\n\
             resources: {device: cuda, world_size: 2, collective_timeout: 90s, connect_timeout: 45s}\n",
        )
        .unwrap();
        let timeouts = Timeouts::of(&spec.resources);
        assert_eq!(timeouts, Timeouts { timeout_ms: 90_000, connect_timeout_ms: 45_000 });
        assert_eq!(Transport::of(&spec.resources, Stage::Finetune, 2), Transport::Nccl);
        assert_eq!(Transport::of(&spec.resources, Stage::Export, 1), Transport::Tcp);

        let peers = vec!["10.0.0.1:4000".to_owned(), "10.0.0.2:4001".to_owned()];
        let tcp = group("secret", timeouts, &Meeting::Tcp { peers: peers.clone() });
        assert_eq!(tcp.len(), 2);
        for (rank, record) in tcp.iter().enumerate() {
            record.validate().unwrap();
            assert_eq!((record.rank as usize, record.world, record.connect_timeout_ms), (rank, 2, 45_000));
            assert_eq!(record.backend, BackendRendezvous::Tcp { peers: peers.clone(), listen: None });
        }
        let nccl =
            group("secret", timeouts, &Meeting::Nccl { unique_id: "ab".repeat(128), devices: vec![0, 1, 0] });
        assert_eq!(nccl.len(), 3);
        nccl[2].validate().unwrap();
        assert_eq!(nccl[1].backend, BackendRendezvous::Nccl { unique_id: "ab".repeat(128), device: 1 });
        let alone = group("t", Timeouts::default(), &Meeting::alone());
        alone[0].validate().unwrap();
        assert_eq!((alone.len(), alone[0].timeout_ms), (1, DEFAULT_TIMEOUT_MS));
    }

    #[test]
    fn timeout_defaults_when_absent() {
        let json = r#"{"rank":0,"world":1,"job_token":"x","backend":{"kind":"tcp","peers":["h:1"]}}"#;
        let record: Rendezvous = serde_json::from_str(json).unwrap();
        assert_eq!(record.timeout(), Duration::from_secs(600));
        assert_eq!(record.connect_timeout(), Duration::from_secs(120));
    }
}
