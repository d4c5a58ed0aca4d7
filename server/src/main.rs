//! `scopd`: parses flags, sets up logging, binds the ports and runs the
//! coordinator, or with `standalone` the coordinator plus local worker agents.

use anyhow::Context;
use clap::{Parser, Subcommand};

/// The scop coordinator.
#[derive(Debug, Parser)]
#[command(name = "scopd", version, about, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(flatten)]
    flags: scop_server::config::Layer,
    #[command(subcommand)]
    command: Option<Command>,
}

// Parsed once at start-up and matched once: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the coordinator plus local worker agents: the default for one machine.
    /// Binds to loopback, generates tokens in the data dir and writes the client
    /// config that scopctl reads.
    Standalone(StandaloneArgs),
    /// Manage the users file.
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user (or a further token to an existing one) and print its new
    /// token once; only its hash is stored. A running scopd picks it up on SIGHUP.
    Add {
        /// User name: 1 to 64 characters of [A-Za-z0-9._@-].
        name: String,
        /// viewer, submitter or admin.
        #[arg(long)]
        role: String,
        /// The users file [default: <data-dir>/users.yaml].
        #[arg(long = "users", env = "SCOP_USERS_FILE")]
        users_file: Option<std::path::PathBuf>,
        /// The data dir whose users.yaml to change (that of `scopd standalone`).
        #[arg(long, env = "SCOP_DATA_DIR", default_value = "scop-data")]
        data_dir: std::path::PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct StandaloneArgs {
    #[command(flatten)]
    flags: scop_server::config::Layer,
    /// Local worker agents to start [default: one per GPU, or one CPU agent].
    /// Each CPU agent offers one rank slot; the cores are split between them.
    #[arg(long, env = "SCOP_WORKERS")]
    workers: Option<u32>,
    /// Offer CPU rank slots even when GPUs are present.
    #[arg(long)]
    cpu: bool,
    /// The scop-worker executable [default: the one next to scopd, else on PATH].
    #[arg(long, env = "SCOP_WORKER_BIN")]
    worker_bin: Option<std::path::PathBuf>,
    /// Where to write the client config [default: $SCOPCTL_CONFIG, else
    /// $XDG_CONFIG_HOME/scop/scopctl.yaml, else ~/.config/scop/scopctl.yaml].
    #[arg(long)]
    client_config: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Logs go to stderr; stdout carries what scopd says to people (standalone's addresses).
    // Colour only for a person at a terminal: a log file or a pipe gets plain text.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,h2=warn,tower=warn,hyper=warn".into()),
        )
        .init();
    let args = Args::parse();
    match args.command {
        None => {
            let config = scop_server::Config::load(&args.flags).context("invalid configuration")?;
            let listeners = scop_server::Listeners::bind(&config).await.context("cannot bind the ports")?;
            scop_server::run(config, listeners, shutdown_signal()).await.context("scopd failed")
        }
        Some(Command::User(UserCommand::Add { name, role, users_file, data_dir })) => {
            let role = scop_server::users::Role::parse(&role)
                .with_context(|| format!("--role: must be viewer, submitter or admin, got {role:?}"))?;
            let path = users_file.unwrap_or_else(|| scop_server::standalone::users_file(&data_dir));
            let token = scop_server::users::add_to_file(&path, &name, role)
                .with_context(|| format!("cannot add user {name:?}"))?;
            tracing::info!(target: "audit", user = "scopd user add", action = "user_add", target_id = %name, role = role.name(), path = %path.display(), "audit");
            eprintln!(
                "added user {name:?} ({}) to {}; send SIGHUP to a running scopd to load it",
                role.name(),
                path.display()
            );
            eprintln!("its token (shown only now; keep it in a file for scopctl --token-file):");
            println!("{token}");
            Ok(())
        }
        Some(Command::Standalone(args)) => {
            let config = scop_server::Config::layered(&args.flags).context("invalid configuration")?;
            let options = scop_server::standalone::StandaloneOptions {
                workers: args.workers,
                worker_bin: args.worker_bin,
                cpu: args.cpu,
                client_config: args.client_config,
            };
            scop_server::standalone::run(config, options, shutdown_signal())
                .await
                .context("scopd standalone failed")
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops scopd");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
