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
    /// Offer CPU slots only, even when CUDA GPUs are present.
    #[arg(long, env = "SCOP_CPU_ONLY")]
    pub cpu: bool,
    /// CPU slots to offer beside the GPUs when CUDA GPUs are present, so that
    /// jobs with `resources.device: cpu` run here too (0: GPU slots only).
    #[arg(long, env = "SCOP_CPU_SLOTS", default_value_t = 0)]
    pub cpu_slots: u32,
    /// Intra-op threads of each CPU rank [default: this machine's cores split between the slots].
    #[arg(long, env = "SCOP_RANK_THREADS")]
    pub threads: Option<u32>,
    /// Host name or address other ranks reach this worker's ring listeners at
    /// (on Kubernetes, the pod IP) [default: this machine's address on the
    /// interface that routes to the coordinator; loopback for a loopback coordinator].
    #[arg(long, env = "SCOP_ADVERTISE_HOST")]
    pub advertise_host: Option<String>,
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
            let gpus = (0..cuda_devices).map(|index| pb::Device {
                kind: "cuda".into(),
                index,
                name: format!("cuda:{index}"),
                memory_bytes: 0,
            });
            // Every slot has its own index: the coordinator tracks busy slots by it.
            let cpus = (cuda_devices..cuda_devices + self.cpu_slots).map(|index| pb::Device {
                kind: "cpu".into(),
                index,
                name: "cpu".into(),
                memory_bytes: 0,
            });
            gpus.chain(cpus).collect()
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
        let advertise_host = match &self.advertise_host {
            Some(host) => host.clone(),
            None => match super::advertise::routable_host(&coordinator) {
                Ok(ip) => ip.to_string(),
                // The coordinator may not resolve yet (it reconnects later): start anyway.
                Err(error) => {
                    tracing::warn!(%error, "advertising 127.0.0.1, which only ranks on this machine reach; pass --advertise-host");
                    "127.0.0.1".to_owned()
                }
            },
        };
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
            advertise_host,
            roots: (!self.data_roots.is_empty() || !self.models_roots.is_empty()).then(|| {
                scop_core::sandbox::Roots { data: self.data_roots.clone(), models: self.models_roots.clone() }
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        agent: AgentArgs,
    }

    fn config(flags: &[&str]) -> AgentConfig {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "secret\n").unwrap();
        let mut argv =
            vec!["scop-agent", "--token-file", token.to_str().unwrap(), "--worker-bin", "/bin/true"];
        argv.extend_from_slice(flags);
        Flags::try_parse_from(argv).unwrap().agent.config(0).unwrap()
    }

    #[test]
    fn by_default_a_remote_coordinator_is_told_a_routable_address() {
        // A documentation address (TEST-NET-1): routed like any remote one, never contacted.
        let advertised = config(&["--coordinator", "192.0.2.1:7071"]).advertise_host;
        match super::super::advertise::routable_host("http://192.0.2.1:7071") {
            // Ranks on other nodes can reach this address; 127.0.0.1 they could not.
            Ok(ip) => assert_eq!(advertised, ip.to_string()),
            // Only on a machine with no route beyond loopback.
            Err(_) => assert_eq!(advertised, "127.0.0.1"),
        }
        assert_eq!(config(&["--coordinator", "127.0.0.1:7071"]).advertise_host, "127.0.0.1");
        let chosen = config(&["--coordinator", "192.0.2.1:7071", "--advertise-host", "10.1.2.3"]);
        assert_eq!(chosen.advertise_host, "10.1.2.3");
    }
}
