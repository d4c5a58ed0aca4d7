//! Standard health checking and server reflection answer on both gRPC ports,
//! without a token; each port's reflection lists only the services it serves.

use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

use scop_server::testing::TestServer;

async fn check_health(addr: std::net::SocketAddr, service: &str) {
    let mut client = HealthClient::new(TestServer::channel(addr).await);
    for name in ["", service] {
        let response = client.check(HealthCheckRequest { service: name.into() }).await.unwrap();
        assert_eq!(response.into_inner().status(), ServingStatus::Serving, "{addr} {name:?}");
    }
}

async fn reflected_services(addr: std::net::SocketAddr) -> Vec<String> {
    let mut client = ServerReflectionClient::new(TestServer::channel(addr).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses =
        client.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    let response = responses.message().await.unwrap().unwrap();
    match response.message_response.unwrap() {
        MessageResponse::ListServicesResponse(list) => list.service.into_iter().map(|s| s.name).collect(),
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

#[tokio::test]
async fn health_and_reflection_answer_on_both_ports() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    check_health(server.public, "scop.v1.JobService").await;
    check_health(server.worker, "scop.v1.WorkerService").await;
    for (addr, own) in [(server.public, "scop.v1.JobService"), (server.worker, "scop.v1.WorkerService")] {
        let mut services = reflected_services(addr).await;
        services.sort();
        let mut expected = vec![own, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"];
        expected.sort_unstable();
        assert_eq!(services, expected, "{addr}: a port lists only what it serves");
    }
    server.stop().await;
}
