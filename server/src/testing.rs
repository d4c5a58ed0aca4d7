//! Test support shared by the coordinator's and the client's integration tests
//! (feature `testing`, enabled only by dev-dependencies): a real coordinator on
//! `127.0.0.1:0` with real token files and SQLite in a directory the test owns,
//! authenticated clients for it, a scripted worker (`fake_worker`) and what
//! it reports for each stage (`script`).
//!
//! These helpers panic on failure, as test code does; nothing else in the
//! crate uses them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use scop_proto::v1 as pb;
use tokio::net::TcpListener;
use tonic::transport::Channel;

use crate::store::Store;
use crate::{Config, Listeners};

mod certificates;
mod fake_worker;
pub mod script;

pub use certificates::certificates;
pub use fake_worker::{FakeWorker, final_statistics, statistics, wait_for_state};

pub const CLIENT_TOKEN: &str = "client-token-0123456789";
pub const WORKER_TOKEN: &str = "worker-token-9876543210";

pub const SPEC: &str =
    "model: { arch: resnet20, num_classes: 10 }\ndata: { format: idx, root: data/fashion-mnist }\n";

/// The header every scop client sends; `Bearer::new(None)` sends none.
pub use scop_connect::Bearer;

/// A client's bearer header for `token` (a test's tokens are always valid ASCII).
pub fn bearer(token: Option<&str>) -> Bearer {
    Bearer::new(token).expect("a test token is printable ASCII")
}

pub type Jobs = pb::job_service_client::JobServiceClient<scop_connect::Authenticated>;
pub type Workers = pb::worker_service_client::WorkerServiceClient<scop_connect::Authenticated>;

/// A running coordinator; stops (and waits for a clean exit) on `stop`.
pub struct TestServer {
    pub public: SocketAddr,
    pub worker: SocketAddr,
    pub metrics: SocketAddr,
    /// The same store the server uses, to drive jobs the way the scheduler does.
    pub store: Store,
    /// The configuration it runs with (its data dir holds the database and artifacts).
    pub config: Config,
    /// The file holding [`CLIENT_TOKEN`].
    pub client_token_file: PathBuf,
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<crate::Result<()>>,
}

impl TestServer {
    /// Starts a server in a fresh directory (a `tempfile::TempDir`, say).
    pub async fn start(dir: impl AsRef<Path>) -> TestServer {
        Self::start_with(dir, |_| {}).await
    }

    /// Starts a server in `dir` (reusing its database), after `adjust` tweaks the config.
    pub async fn start_with(dir: impl AsRef<Path>, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = dir.as_ref();
        let client_token_file = dir.join("client.tokens");
        let worker_tokens = dir.join("worker.tokens");
        std::fs::write(&client_token_file, format!("# test\n{CLIENT_TOKEN}\n")).unwrap();
        std::fs::write(&worker_tokens, format!("{WORKER_TOKEN}\n")).unwrap();
        let mut config = Config {
            data_dir: dir.join("data"),
            token_file: Some(client_token_file.clone()),
            worker_token_file: Some(worker_tokens),
            ..Config::default()
        };
        adjust(&mut config);
        let listeners = Listeners {
            public: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            worker: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            metrics: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        };
        Self::serve(config, client_token_file, listeners).await
    }

    /// Stops this server and starts a new one on the same data dir and the
    /// same three addresses, as a restarted `scopd` would come back.
    pub async fn restart(self) -> TestServer {
        let (config, token_file) = (self.config.clone(), self.client_token_file.clone());
        let (public, worker, metrics) = (self.public, self.worker, self.metrics);
        self.stop().await;
        let listeners = Listeners {
            public: rebind(public).await,
            worker: rebind(worker).await,
            metrics: rebind(metrics).await,
        };
        Self::serve(config, token_file, listeners).await
    }

    async fn serve(config: Config, client_token_file: PathBuf, listeners: Listeners) -> TestServer {
        let (public, worker, metrics) = (
            listeners.public.local_addr().unwrap(),
            listeners.worker.local_addr().unwrap(),
            listeners.metrics.local_addr().unwrap(),
        );
        let store = Store::open(&config.database_path()).await.unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(crate::run_with_store(config.clone(), store.clone(), listeners, async {
            let _ = stopped.await;
        }));
        TestServer { public, worker, metrics, store, config, client_token_file, stop, handle }
    }

    /// `http://` address of the public API.
    pub fn public_url(&self) -> String {
        format!("http://{}", self.public)
    }

    /// The directory of `job_id`'s files in the artifact store.
    pub fn job_dir(&self, job_id: &str) -> PathBuf {
        use crate::scheduler::ArtifactStore;
        crate::scheduler::LocalArtifacts::new(self.config.artifacts_dir()).job_dir(job_id)
    }

    pub async fn channel(addr: SocketAddr) -> Channel {
        scop_connect::endpoint(&format!("http://{addr}"), None).unwrap().connect().await.unwrap()
    }

    /// A JobService client sending `token` (none when `None`).
    pub async fn jobs_with(&self, token: Option<&str>) -> Jobs {
        pb::job_service_client::JobServiceClient::with_interceptor(
            Self::channel(self.public).await,
            bearer(token),
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
            bearer(Some(WORKER_TOKEN)),
        )
    }

    /// Submits [`SPEC`] with an optional request id and labels.
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

/// Binds `addr` again once the stopped server has let go of it.
async fn rebind(addr: SocketAddr) -> TcpListener {
    for _ in 0..100 {
        if let Ok(listener) = TcpListener::bind(addr).await {
            return listener;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{addr} was not free again within 5 s");
}
