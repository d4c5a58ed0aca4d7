//! Where scopctl finds its coordinator and token: flags, environment, the
//! config file `scopd standalone` writes; and shell completions.

use scop_connect::client_config::ClientConfig;
use scop_server::testing::{CLIENT_TOKEN, TestServer};

use crate::support::{bare, closed_port, run};

#[tokio::test]
async fn status_says_serving_and_the_config_file_is_enough() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let home = dir.path().join("home");

    // No flags: the default location under $HOME names the server and the token file.
    let config = ClientConfig {
        server: Some(server.public_url()),
        token_file: Some(server.client_token_file.clone()),
        ..ClientConfig::default()
    };
    config.write(&home.join(".config/scop/scopctl.yaml")).unwrap();
    let out = run(bare(&home).arg("status")).await.expect(0);
    assert_eq!(out.stdout, format!("{}: serving\n", server.public_url()));
    let listed = run(bare(&home).args(["get", "jobs", "-o", "json"])).await.expect(0);
    assert_eq!(listed.json(), serde_json::json!([]));

    // $XDG_CONFIG_HOME beats $HOME, and SCOP_SERVER / SCOP_TOKEN beat the file.
    let elsewhere = ClientConfig { server: Some("http://127.0.0.1:1".into()), ..ClientConfig::default() };
    let xdg = dir.path().join("xdg");
    elsewhere.write(&xdg.join("scop/scopctl.yaml")).unwrap();
    let out = run(bare(&home).env("XDG_CONFIG_HOME", &xdg).args(["get", "jobs"])).await.expect(5);
    assert!(out.stderr.starts_with("error: server http://127.0.0.1:1 is unreachable"), "{}", out.stderr);
    let out = run(bare(&home)
        .env("XDG_CONFIG_HOME", &xdg)
        .env("SCOP_SERVER", server.public.to_string())
        .env("SCOP_TOKEN", CLIENT_TOKEN)
        .args(["get", "jobs"]))
    .await
    .expect(0);
    assert_eq!(out.stdout.trim(), "no jobs");
    // A flag beats the environment.
    let closed = format!("http://127.0.0.1:{}", closed_port());
    let out =
        run(bare(&home).env("SCOP_SERVER", server.public.to_string()).args(["--server", &closed, "status"]))
            .await
            .expect(5);
    assert!(out.stderr.contains(&closed), "{}", out.stderr);
    server.stop().await;
}

#[tokio::test]
async fn completions_are_generated_for_each_shell() {
    let home = tempfile::tempdir().unwrap();
    for (shell, marker) in
        [("bash", "_scopctl()"), ("zsh", "#compdef scopctl"), ("fish", "complete -c scopctl")]
    {
        let out = run(bare(home.path()).args(["completion", shell])).await.expect(0);
        assert!(out.stdout.contains(marker), "{shell}: {}", &out.stdout[..200.min(out.stdout.len())]);
        assert!(out.stdout.contains("artifacts") && out.stdout.contains("report"), "{shell}");
    }
}
