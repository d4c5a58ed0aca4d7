//! The agent's flags (`scop-agent`, `scop-worker agent`), and its configuration
//! derived from them and from this machine (devices, host name, token).

use std::path::PathBuf;

use scop_proto::v1 as pb;

use super::{AgentConfig, AgentError};

/// Flags of `scop-agent` and `scop-worker agent`.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The coordinator's worker port, `host:port` or `http://host:port`.
    #[arg(long, env = "SCOP_COORDINATOR")]
    pub coordinator: String,
    /// PEM file of the CA that signed the worker port's certificate; implies TLS
    /// (an `https://` coordinator is otherwise checked against the system's CAs).
    #[arg(long, env = "SCOP_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// File holding the worker bearer token (the first non-comment line).
    #[arg(long, env = "SCOP_WORKER_TOKEN_FILE")]
    pub token_file: PathBuf,
    /// CPU slots to offer when no CUDA GPU is present (or with --cpu).
    #[arg(long, env = "SCOP_SLOTS", default_value_t = 1)]
    pub slots: u32,
    /// Offer CPU slots even when CUDA GPUs are present.
    #[arg(long, env = "SCOP_CPU_ONLY")]
    pub cpu: bool,
    /// Intra-op threads of each CPU rank [default: this machine's cores split between the slots].
    #[arg(long, env = "SCOP_RANK_THREADS")]
    pub threads: Option<u32>,
    /// Host name or address other ranks reach this worker's ring listeners at
    /// (on Kubernetes, the pod IP).
    #[arg(long, env = "SCOP_ADVERTISE_HOST", default_value = "127.0.0.1")]
    pub advertise_host: String,
    /// The executable run for each rank as `<bin> rank …` (default: `scop-worker agent`
    /// runs itself; `scop-agent` runs the `scop-worker` beside it).
    #[arg(long)]
    pub worker_bin: Option<PathBuf>,
    /// Where task specs are written (default: a directory under the temp dir).
    #[arg(long, env = "SCOP_SCRATCH_DIR")]
    pub scratch_dir: Option<PathBuf>,
    /// A directory specs may read datasets from (repeatable; the variable
    /// separates them with `:`). With a root given, a task whose spec paths
    /// resolve (after symbolic links) outside the roots fails before any file is opened.
    #[arg(long = "data-root", env = "SCOP_DATA_ROOTS", value_delimiter = ':')]
    pub data_roots: Vec<PathBuf>,
    /// A directory of models: checkpoints and the only place knockoff
    /// generators load from (repeatable).
    #[arg(long = "models-root", env = "SCOP_MODELS_ROOTS", value_delimiter = ':')]
    pub models_roots: Vec<PathBuf>,
}

impl AgentArgs {
    /// The configuration; `cuda_devices` is what libtorch sees (probed by the
    /// caller before any async runtime starts).
    pub fn config(&self, cuda_devices: u32) -> Result<AgentConfig, AgentError> {
        let token = scop_connect::read_token(&self.token_file).map_err(|e| {
            let reason = match e {
                scop_connect::TokenFileError::Read(e) => e.to_string(),
                scop_connect::TokenFileError::Empty => "no token in it".into(),
            };
            AgentError::Token(self.token_file.display().to_string(), reason)
        })?;
        let cpu_cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let devices: Vec<pb::Device> = if cuda_devices > 0 && !self.cpu {
            (0..cuda_devices)
                .map(|index| pb::Device {
                    kind: "cuda".into(),
                    index,
                    name: format!("cuda:{index}"),
                    memory_bytes: 0,
                })
                .collect()
        } else {
            (0..self.slots.max(1))
                .map(|index| pb::Device { kind: "cpu".into(), index, name: "cpu".into(), memory_bytes: 0 })
                .collect()
        };
        let scheme = if self.ca_cert.is_some() { "https" } else { "http" };
        let coordinator = if self.coordinator.contains("://") {
            self.coordinator.clone()
        } else {
            format!("{scheme}://{}", self.coordinator)
        };
        let ca_cert = match &self.ca_cert {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|e| AgentError::Flag(format!("--ca-cert {}: {e}", path.display())))?,
            ),
            None => None,
        };
        if ca_cert.is_some() && !coordinator.starts_with("https://") {
            return Err(AgentError::Flag(format!(
                "--ca-cert needs an https:// coordinator, got {coordinator}"
            )));
        }
        let worker_bin = match &self.worker_bin {
            Some(bin) => bin.clone(),
            None => std::env::current_exe().map_err(|e| AgentError::WorkerBin(e.to_string()))?,
        };
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        let scratch_dir = self
            .scratch_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join(format!("scop-agent-{}", std::process::id())));
        let slots = u32::try_from(devices.len()).unwrap_or(1).max(1);
        let rank_threads = match self.threads {
            Some(0) => return Err(AgentError::Flag("--threads: must be >= 1, got 0".into())),
            Some(n) => n,
            None => (cpu_cores / slots).max(1),
        };
        Ok(AgentConfig {
            coordinator,
            ca_cert,
            token,
            hostname,
            devices,
            cpu_cores,
            rank_threads,
            worker_bin,
            scratch_dir,
            advertise_host: self.advertise_host.clone(),
            roots: (!self.data_roots.is_empty() || !self.models_roots.is_empty()).then(|| {
                scop_core::sandbox::Roots { data: self.data_roots.clone(), models: self.models_roots.clone() }
            }),
        })
    }
}
