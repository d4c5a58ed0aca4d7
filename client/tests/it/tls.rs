//! scopctl over TLS: `--ca-cert` trusts the CA that signed the coordinator's
//! certificate; without it the system's CAs do not, and the server counts as
//! unreachable. The certificates are made with the `openssl` command.

use scop_server::testing::{TestServer, certificates};

use crate::support::{bare, run, scopctl};

#[tokio::test]
async fn the_ca_cert_flag_trusts_the_coordinators_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let tls = certificates(dir.path());
    let server = TestServer::start_with(&dir, |config| config.public_tls = Some(tls)).await;
    let home = dir.path().join("home");
    let https = format!("https://{}", server.public);
    let over_tls = || {
        let mut command = bare(&home);
        command.args(["--server", &https, "--token-file"]).arg(&server.client_token_file);
        command
    };

    let out =
        run(over_tls().arg("--ca-cert").arg(dir.path().join("ca.pem")).args(["get", "jobs"])).await.expect(0);
    assert_eq!(out.stdout.trim(), "no jobs");

    let out = run(over_tls().args(["get", "jobs"])).await.expect(5);
    assert!(out.stderr.starts_with(&format!("error: server {https} is unreachable: ")), "{}", out.stderr);
    let out = run(scopctl(&server, &home).args(["get", "jobs"])).await.expect(5);
    assert!(out.stderr.contains("is unreachable"), "plain text to a TLS port: {}", out.stderr);
    server.stop().await;
}
