//! Connecting to a coordinator and asking whether it is serving.

use std::time::Duration;

use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// What the coordinator's standard health service said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerStatus {
    Serving,
    NotServing,
}

/// Errors of the client library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("server {server} is unreachable: {reason}")]
    Unreachable { server: String, reason: String },
    #[error("server {server} answered with an error: {status}")]
    Rpc { server: String, status: tonic::Status },
}

/// Asks the server's `grpc.health.v1` service for the overall status.
pub async fn check_server(server: &str) -> Result<ServerStatus, Error> {
    let unreachable = |reason: String| Error::Unreachable { server: server.to_owned(), reason };
    let endpoint = tonic::transport::Endpoint::from_shared(server.to_owned())
        .map_err(|e| unreachable(e.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10));
    let channel = endpoint.connect().await.map_err(|e| unreachable(e.to_string()))?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest { service: String::new() })
        .await
        .map_err(|status| Error::Rpc { server: server.to_owned(), status })?;
    Ok(match response.into_inner().status() {
        ServingStatus::Serving => ServerStatus::Serving,
        _ => ServerStatus::NotServing,
    })
}
