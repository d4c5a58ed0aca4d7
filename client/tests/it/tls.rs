//! scopctl over TLS: `--ca-cert` trusts the CA that signed the coordinator's
//! certificate; without it the system's CAs do not, and the server counts as
//! unreachable. The certificates are made with the `openssl` command.

use std::path::Path;
use std::process::Command;

use scop_server::config::TlsFiles;
use scop_server::testing::TestServer;

use crate::support::{bare, run, scopctl};

fn openssl(dir: &Path, args: &str) {
    let output = Command::new("openssl").current_dir(dir).args(args.split_whitespace()).output().unwrap();
    assert!(output.status.success(), "openssl {args}: {}", String::from_utf8_lossy(&output.stderr));
}

/// A CA and a certificate it signed for 127.0.0.1.
fn certificates(dir: &Path) -> TlsFiles {
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    openssl(dir, &format!("req -x509 {ec} -keyout ca.key -out ca.pem -days 2 -subj /CN=scop-test-CA"));
    openssl(dir, &format!("req {ec} -keyout server.key -out server.csr -subj /CN=127.0.0.1"));
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext",
    );
    TlsFiles { cert: dir.join("server.pem"), key: dir.join("server.key") }
}

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
