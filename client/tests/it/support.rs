//! Runs the real `scopctl` binary as a process against an in-process scopd,
//! with an environment of its own (no config file, token or server from the
//! machine running the tests).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use scop_server::testing::TestServer;

/// What a finished `scopctl` run left.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// stdout parsed as one JSON document.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }

    /// Asserts the exit code, showing both streams when it differs.
    pub fn expect(self, code: i32) -> Output {
        assert_eq!(self.code, code, "stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }
}

/// A `scopctl` command with a clean environment whose `$HOME` is `home`.
pub fn bare(home: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_scopctl"));
    command
        .env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// A `scopctl` command pointed at `server` with the client token file.
pub fn scopctl(server: &TestServer, home: &Path) -> tokio::process::Command {
    let mut command = bare(home);
    command.arg("--server").arg(server.public_url()).arg("--token-file").arg(&server.client_token_file);
    command
}

/// Runs to the end and collects the output.
pub async fn run(command: &mut tokio::process::Command) -> Output {
    let output = command.output().await.unwrap();
    Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A spec file in `dir/examples/` whose data root is relative to it.
pub fn spec_file(dir: &Path, extra: &str) -> PathBuf {
    let examples = dir.join("examples");
    std::fs::create_dir_all(&examples).unwrap();
    let path = examples.join("job.yaml");
    std::fs::write(
        &path,
        format!(
            "name: tiny\nmodel: {{ arch: resnet20, num_classes: 10 }}\ndata: {{ format: idx, root: ../data/fashion-mnist }}\n{extra}"
        ),
    )
    .unwrap();
    path
}

/// A port nobody listens on.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
