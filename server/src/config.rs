//! Coordinator configuration: one set of settings, merged once, in the order
//! defaults → optional YAML file → `SCOP_*` environment → flags.
//!
//! [`Config`] is the resolved configuration `main.rs` builds once and passes
//! down. [`Layer`] is one *layer* of it: the same struct is the shape of the
//! YAML file (keys are the field names) and the command line (each flag
//! also reads its `SCOP_*` variable, clap putting the flag above the
//! variable), so a setting cannot exist in one layer and be missing from
//! another. [`Config::merge`] is the one place a layer is applied, to the
//! defaults first for the file, then for the environment and flags.
//!
//! A switch (`insecure_no_auth`) can only be turned on by a later layer.

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
            max_message_bytes: 4 << 20,
            worker_max_message_bytes: 64 << 20,
            heartbeat_interval_ms: 5_000,
            heartbeat_timeout_ms: 30_000,
            data_roots: Vec::new(),
            models_roots: Vec::new(),
        }
    }
}

/// One layer of settings: the YAML file's shape (unknown keys refused) and
/// the command line's, where each flag also reads its `SCOP_*` variable.
/// Every field is optional; [`Config::merge`] applies those that are set.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    /// YAML config file, applied below environment variables and flags.
    #[arg(long, env = "SCOP_CONFIG")]
    #[serde(skip)]
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
    #[serde(default)]
    pub insecure_no_auth: bool,
    /// The public port's certificate and key (`public_tls:` in the file).
    #[command(flatten)]
    #[serde(default)]
    pub public_tls: PublicTlsLayer,
    /// The worker port's certificate and key (`worker_tls:` in the file).
    #[command(flatten)]
    #[serde(default)]
    pub worker_tls: WorkerTlsLayer,
    /// Largest public request message in bytes [default: 4 MiB].
    #[arg(long, env = "SCOP_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Largest message on the worker port in bytes [default: 64 MiB].
    #[arg(long, env = "SCOP_WORKER_MAX_MESSAGE_BYTES")]
    pub worker_max_message_bytes: Option<usize>,
    /// How often workers are told to heartbeat, in milliseconds [default: 5000].
    #[arg(long, env = "SCOP_HEARTBEAT_INTERVAL_MS")]
    pub heartbeat_interval_ms: Option<u32>,
    /// A worker silent for this many milliseconds is lost [default: 30000].
    #[arg(long, env = "SCOP_HEARTBEAT_TIMEOUT_MS")]
    pub heartbeat_timeout_ms: Option<u32>,
    /// A directory specs may read datasets from (repeatable; the variable
    /// separates them with `:`). Spec paths are checked at submission.
    #[arg(long = "data-root", env = "SCOP_DATA_ROOTS", value_delimiter = ':')]
    #[serde(default)]
    pub data_roots: Vec<PathBuf>,
    /// A directory of models: checkpoints and knockoff generators (repeatable).
    #[arg(long = "models-root", env = "SCOP_MODELS_ROOTS", value_delimiter = ':')]
    #[serde(default)]
    pub models_roots: Vec<PathBuf>,
}

/// The public port's TLS files in a [`Layer`]: `--tls-cert`/`--tls-key`, or
/// `public_tls: {cert, key}` in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct PublicTlsLayer {
    /// PEM certificate chain of the public port (with --tls-key).
    #[arg(
        id = "tls_cert",
        value_name = "TLS_CERT",
        long = "tls-cert",
        env = "SCOP_TLS_CERT",
        requires = "tls_key"
    )]
    pub cert: Option<PathBuf>,
    /// PEM private key of the public port.
    #[arg(
        id = "tls_key",
        value_name = "TLS_KEY",
        long = "tls-key",
        env = "SCOP_TLS_KEY",
        requires = "tls_cert"
    )]
    pub key: Option<PathBuf>,
}

/// The worker port's TLS files in a [`Layer`]: `--worker-tls-cert`/`--worker-tls-key`,
/// or `worker_tls: {cert, key}` in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct WorkerTlsLayer {
    /// PEM certificate chain of the worker port (with --worker-tls-key).
    #[arg(
        id = "worker_tls_cert",
        value_name = "WORKER_TLS_CERT",
        long = "worker-tls-cert",
        env = "SCOP_WORKER_TLS_CERT",
        requires = "worker_tls_key"
    )]
    pub cert: Option<PathBuf>,
    /// PEM private key of the worker port.
    #[arg(
        id = "worker_tls_key",
        value_name = "WORKER_TLS_KEY",
        long = "worker-tls-key",
        env = "SCOP_WORKER_TLS_KEY",
        requires = "worker_tls_cert"
    )]
    pub key: Option<PathBuf>,
}

/// The pair of a TLS layer: both files, neither, or an error naming the half missing.
fn tls_pair(name: &str, cert: Option<PathBuf>, key: Option<PathBuf>) -> Result<Option<TlsFiles>> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert, key })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(Error::Config(format!("{name}: a certificate was given without its key"))),
        (None, Some(_)) => Err(Error::Config(format!("{name}: a key was given without its certificate"))),
    }
}

impl Config {
    /// Defaults, then the file named by `layer.config` (if any), then `layer`
    /// (flags, which already hold the environment), then a consistency check.
    pub fn load(layer: &Layer) -> Result<Config> {
        let config = Config::layered(layer)?;
        config.check()?;
        Ok(config)
    }

    /// [`Config::load`] without the final check, for callers that fill in
    /// more first (`scopd standalone` generates the token files).
    pub fn layered(layer: &Layer) -> Result<Config> {
        let mut config = Config::default();
        if let Some(path) = &layer.config {
            config.merge(&read_file_config(path)?)?;
        }
        config.merge(layer)?;
        Ok(config)
    }

    /// Overrides every setting the layer sets: the one merge, for the file
    /// and for the environment and flags alike.
    pub fn merge(&mut self, layer: &Layer) -> Result<()> {
        let l = layer.clone();
        set(&mut self.data_dir, l.data_dir);
        set_some(&mut self.artifacts, l.artifacts_dir);
        set(&mut self.public_addr, l.public_addr);
        set(&mut self.worker_addr, l.worker_addr);
        set(&mut self.metrics_addr, l.metrics_addr);
        set_some(&mut self.users_file, l.users_file);
        set_some(&mut self.token_file, l.token_file);
        set_some(&mut self.worker_token_file, l.worker_token_file);
        self.insecure_no_auth |= l.insecure_no_auth;
        set_some(&mut self.public_tls, tls_pair("public_tls", l.public_tls.cert, l.public_tls.key)?);
        set_some(&mut self.worker_tls, tls_pair("worker_tls", l.worker_tls.cert, l.worker_tls.key)?);
        set(&mut self.max_message_bytes, l.max_message_bytes);
        set(&mut self.worker_max_message_bytes, l.worker_max_message_bytes);
        set(&mut self.heartbeat_interval_ms, l.heartbeat_interval_ms);
        set(&mut self.heartbeat_timeout_ms, l.heartbeat_timeout_ms);
        if !l.data_roots.is_empty() {
            self.data_roots = l.data_roots;
        }
        if !l.models_roots.is_empty() {
            self.models_roots = l.models_roots;
        }
        Ok(())
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
pub fn read_file_config(path: &Path) -> Result<Layer> {
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
        flags: Layer,
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

        let err = Config::load(&Layer::default()).unwrap_err().to_string();
        assert!(err.contains("--users"), "{err}");
        let flags = Layer {
            users_file: Some("users.yaml".into()),
            token_file: Some("c.tok".into()),
            worker_token_file: Some("w.tok".into()),
            ..Layer::default()
        };
        let err = Config::load(&flags).unwrap_err().to_string();
        assert!(err.contains("exclude each other"), "{err}");
        let flags = Layer { token_file: Some("c.tok".into()), ..Layer::default() };
        let err = Config::load(&flags).unwrap_err().to_string();
        assert!(err.contains("--worker-token-file"), "{err}");
        let flags = Layer { insecure_no_auth: true, ..Layer::default() };
        assert!(Config::load(&flags).is_ok());
    }

    /// A configuration whose every setting differs from the defaults and from
    /// the other layers' (`n` tells the layers apart).
    fn every_setting(n: u16) -> Config {
        let path = |what: &str| PathBuf::from(format!("/layer{n}/{what}"));
        let addr = |port: u16| SocketAddr::from(([10, 0, 0, n as u8], port + n));
        Config {
            data_dir: path("data"),
            artifacts: Some(path("artifacts")),
            public_addr: addr(1000),
            worker_addr: addr(2000),
            metrics_addr: addr(3000),
            users_file: Some(path("users.yaml")),
            token_file: Some(path("client.tok")),
            worker_token_file: Some(path("worker.tok")),
            insecure_no_auth: true,
            public_tls: Some(TlsFiles { cert: path("public.pem"), key: path("public.key") }),
            worker_tls: Some(TlsFiles { cert: path("worker.pem"), key: path("worker.key") }),
            max_message_bytes: 10_000 + usize::from(n),
            worker_max_message_bytes: 20_000 + usize::from(n),
            heartbeat_interval_ms: 100 + u32::from(n),
            heartbeat_timeout_ms: 1_000 + u32::from(n),
            data_roots: vec![path("data-a"), path("data-b")],
            models_roots: vec![path("models-a"), path("models-b")],
        }
    }

    /// `c` as the YAML file.
    fn as_file(c: &Config) -> String {
        let (public, worker) = (c.public_tls.clone().unwrap(), c.worker_tls.clone().unwrap());
        let list = |paths: &[PathBuf]| {
            paths.iter().map(|p| format!("\"{}\"", p.display())).collect::<Vec<_>>().join(", ")
        };
        format!(
            "data_dir: {}\nartifacts_dir: {}\npublic_addr: {}\nworker_addr: {}\nmetrics_addr: {}\n\
             users_file: {}\ntoken_file: {}\nworker_token_file: {}\ninsecure_no_auth: {}\n\
             public_tls: {{cert: {}, key: {}}}\nworker_tls: {{cert: {}, key: {}}}\n\
             max_message_bytes: {}\nworker_max_message_bytes: {}\nheartbeat_interval_ms: {}\n\
             heartbeat_timeout_ms: {}\ndata_roots: [{}]\nmodels_roots: [{}]\n",
            c.data_dir.display(),
            c.artifacts.as_ref().unwrap().display(),
            c.public_addr,
            c.worker_addr,
            c.metrics_addr,
            c.users_file.as_ref().unwrap().display(),
            c.token_file.as_ref().unwrap().display(),
            c.worker_token_file.as_ref().unwrap().display(),
            c.insecure_no_auth,
            public.cert.display(),
            public.key.display(),
            worker.cert.display(),
            worker.key.display(),
            c.max_message_bytes,
            c.worker_max_message_bytes,
            c.heartbeat_interval_ms,
            c.heartbeat_timeout_ms,
            list(&c.data_roots),
            list(&c.models_roots),
        )
    }

    /// `c` as (variable, value) pairs; each flag's variable, read from its `--help`
    /// metadata so that a flag without one is noticed.
    fn as_pairs(c: &Config) -> Vec<(&'static str, String)> {
        let (public, worker) = (c.public_tls.clone().unwrap(), c.worker_tls.clone().unwrap());
        let join =
            |paths: &[PathBuf]| paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":");
        vec![
            ("data-dir", c.data_dir.display().to_string()),
            ("artifacts-dir", c.artifacts.as_ref().unwrap().display().to_string()),
            ("public-addr", c.public_addr.to_string()),
            ("worker-addr", c.worker_addr.to_string()),
            ("metrics-addr", c.metrics_addr.to_string()),
            ("users", c.users_file.as_ref().unwrap().display().to_string()),
            ("token-file", c.token_file.as_ref().unwrap().display().to_string()),
            ("worker-token-file", c.worker_token_file.as_ref().unwrap().display().to_string()),
            ("insecure-no-auth", c.insecure_no_auth.to_string()),
            ("tls-cert", public.cert.display().to_string()),
            ("tls-key", public.key.display().to_string()),
            ("worker-tls-cert", worker.cert.display().to_string()),
            ("worker-tls-key", worker.key.display().to_string()),
            ("max-message-bytes", c.max_message_bytes.to_string()),
            ("worker-max-message-bytes", c.worker_max_message_bytes.to_string()),
            ("heartbeat-interval-ms", c.heartbeat_interval_ms.to_string()),
            ("heartbeat-timeout-ms", c.heartbeat_timeout_ms.to_string()),
            ("data-root", join(&c.data_roots)),
            ("models-root", join(&c.models_roots)),
        ]
    }

    /// The variable each long flag reads.
    fn env_of(flag: &str) -> String {
        use clap::CommandFactory;
        let command = Cli::command();
        let arg = command
            .get_arguments()
            .find(|a| a.get_long() == Some(flag))
            .unwrap_or_else(|| panic!("no --{flag}"));
        arg.get_env().unwrap_or_else(|| panic!("--{flag} has no variable")).to_string_lossy().into_owned()
    }

    const CHILD_ARGS: &str = "SCOP_CONFIG_TEST_CHILD_ARGS";
    const MARKER: &str = "layered config: ";

    /// The configuration a fresh process builds from `args` and `env` alone
    /// (clap reads the real environment, so each case runs in its own process).
    fn layered_in_child(args: &[String], env: &[(String, String)]) -> String {
        let name = concat!(module_path!(), "::each_setting_can_be_set_at_each_layer_and_later_layers_win");
        let name = name.split_once("::").unwrap().1;
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env_clear()
            .envs(env.iter().cloned())
            .env(CHILD_ARGS, args.join("\n"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        stdout
            .lines()
            .find_map(|line| line.split_once(MARKER).map(|(_, config)| config))
            .unwrap_or_else(|| panic!("no configuration printed: {stdout}"))
            .to_owned()
    }

    #[test]
    fn each_setting_can_be_set_at_each_layer_and_later_layers_win() {
        if let Some(args) = std::env::var_os(CHILD_ARGS) {
            // In the child: parse the given flags against this process's environment.
            let args = args.into_string().unwrap();
            let argv = std::iter::once("scopd").chain(args.lines().filter(|l| !l.is_empty()));
            let cli = Cli::try_parse_from(argv).unwrap();
            println!("{MARKER}{:?}", Config::layered(&cli.flags).unwrap());
            return;
        }
        let (file, env, flags) = (every_setting(1), every_setting(2), every_setting(3));
        let dir = tempfile::tempdir().unwrap();
        let file_path = dir.path().join("scopd.yaml");
        std::fs::write(&file_path, as_file(&file)).unwrap();
        let file_args = vec!["--config".to_owned(), file_path.display().to_string()];
        let env_vars: Vec<(String, String)> =
            as_pairs(&env).into_iter().map(|(f, v)| (env_of(f), v)).collect();
        let flag_args: Vec<String> = as_pairs(&flags)
            .into_iter()
            .flat_map(|(flag, value)| match flag {
                "insecure-no-auth" => vec![format!("--{flag}")],
                "data-root" | "models-root" => {
                    value.split(':').flat_map(|v| [format!("--{flag}"), v.to_owned()]).collect()
                }
                _ => vec![format!("--{flag}"), value],
            })
            .collect();
        let both = [file_args.clone(), flag_args.clone()].concat();
        let debug = |c: &Config| format!("{c:?}");

        assert_eq!(layered_in_child(&[], &[]), debug(&Config::default()), "defaults");
        assert_eq!(layered_in_child(&file_args, &[]), debug(&file), "the file sets every setting");
        assert_eq!(layered_in_child(&[], &env_vars), debug(&env), "the environment sets every setting");
        assert_eq!(layered_in_child(&flag_args, &[]), debug(&flags), "flags set every setting");
        assert_eq!(layered_in_child(&file_args, &env_vars), debug(&env), "the environment beats the file");
        assert_eq!(layered_in_child(&both, &env_vars), debug(&flags), "flags beat the environment");
        // The file may also be named by its variable.
        let by_variable = [("SCOP_CONFIG".to_owned(), file_path.display().to_string())];
        assert_eq!(layered_in_child(&[], &by_variable), debug(&file), "SCOP_CONFIG names the file");
    }

    #[test]
    fn half_a_tls_pair_in_the_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("scopd.yaml");
        std::fs::write(&file, "worker_tls: {cert: w.pem}\n").unwrap();
        let layer = Layer { config: Some(file), ..Layer::default() };
        let err = Config::layered(&layer).unwrap_err().to_string();
        assert!(err.contains("worker_tls") && err.contains("without its key"), "{err}");
    }
}
