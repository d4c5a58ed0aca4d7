//! `check_server` against a live coordinator and against a closed port.

#[tokio::test]
async fn reports_serving_for_a_live_coordinator() {
    let dir = tempfile::tempdir().unwrap();
    let bind = || tokio::net::TcpListener::bind("127.0.0.1:0");
    let listeners = scop_server::Listeners {
        public: bind().await.unwrap(),
        worker: bind().await.unwrap(),
        metrics: bind().await.unwrap(),
    };
    let addr = listeners.public.local_addr().unwrap();
    let config = scop_server::Config {
        data_dir: dir.path().to_owned(),
        insecure_no_auth: true,
        ..scop_server::Config::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(scop_server::run(config, listeners, async {
        let _ = stopped.await;
    }));
    let status = scopctl::check_server(&format!("http://{addr}")).await.unwrap();
    assert_eq!(status, scopctl::ServerStatus::Serving);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn names_the_server_when_unreachable() {
    // Bind and drop to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = format!("http://127.0.0.1:{port}");
    let err = scopctl::check_server(&server).await.unwrap_err();
    assert!(matches!(err, scopctl::connection::Error::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains(&server), "{err}");
}
