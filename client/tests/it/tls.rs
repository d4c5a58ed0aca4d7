//! scopctl over TLS: `--ca-cert` trusts the CA that signed the coordinator's
//! certificate; without it the system's CAs do not, and the server counts as
//! unreachable. With `--client-cert`/`--client-key` it presents a client
//! certificate to a coordinator that takes them (mTLS), which names the user.
//! The certificates are made with the `openssl` command.

use scop_server::testing::{TestServer, certificates, client_certificate};
use scop_server::users::{Role, UserEntry, UsersFile};

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

#[tokio::test]
async fn a_client_certificate_names_the_user_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let tls = certificates(dir.path());
    let pipeline = client_certificate(dir.path(), "pipeline", "pipeline.example.org", false);
    let stranger = client_certificate(dir.path(), "stranger", "nobody.example.org", false);
    let users = dir.path().join("users.yaml");
    let file = UsersFile {
        users: vec![UserEntry {
            name: "pipe".into(),
            role: Role::Submitter,
            tokens: Vec::new(),
            cert_subjects: vec!["pipeline.example.org".into()],
            quotas: Default::default(),
        }],
        ..UsersFile::default()
    };
    file.write(&users).unwrap();
    let ca = dir.path().join("ca.pem");
    let server = TestServer::start_with(&dir, |config| {
        config.token_file = None;
        config.users_file = Some(users);
        config.public_tls = Some(tls);
        config.client_ca = Some(ca.clone());
    })
    .await;
    let home = dir.path().join("home");
    let https = format!("https://{}", server.public);
    let with = |identity: &scop_server::config::TlsFiles| {
        let mut command = bare(&home);
        command.args(["--server", &https, "--ca-cert"]).arg(&ca);
        command.arg("--client-cert").arg(&identity.cert).arg("--client-key").arg(&identity.key);
        command
    };

    let me = run(with(&pipeline).args(["whoami", "-o", "json"])).await.expect(0).json();
    assert_eq!((me["user"].as_str(), me["role"].as_str()), (Some("pipe"), Some("submitter")));
    // The same through the environment.
    let mut command = bare(&home);
    command.args(["--server", &https, "--ca-cert"]).arg(&ca);
    command.env("SCOP_CLIENT_CERT", &pipeline.cert).env("SCOP_CLIENT_KEY", &pipeline.key);
    let me = run(command.args(["whoami", "-o", "json"])).await.expect(0).json();
    assert_eq!(me["user"], "pipe");
    // A certificate the CA signed for nobody in the users file names no one.
    let out = run(with(&stranger).arg("whoami")).await.expect(6);
    assert!(out.stderr.contains("names no user"), "{}", out.stderr);
    // A certificate without its key is refused before connecting.
    let out = run(bare(&home).args(["--server", &https, "--client-cert"]).arg(&pipeline.cert).arg("whoami"))
        .await
        .expect(1);
    assert!(out.stderr.contains("client_cert and client_key go together"), "{}", out.stderr);
    server.stop().await;
}
