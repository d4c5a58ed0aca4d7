//! MLflow's REST API, the calls tracking makes: experiments by name, runs
//! (search, create, log-batch, update) and artifact uploads through the
//! tracking server's artifact proxy (`/api/2.0/mlflow-artifacts/artifacts/…`).
//!
//! Each call is one attempt with a timeout; [`CallError`] says whether trying
//! again can help, and the caller retries.

use std::time::Duration;

use serde_json::{Value, json};

use super::translate::Batch;

/// MLflow's limits per `runs/log-batch` call.
const BATCH_METRICS: usize = 1000;
const BATCH_PARAMS: usize = 100;
const BATCH_TAGS: usize = 100;

/// A failed call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The server was unreachable, timed out, overloaded or failed (5xx, 429).
    #[error("{0}")]
    Transient(String),
    /// The server refused the request (4xx): the same request will fail again.
    #[error("{0}")]
    Refused(String),
}

/// A run as `runs/create` and `runs/search` return it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    pub run_id: String,
    /// The run's folder under the artifact proxy (`<experiment>/<run>/artifacts`),
    /// or `None` when the server stores artifacts where only clients with their
    /// own credentials reach them (then they are not uploaded).
    pub artifact_path: Option<String>,
}

/// A tracking server.
#[derive(Debug, Clone)]
pub struct Mlflow {
    http: reqwest::Client,
    base: String,
}

impl Mlflow {
    /// A client of the server at `uri` (`http(s)://host[:port][/prefix]`).
    pub fn new(uri: &str) -> Result<Mlflow, CallError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("scopd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CallError::Refused(format!("cannot build an HTTP client: {e}")))?;
        Ok(Mlflow { http, base: uri.trim_end_matches('/').to_owned() })
    }

    /// The id of the experiment called `name`, created if it does not exist.
    pub async fn experiment_id(&self, name: &str) -> Result<String, CallError> {
        let url = format!("{}/api/2.0/mlflow/experiments/get-by-name", self.base);
        let found = self.http.get(&url).query(&[("experiment_name", name)]).send().await;
        match answer(found, "experiments/get-by-name").await {
            Ok(body) => return string_at(&body, &["experiment", "experiment_id"]),
            Err(CallError::Refused(e)) if e.contains("RESOURCE_DOES_NOT_EXIST") => {}
            Err(e) => return Err(e),
        }
        match self.post("experiments/create", json!({ "name": name })).await {
            Ok(body) => string_at(&body, &["experiment_id"]),
            // Created by someone else in between.
            Err(CallError::Refused(e)) if e.contains("RESOURCE_ALREADY_EXISTS") => {
                let again = self.http.get(&url).query(&[("experiment_name", name)]).send().await;
                string_at(&answer(again, "experiments/get-by-name").await?, &["experiment", "experiment_id"])
            }
            Err(e) => Err(e),
        }
    }

    /// The run of `job_id` in the experiment, if one was created before.
    pub async fn find_run(&self, experiment_id: &str, job_id: &str) -> Result<Option<RunInfo>, CallError> {
        let filter = format!("tags.`scop.job_id` = '{}'", job_id.replace('\'', ""));
        let body = json!({ "experiment_ids": [experiment_id], "filter": filter, "max_results": 1 });
        let found = self.post("runs/search", body).await?;
        found.get("runs").and_then(Value::as_array).and_then(|runs| runs.first()).map(run_info).transpose()
    }

    /// A new run, started at `start_ms`.
    pub async fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        start_ms: i64,
        tags: &[(String, String)],
    ) -> Result<RunInfo, CallError> {
        let body = json!({
            "experiment_id": experiment_id,
            "run_name": run_name,
            "start_time": start_ms,
            "tags": pairs(tags, "key", "value"),
        });
        let created = self.post("runs/create", body).await?;
        run_info(created.get("run").unwrap_or(&Value::Null))
    }

    /// Logs `batch` in as many calls as MLflow's per-call limits need.
    pub async fn log_batch(&self, run_id: &str, batch: &Batch) -> Result<(), CallError> {
        let mut metrics = batch.metrics.chunks(BATCH_METRICS);
        let mut params = batch.params.chunks(BATCH_PARAMS);
        let mut tags = batch.tags.chunks(BATCH_TAGS);
        loop {
            let (m, p, t) = (metrics.next(), params.next(), tags.next());
            if m.is_none() && p.is_none() && t.is_none() {
                return Ok(());
            }
            let metrics: Vec<Value> = m
                .unwrap_or_default()
                .iter()
                .map(|m| json!({ "key": m.key, "value": m.value, "timestamp": m.timestamp_ms, "step": m.step }))
                .collect();
            let body = json!({
                "run_id": run_id,
                "metrics": metrics,
                "params": pairs(p.unwrap_or_default(), "key", "value"),
                "tags": pairs(t.unwrap_or_default(), "key", "value"),
            });
            self.post("runs/log-batch", body).await?;
        }
    }

    /// Ends the run with `status` (`FINISHED`, `FAILED`, `KILLED`).
    pub async fn end_run(&self, run_id: &str, status: &str, end_ms: i64) -> Result<(), CallError> {
        self.post("runs/update", json!({ "run_id": run_id, "status": status, "end_time": end_ms })).await?;
        Ok(())
    }

    /// Uploads `bytes` as the run's artifact `name` through the artifact proxy.
    pub async fn upload(&self, artifact_path: &str, name: &str, bytes: Vec<u8>) -> Result<(), CallError> {
        let url = format!("{}/api/2.0/mlflow-artifacts/artifacts/{artifact_path}/{name}", self.base);
        answer(self.http.put(&url).body(bytes).send().await, "mlflow-artifacts upload").await?;
        Ok(())
    }

    async fn post(&self, call: &str, body: Value) -> Result<Value, CallError> {
        let url = format!("{}/api/2.0/mlflow/{call}", self.base);
        answer(self.http.post(&url).json(&body).send().await, call).await
    }
}

/// The body of a successful answer, or the failure classified.
async fn answer(sent: reqwest::Result<reqwest::Response>, call: &str) -> Result<Value, CallError> {
    let response = sent.map_err(|e| CallError::Transient(format!("{call}: {e}")))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| CallError::Transient(format!("{call}: {e}")))?;
    if status.is_success() {
        return Ok(serde_json::from_str(&text).unwrap_or(Value::Null));
    }
    let detail: String = text.chars().take(300).collect();
    let message = format!("{call}: HTTP {status}: {detail}");
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        Err(CallError::Transient(message))
    } else {
        Err(CallError::Refused(message))
    }
}

fn pairs(pairs: &[(String, String)], key: &str, value: &str) -> Vec<Value> {
    pairs.iter().map(|(k, v)| json!({ key: k, value: v })).collect()
}

fn string_at(body: &Value, path: &[&str]) -> Result<String, CallError> {
    let mut at = body;
    for key in path {
        at = at.get(key).unwrap_or(&Value::Null);
    }
    at.as_str()
        .map(str::to_owned)
        .ok_or_else(|| CallError::Refused(format!("the answer has no {}: {body}", path.join("."))))
}

fn run_info(run: &Value) -> Result<RunInfo, CallError> {
    let info = run.get("info").unwrap_or(&Value::Null);
    let run_id = string_at(info, &["run_id"])?;
    let artifact_path = info.get("artifact_uri").and_then(Value::as_str).and_then(proxied_path);
    Ok(RunInfo { run_id, artifact_path })
}

/// The path under the artifact proxy of an `mlflow-artifacts:` URI
/// (`mlflow-artifacts:/1/abc/artifacts`, or with a host after `//`).
pub fn proxied_path(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("mlflow-artifacts:")?;
    let path = match rest.strip_prefix("//") {
        Some(with_host) => with_host.find('/').map_or("", |i| &with_host[i..]),
        None => rest,
    };
    let path = path.trim_matches('/');
    (!path.is_empty()).then(|| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_proxied_artifact_locations_have_a_path() {
        let check = |uri: &str, want: Option<&str>| assert_eq!(proxied_path(uri).as_deref(), want, "{uri}");
        check("mlflow-artifacts:/1/abc/artifacts", Some("1/abc/artifacts"));
        check("mlflow-artifacts://tracking:5000/7/abc/artifacts", Some("7/abc/artifacts"));
        check("mlflow-artifacts:/", None);
        check("s3://bucket/1/abc/artifacts", None);
        check("/srv/mlruns/1/abc/artifacts", None);
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_transient_failure() {
        // A port that was just free: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mlflow = Mlflow::new(&format!("http://127.0.0.1:{port}/")).unwrap();
        let err = mlflow.experiment_id("scop").await.unwrap_err();
        assert!(
            matches!(err, CallError::Transient(ref e) if e.starts_with("experiments/get-by-name")),
            "{err:?}"
        );
    }
}
