//! Coordinator configuration, layered: defaults → optional YAML file →
//! `SCOP_*` environment → flags. `main.rs` builds it once and passes it down.
//!
//! Flags and environment variables are both read by clap (a flag wins over
//! its variable); the file sits below both.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// Everything `scopd` needs to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Directory of the database (`scop.db`) and, unless `artifacts` says
    /// otherwise, of the artifacts.
    pub data_dir: PathBuf,
    /// The shared directory of checkpoints and exports, which every worker
    /// must see at the same path; `<data_dir>/artifacts` when `None`.
    pub artifacts: Option<PathBuf>,
    /// Address of the public gRPC API (`JobService`).
    pub public_addr: SocketAddr,
    /// Address of the worker gRPC API (`WorkerService`).
    pub worker_addr: SocketAddr,
    /// Address of the HTTP `/metrics` endpoint.
    pub metrics_addr: SocketAddr,
    /// The users file (names, roles, token hashes, quotas); reloaded on SIGHUP.
    pub users_file: Option<PathBuf>,
    /// Deprecated: file of shared client bearer tokens, one per line (`#`
    /// starts a comment), each holder the admin "admin". Only without `users_file`.
    pub token_file: Option<PathBuf>,
    /// File of worker bearer tokens, same format.
    pub worker_token_file: Option<PathBuf>,
    /// Serve both gRPC ports without authentication (logged as a warning).
    pub insecure_no_auth: bool,
    /// TLS certificate chain and key (PEM) of the public port; plain text when `None`.
    pub public_tls: Option<TlsFiles>,
    /// TLS certificate chain and key (PEM) of the worker port.
    pub worker_tls: Option<TlsFiles>,
    /// PEM CA certificate(s) the public port verifies client certificates
    /// against; a verified certificate's subject CN names a user (its
    /// `cert_subjects`), so it needs no token. `None`: no client certificates.
    pub client_ca: Option<PathBuf>,
    /// Largest request message on the public port, in bytes.
    pub max_message_bytes: usize,
    /// Largest message on the worker port (score statistics are the big ones).
    pub worker_max_message_bytes: usize,
    /// How often workers are told to heartbeat.
    pub heartbeat_interval_ms: u32,
    /// A worker silent for this long is declared lost.
    pub heartbeat_timeout_ms: u32,
    /// Directories a spec's `data.root` (and `model.init_from`) must resolve
    /// inside, checked at submission. Empty: not checked here (workers still check).
    pub data_roots: Vec<PathBuf>,
    /// Directories of models: `model.init_from` and knockoff generators.
    pub models_roots: Vec<PathBuf>,
}

/// A PEM certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("scop-data"),
            artifacts: None,
            public_addr: SocketAddr::from(([127, 0, 0, 1], 7070)),
            worker_addr: SocketAddr::from(([127, 0, 0, 1], 7071)),
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], 7072)),
            users_file: None,
            token_file: None,
            worker_token_file: None,
            insecure_no_auth: false,
            public_tls: None,
            worker_tls: None,
            client_ca: None,
            max_message_bytes: 4 << 20,
            worker_max_message_bytes: 64 << 20,
            heartbeat_interval_ms: 5_000,
            heartbeat_timeout_ms: 30_000,
            data_roots: Vec::new(),
            models_roots: Vec::new(),
        }
    }
}

/// The optional config file: every field optional, unknown fields refused.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub artifacts_dir: Option<PathBuf>,
    pub public_addr: Option<SocketAddr>,
    pub worker_addr: Option<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    pub users_file: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    pub worker_token_file: Option<PathBuf>,
    pub insecure_no_auth: Option<bool>,
    pub public_tls: Option<TlsFiles>,
    pub worker_tls: Option<TlsFiles>,
    pub client_ca: Option<PathBuf>,
    pub max_message_bytes: Option<usize>,
    pub worker_max_message_bytes: Option<usize>,
    pub heartbeat_interval_ms: Option<u32>,
    pub heartbeat_timeout_ms: Option<u32>,
    pub data_roots: Option<Vec<PathBuf>>,
    pub models_roots: Option<Vec<PathBuf>>,
}

/// Flags of `scopd`; each also reads its `SCOP_*` variable.
#[derive(Debug, Clone, Default, PartialEq, clap::Args)]
pub struct Flags {
    /// YAML config file, applied below environment variables and flags.
    #[arg(long, env = "SCOP_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory of the database and artifacts [default: scop-data].
    #[arg(long, env = "SCOP_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Shared directory of checkpoints and exports, at the same path on every
    /// worker [default: <data-dir>/artifacts].
    #[arg(long, env = "SCOP_ARTIFACTS_DIR")]
    pub artifacts_dir: Option<PathBuf>,
    /// Public gRPC API address [default: 127.0.0.1:7070].
    #[arg(long, env = "SCOP_PUBLIC_ADDR")]
    pub public_addr: Option<SocketAddr>,
    /// Worker gRPC API address [default: 127.0.0.1:7071].
    #[arg(long, env = "SCOP_WORKER_ADDR")]
    pub worker_addr: Option<SocketAddr>,
    /// HTTP /metrics address [default: 127.0.0.1:7072].
    #[arg(long, env = "SCOP_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// The users file: names, roles, token hashes and quotas (reloaded on SIGHUP).
    #[arg(long = "users", env = "SCOP_USERS_FILE")]
    pub users_file: Option<PathBuf>,
    /// Deprecated: file of shared client tokens, one per line, each holder an
    /// admin. Only without --users.
    #[arg(long, env = "SCOP_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// File of worker bearer tokens, one per line.
    #[arg(long, env = "SCOP_WORKER_TOKEN_FILE")]
    pub worker_token_file: Option<PathBuf>,
    /// Serve both gRPC ports without authentication. Never do this on a shared network.
    #[arg(long, env = "SCOP_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
    /// PEM certificate chain of the public port (with --tls-key).
    #[arg(long, env = "SCOP_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the public port.
    #[arg(long, env = "SCOP_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM certificate chain of the worker port (with --worker-tls-key).
    #[arg(long, env = "SCOP_WORKER_TLS_CERT", requires = "worker_tls_key")]
    pub worker_tls_cert: Option<PathBuf>,
    /// PEM private key of the worker port.
    #[arg(long, env = "SCOP_WORKER_TLS_KEY", requires = "worker_tls_cert")]
    pub worker_tls_key: Option<PathBuf>,
    /// PEM CA of client certificates (mTLS) on the public port: a certificate
    /// it signed names the user whose `cert_subjects` lists its subject CN.
    /// Needs --tls-cert and --users; tokens keep working.
    #[arg(long, env = "SCOP_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// Largest public request message in bytes [default: 4 MiB].
    #[arg(long, env = "SCOP_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// A worker silent for this many milliseconds is lost [default: 30000].
    #[arg(long, env = "SCOP_HEARTBEAT_TIMEOUT_MS")]
    pub heartbeat_timeout_ms: Option<u32>,
    /// A directory specs may read datasets from (repeatable; the variable
    /// separates them with `:`). Spec paths are checked at submission.
    #[arg(long = "data-root", env = "SCOP_DATA_ROOTS", value_delimiter = ':')]
    pub data_roots: Vec<PathBuf>,
    /// A directory of models: checkpoints and knockoff generators (repeatable).
    #[arg(long = "models-root", env = "SCOP_MODELS_ROOTS", value_delimiter = ':')]
    pub models_roots: Vec<PathBuf>,
}

impl Config {
    /// Defaults, then the file named by `flags.config` (if any), then `flags`
    /// (which already hold the environment), then a consistency check.
    pub fn load(flags: &Flags) -> Result<Config> {
        let config = Config::layered(flags)?;
        config.check()?;
        Ok(config)
    }

    /// [`Config::load`] without the final check, for callers that fill in
    /// more first (`scopd standalone` generates the token files).
    pub fn layered(flags: &Flags) -> Result<Config> {
        let mut config = Config::default();
        if let Some(path) = &flags.config {
            config.apply_file(&read_file_config(path)?);
        }
        config.apply_flags(flags);
        Ok(config)
    }

    /// Overrides every field the file sets.
    pub fn apply_file(&mut self, file: &FileConfig) {
        let f = file.clone();
        set(&mut self.data_dir, f.data_dir);
        set_some(&mut self.artifacts, f.artifacts_dir);
        set(&mut self.public_addr, f.public_addr);
        set(&mut self.worker_addr, f.worker_addr);
        set(&mut self.metrics_addr, f.metrics_addr);
        set_some(&mut self.users_file, f.users_file);
        set_some(&mut self.token_file, f.token_file);
        set_some(&mut self.worker_token_file, f.worker_token_file);
        set(&mut self.insecure_no_auth, f.insecure_no_auth);
        set(&mut self.data_roots, f.data_roots);
        set(&mut self.models_roots, f.models_roots);
        set_some(&mut self.public_tls, f.public_tls);
        set_some(&mut self.worker_tls, f.worker_tls);
        set_some(&mut self.client_ca, f.client_ca);
        set(&mut self.max_message_bytes, f.max_message_bytes);
        set(&mut self.worker_max_message_bytes, f.worker_max_message_bytes);
        set(&mut self.heartbeat_interval_ms, f.heartbeat_interval_ms);
        set(&mut self.heartbeat_timeout_ms, f.heartbeat_timeout_ms);
    }

    /// Overrides every field a flag or its variable sets.
    pub fn apply_flags(&mut self, flags: &Flags) {
        let f = flags.clone();
        set(&mut self.data_dir, f.data_dir);
        set_some(&mut self.artifacts, f.artifacts_dir);
        set(&mut self.public_addr, f.public_addr);
        set(&mut self.worker_addr, f.worker_addr);
        set(&mut self.metrics_addr, f.metrics_addr);
        set_some(&mut self.users_file, f.users_file);
        set_some(&mut self.token_file, f.token_file);
        set_some(&mut self.worker_token_file, f.worker_token_file);
        self.insecure_no_auth |= f.insecure_no_auth;
        if !f.data_roots.is_empty() {
            self.data_roots = f.data_roots;
        }
        if !f.models_roots.is_empty() {
            self.models_roots = f.models_roots;
        }
        if let (Some(cert), Some(key)) = (f.tls_cert, f.tls_key) {
            self.public_tls = Some(TlsFiles { cert, key });
        }
        if let (Some(cert), Some(key)) = (f.worker_tls_cert, f.worker_tls_key) {
            self.worker_tls = Some(TlsFiles { cert, key });
        }
        set_some(&mut self.client_ca, f.client_ca);
        set(&mut self.max_message_bytes, f.max_message_bytes);
        set(&mut self.heartbeat_timeout_ms, f.heartbeat_timeout_ms);
    }

    /// Rejects settings that cannot work together.
    pub fn check(&self) -> Result<()> {
        if !self.insecure_no_auth && self.token_file.is_none() && self.users_file.is_none() {
            return Err(Error::Config(
                "the public API needs users: set --users (or the deprecated --token-file, or pass \
                 --insecure-no-auth)"
                    .into(),
            ));
        }
        if self.users_file.is_some() && self.token_file.is_some() {
            return Err(Error::Config(
                "--users and --token-file exclude each other: the shared token file is only for \
                 clusters without a users file"
                    .into(),
            ));
        }
        if self.client_ca.is_some() && (self.public_tls.is_none() || self.users_file.is_none()) {
            return Err(Error::Config(
                "--client-ca needs TLS on the public port (--tls-cert, --tls-key) and --users, whose \
                 cert_subjects map certificate subjects to users"
                    .into(),
            ));
        }
        if !self.insecure_no_auth && self.worker_token_file.is_none() {
            return Err(Error::Config(
                "the worker API needs worker tokens: set --worker-token-file (or pass --insecure-no-auth)"
                    .into(),
            ));
        }
        if self.heartbeat_timeout_ms <= self.heartbeat_interval_ms {
            return Err(Error::Config(format!(
                "heartbeat_timeout_ms must be > heartbeat_interval_ms ({}), got {}",
                self.heartbeat_interval_ms, self.heartbeat_timeout_ms
            )));
        }
        for (name, value) in [
            ("max_message_bytes", self.max_message_bytes),
            ("worker_max_message_bytes", self.worker_max_message_bytes),
        ] {
            if value < 1024 {
                return Err(Error::Config(format!("{name} must be >= 1024, got {value}")));
            }
        }
        Ok(())
    }

    /// The database file inside the data directory.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("scop.db")
    }

    /// The shared directory of checkpoints and artifacts (by default under the data dir).
    pub fn artifacts_dir(&self) -> PathBuf {
        self.artifacts.clone().unwrap_or_else(|| self.data_dir.join("artifacts"))
    }
}

/// Reads and parses a YAML config file; errors name the file and the field.
pub fn read_file_config(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| Error::Io { path: path.display().to_string(), source })?;
    serde_norway::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *slot = value;
    }
}

fn set_some<T>(slot: &mut Option<T>, value: Option<T>) {
    if value.is_some() {
        *slot = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        flags: Flags,
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("scopd.yaml");
        std::fs::write(
            &file,
            "data_dir: /var/lib/scop\npublic_addr: 0.0.0.0:8080\nworker_token_file: w.tok\nheartbeat_timeout_ms: 9000\n\
             artifacts_dir: /shared/artifacts\n",
        )
        .unwrap();
        let cli = Cli::try_parse_from([
            "scopd",
            "--config",
            file.to_str().unwrap(),
            "--public-addr",
            "127.0.0.1:9090",
            "--insecure-no-auth",
        ])
        .unwrap();
        let config = Config::load(&cli.flags).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/scop"));
        assert_eq!(config.artifacts_dir(), PathBuf::from("/shared/artifacts"));
        assert_eq!(Config::default().artifacts_dir(), PathBuf::from("scop-data/artifacts"));
        assert_eq!(config.public_addr, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(config.worker_addr, "127.0.0.1:7071".parse().unwrap());
        assert_eq!(config.heartbeat_timeout_ms, 9000);
        assert!(config.insecure_no_auth);
        assert_eq!(config.worker_token_file, Some(PathBuf::from("w.tok")));
    }

    #[test]
    fn bad_files_and_missing_tokens_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("scopd.yaml");
        std::fs::write(&file, "data_dri: x\n").unwrap();
        let err = read_file_config(&file).unwrap_err().to_string();
        assert!(err.contains("scopd.yaml") && err.contains("unknown field `data_dri`"), "{err}");

        let err = Config::load(&Flags::default()).unwrap_err().to_string();
        assert!(err.contains("--users"), "{err}");
        let flags = Flags {
            users_file: Some("users.yaml".into()),
            token_file: Some("c.tok".into()),
            worker_token_file: Some("w.tok".into()),
            ..Flags::default()
        };
        let err = Config::load(&flags).unwrap_err().to_string();
        assert!(err.contains("exclude each other"), "{err}");
        let flags = Flags { token_file: Some("c.tok".into()), ..Flags::default() };
        let err = Config::load(&flags).unwrap_err().to_string();
        assert!(err.contains("--worker-token-file"), "{err}");
        let flags = Flags { insecure_no_auth: true, ..Flags::default() };
        assert!(Config::load(&flags).is_ok());
        let flags = Flags {
            users_file: Some("users.yaml".into()),
            worker_token_file: Some("w.tok".into()),
            client_ca: Some("clients.pem".into()),
            ..Flags::default()
        };
        let err = Config::load(&flags).unwrap_err().to_string();
        assert!(err.contains("--client-ca needs TLS"), "{err}");
        let flags = Flags { tls_cert: Some("s.pem".into()), tls_key: Some("s.key".into()), ..flags };
        assert_eq!(Config::load(&flags).unwrap().client_ca, Some(PathBuf::from("clients.pem")));
    }
}
