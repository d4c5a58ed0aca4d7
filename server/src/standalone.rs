//! `scopd standalone`: the coordinator plus local worker agents, the embedded
//! default for one machine.
//!
//! It binds to loopback unless told otherwise, keeps its users file in the data
//! dir with one admin whose token it writes where scopctl's config points,
//! generates the worker token (all mode 0600) on first start and reuses them
//! after, allows spec paths under the working directory and the data dir
//! unless given roots (and hands the roots to its agents),
//! writes the client config `scopctl` finds by itself, starts one
//! `scop-worker agent` process per local GPU (or the asked number of CPU
//! agents, one rank slot each) and restarts an agent that dies. On shutdown
//! the coordinator stops first, so running attempts stay in the store and are
//! resumed from their checkpoints by the next start; then the agents get
//! SIGTERM.

mod agents;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use scop_connect::client_config::ClientConfig;

pub use self::agents::{AgentSpec, plan_agents};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::server::Listeners;

/// What `scopd standalone` adds to the coordinator's configuration.
#[derive(Debug, Clone, Default)]
pub struct StandaloneOptions {
    /// Local agents to start: `None` means one per GPU, or one CPU agent.
    pub workers: Option<u32>,
    /// The `scop-worker` executable; by default the one next to `scopd`, else on `PATH`.
    pub worker_bin: Option<PathBuf>,
    /// Offer CPU rank slots even when GPUs are present.
    pub cpu: bool,
    /// Where to write the client config; `None` means the default path.
    pub client_config: Option<PathBuf>,
}

/// Runs the coordinator and its local agents until `shutdown` resolves.
pub async fn run(
    mut config: Config,
    options: StandaloneOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let data_dir = absolute(&config.data_dir)?;
    create_dir(&data_dir)?;
    config.data_dir = data_dir.clone();
    // The deprecated shared token file only when asked for by name; else the users file.
    let client_tokens = config.token_file.clone().unwrap_or_else(|| data_dir.join("client.token"));
    let worker_tokens = config.worker_token_file.get_or_insert_with(|| data_dir.join("worker.token")).clone();
    if !config.insecure_no_auth {
        if config.token_file.is_some() {
            ensure_token_file(&client_tokens)?;
        } else {
            let users = config.users_file.get_or_insert_with(|| users_file(&data_dir)).clone();
            ensure_admin(&users, &client_tokens)?;
        }
        ensure_token_file(&worker_tokens)?;
    }
    if config.data_roots.is_empty() && config.models_roots.is_empty() {
        let here = std::env::current_dir().map_err(|source| Error::Io { path: ".".into(), source })?;
        config.data_roots = vec![here.clone(), data_dir.clone()];
        config.models_roots = vec![here, data_dir.clone()];
    }
    let roots =
        scop_core::sandbox::Roots { data: config.data_roots.clone(), models: config.models_roots.clone() };
    config.check()?;

    let worker_bin = agents::find_worker_bin(options.worker_bin.as_deref())?;
    let gpus = if options.cpu { 0 } else { agents::probe_gpus(&worker_bin).await? };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let plan = plan_agents(options.workers, gpus, cores)?;

    let listeners = Listeners::bind(&config).await?;
    let public = local_addr(&listeners.public, "public")?;
    let worker = local_addr(&listeners.worker, "worker")?;
    let metrics = local_addr(&listeners.metrics, "metrics")?;

    let client_config_path = options.client_config.clone().or_else(ClientConfig::default_path);
    let client = ClientConfig {
        server: Some(format!("http://{}", reachable(public))),
        token_file: (!config.insecure_no_auth).then(|| client_tokens.clone()),
        ..ClientConfig::default()
    };
    let mut client_config_kept = false;
    if let Some(path) = &client_config_path {
        // A path given with --client-config is written as asked; the default
        // one may hold the user's own settings (a cluster's, say): keep those.
        let overwrite = options.client_config.is_some();
        client_config_kept = !write_client_config(path, &client, overwrite)?;
    }

    println!("scopd standalone");
    println!("  public API     http://{public}");
    println!("  worker API     http://{worker}");
    println!("  metrics        http://{metrics}/metrics");
    println!("  data dir       {}", data_dir.display());
    if !config.insecure_no_auth {
        println!("  client token   {}", client_tokens.display());
    }
    match &client_config_path {
        Some(path) if client_config_kept => {
            println!("  client config  {} is not ours: left as it is", path.display());
            println!(
                "                 use scopctl --server {} --token-file {},",
                client.server.as_deref().unwrap_or_default(),
                client_tokens.display()
            );
            println!("                 or restart with --client-config PATH to write one elsewhere");
        }
        Some(path) => println!("  client config  {} (scopctl reads it; no flags needed)", path.display()),
        None => println!("  client config  not written: neither $SCOPCTL_CONFIG nor $HOME is set"),
    }
    println!("  workers        {}", agents::describe(&plan));
    println!("  agent logs     {}", data_dir.join("logs").display());

    let (stop_coordinator, coordinator_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut coordinator = tokio::spawn(crate::server::run(config.clone(), listeners, async {
        let _ = coordinator_stopped.await;
    }));
    let connect = format!("http://{}", reachable(worker));
    let fleet = agents::Fleet::start(&worker_bin, &connect, &worker_tokens, &data_dir, &plan, &roots)?;

    let ended_early = tokio::select! {
        () = shutdown => None,
        ended = &mut coordinator => Some(ended),
    };
    let result = match ended_early {
        Some(ended) => joined(ended),
        None => {
            tracing::info!("stopping the coordinator, then the local agents");
            let _ = stop_coordinator.send(());
            joined(coordinator.await)
        }
    };
    fleet.stop().await;
    result
}

fn joined(ended: std::result::Result<Result<()>, tokio::task::JoinError>) -> Result<()> {
    ended.map_err(|e| Error::Config(format!("the coordinator task died: {e}")))?
}

/// The address a local process connects to: loopback for a wildcard bind.
fn reachable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() { SocketAddr::from(([127, 0, 0, 1], addr.port())) } else { addr }
}

fn local_addr(listener: &tokio::net::TcpListener, which: &str) -> Result<SocketAddr> {
    listener.local_addr().map_err(|source| Error::Io { path: format!("{which} listener"), source })
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|source| Error::Io { path: path.display().to_string(), source })
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.display().to_string(), source })
}

/// The first line of a client config `scopd standalone` wrote: the next start may rewrite it.
const WRITTEN_BY_STANDALONE: &str = "# written by scopd standalone, which rewrites it on every start\n";

/// Writes `client` to `path` unless the file is someone else's: one that
/// exists, was not written by `scopd standalone` and says something else is
/// kept unless `overwrite`. Returns whether `path` now holds `client`.
pub fn write_client_config(path: &Path, client: &ClientConfig, overwrite: bool) -> Result<bool> {
    match std::fs::read_to_string(path) {
        Ok(text) if !overwrite && !text.starts_with(WRITTEN_BY_STANDALONE) => {
            return Ok(ClientConfig::read(path).ok().as_ref() == Some(client));
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::Io { path: path.display().to_string(), source: e });
        }
        _ => {}
    }
    client
        .write_with_header(path, WRITTEN_BY_STANDALONE)
        .map_err(|e| Error::Config(format!("client config: {e}")))?;
    Ok(true)
}

/// The users file of a data dir.
pub fn users_file(data_dir: &Path) -> PathBuf {
    data_dir.join("users.yaml")
}

/// Makes sure the users file exists with an admin whose token is in
/// `client_token`: a new data dir gets both; a data dir from before users
/// existed keeps its client token, now the admin's; a users file without the
/// token file gets the admin a new token.
pub fn ensure_admin(users: &Path, client_token: &Path) -> Result<()> {
    use crate::users::{Role, UsersFile, add_to_file, hash_token};
    if client_token.exists() {
        let token = crate::api::auth::TokenSet::load(client_token).map(drop).and_then(|()| {
            let text = std::fs::read_to_string(client_token)
                .map_err(|source| Error::Io { path: client_token.display().to_string(), source })?;
            Ok(text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#'))
                .unwrap_or_default()
                .to_owned())
        })?;
        let mut file = if users.exists() { UsersFile::read(users)? } else { UsersFile::default() };
        let hash = hash_token(&token);
        if !file.users.iter().any(|u| u.tokens.contains(&hash)) {
            match file.users.iter_mut().find(|u| u.name == "admin" && u.role == Role::Admin) {
                Some(admin) => admin.tokens.push(hash),
                None => file.users.push(crate::users::UserEntry {
                    name: "admin".into(),
                    role: Role::Admin,
                    tokens: vec![hash],
                    quotas: crate::users::Quotas::default(),
                }),
            }
            crate::users::Users::from_file(&file)
                .map_err(|e| Error::Config(format!("{}: {e}", users.display())))?;
            file.write(users)?;
        }
        return crate::users::Users::load(users).map(drop);
    }
    let token = add_to_file(users, "admin", Role::Admin)?;
    write_private(client_token, &format!("# generated by scopd standalone: the admin's token\n{token}\n"))
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| Error::Io { path: path.display().to_string(), source };
    let mut file =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)
}

/// Writes a new random token into `path` (mode 0600) unless it already holds one.
pub fn ensure_token_file(path: &Path) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        // Reused as it is; a file without a token is an error worth seeing now.
        return crate::api::auth::TokenSet::load(path).map(drop);
    }
    let io = |source| Error::Io { path: path.display().to_string(), source };
    if let Some(dir) = path.parent() {
        create_dir(dir)?;
    }
    let token = crate::secret::random_hex(32).map_err(io)?;
    let mut file =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io)?;
    writeln!(file, "# generated by scopd standalone; one bearer token per line\n{token}").map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_generated_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.token");
        ensure_token_file(&path).unwrap();
        let first = std::fs::read_to_string(&path).unwrap();
        assert!(crate::api::auth::TokenSet::load(&path).is_ok());
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        ensure_token_file(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), first);

        std::fs::write(&path, "# nothing here\n").unwrap();
        let err = ensure_token_file(&path).unwrap_err().to_string();
        assert!(err.contains("client.token") && err.contains("no tokens"), "{err}");
    }

    #[test]
    fn a_users_client_config_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scopctl.yaml");
        let ours = ClientConfig { server: Some("http://127.0.0.1:7070".into()), ..ClientConfig::default() };

        // No file yet: written, and read back as it was meant.
        assert!(write_client_config(&path, &ours, false).unwrap());
        assert_eq!(ClientConfig::read(&path).unwrap(), ours);
        // Our own file from an earlier start is rewritten with the new address.
        let moved = ClientConfig { server: Some("http://127.0.0.1:9000".into()), ..ClientConfig::default() };
        assert!(write_client_config(&path, &moved, false).unwrap());
        assert_eq!(ClientConfig::read(&path).unwrap(), moved);

        // A file the user wrote for a cluster stays byte for byte.
        let users = "server: https://scop.example.org:7070\ntoken_file: cluster.token\n";
        std::fs::write(&path, users).unwrap();
        assert!(!write_client_config(&path, &ours, false).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), users);
        // ...unless the user named the path with --client-config.
        assert!(write_client_config(&path, &ours, true).unwrap());
        assert_eq!(ClientConfig::read(&path).unwrap(), ours);
    }

    #[test]
    fn standalone_keeps_one_admin_whose_token_is_the_client_token() {
        let dir = tempfile::tempdir().unwrap();
        let (users, token) = (dir.path().join("users.yaml"), dir.path().join("client.token"));
        ensure_admin(&users, &token).unwrap();
        let read = |path: &Path| std::fs::read_to_string(path).unwrap();
        let first = read(&token).lines().last().unwrap().to_owned();
        let loaded = crate::users::Users::load(&users).unwrap();
        let admin = loaded.authenticate(first.as_bytes()).unwrap();
        assert_eq!((admin.name.as_str(), admin.role), ("admin", crate::users::Role::Admin));
        assert!(!read(&users).contains(&first));
        // A second start changes nothing.
        let before = read(&users);
        ensure_admin(&users, &token).unwrap();
        assert_eq!(read(&users), before);

        // A data dir from before users existed: its client token becomes the admin's.
        let old = tempfile::tempdir().unwrap();
        let (users, token) = (old.path().join("users.yaml"), old.path().join("client.token"));
        std::fs::write(&token, "# old\nold-shared-token\n").unwrap();
        ensure_admin(&users, &token).unwrap();
        let loaded = crate::users::Users::load(&users).unwrap();
        assert_eq!(loaded.authenticate(b"old-shared-token").unwrap().name, "admin");
    }

    #[test]
    fn wildcard_binds_are_reached_on_loopback() {
        assert_eq!(reachable("0.0.0.0:7070".parse().unwrap()), "127.0.0.1:7070".parse().unwrap());
        assert_eq!(reachable("10.1.2.3:7071".parse().unwrap()), "10.1.2.3:7071".parse().unwrap());
    }
}
