//! A real coordinator on `127.0.0.1:0` with real token files and SQLite in a
//! temporary directory, plus authenticated clients for it.

use std::net::SocketAddr;

use scop_proto::v1 as pb;
use scop_server::store::Store;
use scop_server::{Config, Listeners};
use tokio::net::TcpListener;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub const CLIENT_TOKEN: &str = "client-token-0123456789";
pub const WORKER_TOKEN: &str = "worker-token-9876543210";

pub const SPEC: &str =
    "model: { arch: resnet20, num_classes: 10 }\ndata: { format: idx, root: data/fashion-mnist }\n";

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Debug, Clone)]
pub struct Token(pub Option<String>);

impl Interceptor for Token {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        Ok(request)
    }
}

pub type Jobs = pb::job_service_client::JobServiceClient<InterceptedService<Channel, Token>>;
pub type Workers = pb::worker_service_client::WorkerServiceClient<InterceptedService<Channel, Token>>;

/// A running coordinator; stops (and waits for a clean exit) on `stop`.
pub struct TestServer {
    pub public: SocketAddr,
    pub worker: SocketAddr,
    pub metrics: SocketAddr,
    /// The same store the server uses, to drive jobs the way the scheduler does.
    pub store: Store,
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<scop_server::Result<()>>,
}

impl TestServer {
    /// Starts a server on a fresh temporary directory.
    pub async fn start(dir: &tempfile::TempDir) -> TestServer {
        Self::start_with(dir, |_| {}).await
    }

    /// Starts a server on `dir` (reusing its database), after `adjust` tweaks the config.
    pub async fn start_with(dir: &tempfile::TempDir, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let client_tokens = dir.path().join("client.tokens");
        let worker_tokens = dir.path().join("worker.tokens");
        std::fs::write(&client_tokens, format!("# test\n{CLIENT_TOKEN}\n")).unwrap();
        std::fs::write(&worker_tokens, format!("{WORKER_TOKEN}\n")).unwrap();
        let mut config = Config {
            data_dir: dir.path().join("data"),
            token_file: Some(client_tokens),
            worker_token_file: Some(worker_tokens),
            ..Config::default()
        };
        adjust(&mut config);
        let listeners = Listeners {
            public: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            worker: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            metrics: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        };
        let (public, worker, metrics) = (
            listeners.public.local_addr().unwrap(),
            listeners.worker.local_addr().unwrap(),
            listeners.metrics.local_addr().unwrap(),
        );
        let store = Store::open(&config.database_path()).await.unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(scop_server::run_with_store(config, store.clone(), listeners, async {
            let _ = stopped.await;
        }));
        TestServer { public, worker, metrics, store, stop, handle }
    }

    pub async fn channel(addr: SocketAddr) -> Channel {
        tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap()
    }

    /// A JobService client sending `token` (none when `None`).
    pub async fn jobs_with(&self, token: Option<&str>) -> Jobs {
        pb::job_service_client::JobServiceClient::with_interceptor(
            Self::channel(self.public).await,
            Token(token.map(str::to_owned)),
        )
    }

    /// A JobService client with the valid client token.
    pub async fn jobs(&self) -> Jobs {
        self.jobs_with(Some(CLIENT_TOKEN)).await
    }

    /// A WorkerService client with the valid worker token.
    pub async fn workers(&self) -> Workers {
        pb::worker_service_client::WorkerServiceClient::with_interceptor(
            Self::channel(self.worker).await,
            Token(Some(WORKER_TOKEN.to_owned())),
        )
    }

    /// Submits `spec` with an optional request id and labels.
    pub async fn submit(&self, jobs: &mut Jobs, request_id: &str, labels: &[(&str, &str)]) -> pb::Job {
        jobs.submit_job(pb::SubmitJobRequest {
            spec_yaml: SPEC.into(),
            request_id: request_id.into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            priority: 0,
        })
        .await
        .unwrap()
        .into_inner()
    }

    /// Stops the server and checks that it shut down cleanly.
    pub async fn stop(self) {
        self.stop.send(()).unwrap();
        drop(self.store);
        self.handle.await.unwrap().unwrap();
    }
}
