//! The standard health service answers over a real socket.

use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

#[tokio::test]
async fn health_reports_serving() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(scop_server::run(scop_server::Config::default(), listener, async {
        let _ = stopped.await;
    }));

    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut client = HealthClient::new(channel);
    let response = client.check(HealthCheckRequest { service: String::new() }).await.unwrap();
    assert_eq!(response.into_inner().status(), ServingStatus::Serving);

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
