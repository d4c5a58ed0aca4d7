//! A test CA and a certificate it signed for 127.0.0.1, made with the
//! `openssl` command, for the TLS tests of either gRPC port; and client
//! certificates for mutual TLS, from that CA or from a CA of their own.

use std::path::Path;
use std::process::Command;

use crate::config::TlsFiles;

fn openssl(dir: &Path, args: &str) {
    let output = Command::new("openssl").current_dir(dir).args(args.split_whitespace()).output().unwrap();
    assert!(output.status.success(), "openssl {args}: {}", String::from_utf8_lossy(&output.stderr));
}

/// Writes `ca.pem` (the CA to trust) and `server.pem`/`server.key` (for the
/// coordinator) into `dir`; returns the server's files.
pub fn certificates(dir: &Path) -> TlsFiles {
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

/// Writes a client certificate with subject `CN=<common_name>` and its key
/// into `dir` as `<name>.pem`/`<name>.key`, signed by the CA that
/// [`certificates`] wrote there, or with `own_ca` by a fresh CA of its own
/// (`<name>-ca.pem`) that the server does not trust.
pub fn client_certificate(dir: &Path, name: &str, common_name: &str, own_ca: bool) -> TlsFiles {
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    let ca = if own_ca {
        openssl(
            dir,
            &format!("req -x509 {ec} -keyout {name}-ca.key -out {name}-ca.pem -days 2 -subj /CN=other-CA"),
        );
        format!("{name}-ca")
    } else {
        "ca".to_owned()
    };
    openssl(dir, &format!("req {ec} -keyout {name}.key -out {name}.csr -subj /CN={common_name}"));
    std::fs::write(
        dir.join(format!("{name}.ext")),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &format!(
            "x509 -req -in {name}.csr -CA {ca}.pem -CAkey {ca}.key -CAcreateserial -out {name}.pem -days 2 \
             -extfile {name}.ext"
        ),
    );
    TlsFiles { cert: dir.join(format!("{name}.pem")), key: dir.join(format!("{name}.key")) }
}
