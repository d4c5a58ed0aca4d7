//! Wires the coordinator together: the store, the public gRPC port, the worker
//! gRPC port, the HTTP metrics port and the background sweep, and shuts them
//! all down together.

use std::future::Future;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use scop_proto::v1::job_service_server::JobServiceServer;
use scop_proto::v1::worker_service_server::WorkerServiceServer;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use crate::api::auth::{BearerAuth, ClientAuth, Credentials, TokenSet};
use crate::api::grpc_metrics::GrpcMetricsLayer;
use crate::api::job_service::{JobApi, Tenancy};
use crate::api::worker_service::{self, WorkerApi};
use crate::artifacts::LocalArtifacts;
use crate::config::{Config, TlsFiles};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::scheduler::{self, Scheduler, WorkerLinks};
use crate::shutdown::{self, Shutdown};
use crate::store::Store;

/// The three sockets `scopd` serves on, bound by the caller (tests bind `127.0.0.1:0`).
#[derive(Debug)]
pub struct Listeners {
    /// Public gRPC API: `JobService`, health, reflection.
    pub public: TcpListener,
    /// Worker gRPC API: `WorkerService`, health, reflection.
    pub worker: TcpListener,
    /// HTTP `GET /metrics`.
    pub metrics: TcpListener,
}

impl Listeners {
    /// Binds the three addresses of `config`.
    pub async fn bind(config: &Config) -> Result<Listeners> {
        let bind = |addr: std::net::SocketAddr| async move {
            TcpListener::bind(addr).await.map_err(|source| Error::Io { path: addr.to_string(), source })
        };
        Ok(Listeners {
            public: bind(config.public_addr).await?,
            worker: bind(config.worker_addr).await?,
            metrics: bind(config.metrics_addr).await?,
        })
    }
}

/// Runs the coordinator until `shutdown` resolves, then drains: streams are
/// ended, servers stop accepting and finish in-flight calls, and the store is
/// closed.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let store = Store::open(&config.database_path()).await?;
    let result = run_with_store(config, store.clone(), listeners, shutdown).await;
    // Every task holding a handle has ended; wait for a clean close (bounded,
    // in case a stray call is still in flight).
    if tokio::time::timeout(std::time::Duration::from_secs(10), store.close()).await.is_err() {
        tracing::warn!("the store did not close within 10 s");
    }
    result
}

/// [`run`] on a store the caller opened (tests inspect it while the server runs).
pub async fn run_with_store(
    config: Config,
    store: Store,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    config.check()?;
    let credentials = client_credentials(&config)?;
    let worker_tokens = load_tokens(&config, config.worker_token_file.as_deref(), "worker")?;
    let metrics = Metrics::new()?;
    let (trigger, down) = shutdown::channel();

    tracing::info!(addr = %listeners.public.local_addr().map_err(io("public listener"))?, "public gRPC API listening");
    tracing::info!(addr = %listeners.worker.local_addr().map_err(io("worker listener"))?, "worker gRPC API listening");
    tracing::info!(addr = %listeners.metrics.local_addr().map_err(io("metrics listener"))?, "metrics on http://…/metrics");
    tracing::info!(path = %store.path().display(), "store open");
    for (port, listener, tls) in [
        ("public", &listeners.public, config.public_tls.is_some()),
        ("worker", &listeners.worker, config.worker_tls.is_some()),
    ] {
        if let Some(warning) = exposure_warning(port, listener.local_addr().map_err(io("listener"))?, tls) {
            tracing::warn!("{warning}");
        }
    }

    let links = WorkerLinks::default();
    let (reports, report_rx) = tokio::sync::mpsc::channel(scheduler::REPORTS);
    let artifacts = LocalArtifacts::new(config.artifacts_dir());
    let grace = std::time::Duration::from_millis(u64::from(config.heartbeat_timeout_ms));
    let wake = scheduler::Wake::default();
    let heard = crate::liveness::Heard::default();
    let scheduler = Scheduler::new(store.clone(), links.clone(), artifacts, grace, wake.clone()).await?;
    let scheduling = tokio::spawn(scheduler.run(report_rx, down.clone()));
    let tracking = crate::tracking::start(&config, store.clone(), metrics.clone(), down.clone())?;

    let mut tasks = JoinSet::new();
    let reloader = match &credentials {
        Credentials::Users(directory) => {
            Some(tokio::spawn(reload_on_sighup(directory.clone(), store.clone(), down.clone())?))
        }
        Credentials::Open | Credentials::Shared(_) => None,
    };
    let public_api = JobApi::new(
        store.clone(),
        LocalArtifacts::new(config.artifacts_dir()),
        down.clone(),
        wake.clone(),
        Tenancy::from_config(&config)?,
    );
    tasks.spawn(
        serve_public(&config, listeners.public, public_api, metrics.clone(), credentials, down.clone())
            .await?,
    );
    tasks.spawn(
        serve_worker(
            &config,
            listeners.worker,
            WorkerApi::new(
                worker_service::Link {
                    store: store.clone(),
                    links,
                    reports,
                    metrics: metrics.clone(),
                    scheduler: wake,
                    heard: heard.clone(),
                },
                down.clone(),
                config.heartbeat_interval_ms,
            ),
            metrics.clone(),
            worker_tokens,
            down.clone(),
        )
        .await?,
    );
    tasks.spawn(serve_metrics(listeners.metrics, store.clone(), metrics, down.clone()));
    let sweep = tokio::spawn(crate::liveness::sweep_lost_workers(
        store.clone(),
        heard,
        config.heartbeat_timeout_ms,
        down,
    ));

    let mut failure = None;
    tokio::select! {
        () = shutdown => tracing::info!("shutting down"),
        Some(ended) = tasks.join_next() => failure = first_error(ended),
    }
    trigger.trigger();
    while let Some(ended) = tasks.join_next().await {
        failure = failure.or(first_error(ended));
    }
    let _ = sweep.await;
    let _ = scheduling.await;
    if let Some(tracking) = tracking {
        let _ = tracking.await;
    }
    if let Some(reloader) = reloader {
        let _ = reloader.await;
    }
    drop(store);
    tracing::info!("stopped");
    failure.map_or(Ok(()), Err)
}

/// The warning for a gRPC port reachable beyond this machine without TLS:
/// its bearer tokens (and, on the worker port, job tokens) cross the network
/// in the clear.
pub fn exposure_warning(port: &str, addr: std::net::SocketAddr, tls: bool) -> Option<String> {
    (!tls && !addr.ip().is_loopback()).then(|| {
        format!(
            "the {port} port listens on {addr}, beyond loopback, without TLS: its tokens cross the network \
             in the clear; configure TLS for it or bind 127.0.0.1"
        )
    })
}

fn first_error(ended: std::result::Result<Result<()>, tokio::task::JoinError>) -> Option<Error> {
    match ended {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(error),
        Err(join) => Some(Error::Config(format!("a server task died: {join}"))),
    }
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |source| Error::Io { path: what.to_owned(), source }
}

/// Who may call the public port: the users file, else the deprecated shared
/// token file, else (with --insecure-no-auth) anyone.
fn client_credentials(config: &Config) -> Result<Credentials> {
    if config.insecure_no_auth {
        tracing::warn!(
            port = "public",
            "authentication is OFF (--insecure-no-auth): anyone who can reach the port is an admin"
        );
        return Ok(Credentials::Open);
    }
    if let Some(path) = &config.users_file {
        let directory = crate::users::Directory::open(path)?;
        tracing::info!(path = %path.display(), "users file loaded; send SIGHUP to reload it");
        return Ok(Credentials::Users(directory));
    }
    let tokens = load_tokens(config, config.token_file.as_deref(), "public")?.map(Arc::new);
    tracing::warn!(
        "the shared client token file is deprecated: every holder is the admin \"admin\"; give --users instead"
    );
    Ok(tokens.map_or(Credentials::Open, Credentials::Shared))
}

/// Reloads the users file on every SIGHUP until shutdown, auditing a reload
/// that changed users. The handler is installed before this returns, so a
/// SIGHUP sent once the port answers is never the default "terminate".
fn reload_on_sighup(
    directory: crate::users::Directory,
    store: Store,
    mut down: Shutdown,
) -> Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup()).map_err(io("SIGHUP handler"))?;
    Ok(async move {
        loop {
            tokio::select! {
                received = hangups.recv() => if received.is_none() { return },
                () = down.wait() => return,
            }
            match directory.reload() {
                Ok(reload) => {
                    let path = directory.path().display().to_string();
                    tracing::info!(users = reload.users, %path, "users file reloaded");
                    if reload.changes_users() {
                        // Whoever edited the file is not known here: the signal is the actor.
                        if let Err(error) =
                            store.audit("SIGHUP", "users_reload", &path, reload.describe()).await
                        {
                            tracing::error!(%error, "the users reload was not recorded in the audit log");
                        }
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "users file not reloaded; the previous users stay in force")
                }
            }
        }
    })
}

fn load_tokens(config: &Config, file: Option<&std::path::Path>, port: &str) -> Result<Option<TokenSet>> {
    if config.insecure_no_auth {
        tracing::warn!(
            port,
            "authentication is OFF (--insecure-no-auth): anyone who can reach the port can use it"
        );
        return Ok(None);
    }
    let file = file.ok_or_else(|| Error::Config(format!("no token file for the {port} port")))?;
    TokenSet::load(file).map(Some)
}

fn tls(files: &TlsFiles) -> Result<ServerTlsConfig> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|source| Error::Io { path: path.display().to_string(), source })
    };
    Ok(ServerTlsConfig::new().identity(Identity::from_pem(read(&files.cert)?, read(&files.key)?)))
}

/// The reflection service of a port, listing only `services` (the port's own)
/// besides health and reflection: each port describes what it answers.
fn reflection(
    services: &[&str],
) -> Result<
    tonic_reflection::server::v1::ServerReflectionServer<impl tonic_reflection::server::v1::ServerReflection>,
> {
    use tonic::server::NamedService;
    use tonic_health::pb::health_server::HealthServer;
    use tonic_reflection::pb::v1::server_reflection_server::ServerReflectionServer;
    let mut builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(scop_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    let health = <HealthServer<tonic_health::server::HealthService> as NamedService>::NAME;
    let reflection = <ServerReflectionServer<()> as NamedService>::NAME;
    for name in services.iter().copied().chain([health, reflection]) {
        builder = builder.with_service_name(name);
    }
    Ok(builder.build_v1()?)
}

/// Accepted connections with Nagle's algorithm off: small gRPC frames (a job,
/// an event) otherwise wait up to the peer's delayed ACK, some 40 ms.
fn incoming(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

async fn wait(mut down: Shutdown) {
    down.wait().await;
}

async fn serve_public(
    config: &Config,
    listener: TcpListener,
    api: JobApi,
    metrics: Arc<Metrics>,
    credentials: Credentials,
    down: Shutdown,
) -> Result<impl Future<Output = Result<()>> + Send + 'static> {
    let (health, health_service) = tonic_health::server::health_reporter();
    let jobs = JobServiceServer::new(api)
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);
    health.set_serving::<JobServiceServer<JobApi>>().await;
    let mut builder = Server::builder();
    if let Some(files) = &config.public_tls {
        let mut tls = tls(files)?;
        if let Some(ca) = &config.client_ca {
            // Asked for, not required: clients with a token and no certificate still connect.
            let pem =
                std::fs::read(ca).map_err(|source| Error::Io { path: ca.display().to_string(), source })?;
            tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(pem)).client_auth_optional(true);
            tracing::info!(ca = %ca.display(), "the public port verifies client certificates: their subject CN names a user");
        }
        builder = builder.tls_config(tls)?;
    }
    let router = builder
        .layer(GrpcMetricsLayer::new(metrics))
        .add_service(health_service)
        .add_service(reflection(&[<JobServiceServer<JobApi> as tonic::server::NamedService>::NAME])?)
        .add_service(InterceptedService::new(jobs, ClientAuth::new(credentials)));
    Ok(async move {
        router.serve_with_incoming_shutdown(incoming(listener), wait(down)).await?;
        Ok(())
    })
}

async fn serve_worker(
    config: &Config,
    listener: TcpListener,
    api: WorkerApi,
    metrics: Arc<Metrics>,
    tokens: Option<TokenSet>,
    down: Shutdown,
) -> Result<impl Future<Output = Result<()>> + Send + 'static> {
    let (health, health_service) = tonic_health::server::health_reporter();
    let workers = WorkerServiceServer::new(api)
        .max_decoding_message_size(config.worker_max_message_bytes)
        .max_encoding_message_size(config.worker_max_message_bytes);
    health.set_serving::<WorkerServiceServer<WorkerApi>>().await;
    let mut builder = Server::builder();
    if let Some(files) = &config.worker_tls {
        builder = builder.tls_config(tls(files)?)?;
    }
    let router = builder
        .layer(GrpcMetricsLayer::new(metrics))
        .add_service(health_service)
        .add_service(reflection(&[<WorkerServiceServer<WorkerApi> as tonic::server::NamedService>::NAME])?)
        .add_service(InterceptedService::new(workers, BearerAuth::new(tokens)));
    Ok(async move {
        router.serve_with_incoming_shutdown(incoming(listener), wait(down)).await?;
        Ok(())
    })
}

async fn serve_metrics(
    listener: TcpListener,
    store: Store,
    metrics: Arc<Metrics>,
    down: Shutdown,
) -> Result<()> {
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(render_metrics))
        .with_state((store, metrics));
    axum::serve(listener, app)
        .with_graceful_shutdown(wait(down))
        .await
        .map_err(|source| Error::Io { path: "metrics server".into(), source })
}

async fn render_metrics(State((store, metrics)): State<(Store, Arc<Metrics>)>) -> axum::response::Response {
    match metrics.render(&store).await {
        Ok(text) => {
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
        }
        Err(error) => {
            tracing::error!(%error, "metrics scrape failed");
            (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::exposure_warning;

    #[test]
    fn only_ports_beyond_loopback_without_tls_are_warned_about() {
        let check = |addr: &str, tls: bool| exposure_warning("worker", addr.parse().unwrap(), tls);
        assert_eq!(check("127.0.0.1:7071", false), None);
        assert_eq!(check("[::1]:7071", false), None);
        assert_eq!(check("0.0.0.0:7071", true), None);
        let warning = check("0.0.0.0:7071", false).unwrap();
        assert!(warning.starts_with("the worker port listens on 0.0.0.0:7071, beyond loopback, without TLS"));
        assert!(check("10.1.2.3:7071", false).is_some());
    }
}
