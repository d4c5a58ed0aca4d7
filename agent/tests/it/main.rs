//! `scop-agent` as a user starts it: a real process, its exit status and its
//! error line. (Registration, relay and supervision against a real coordinator
//! are the server's integration tests, which start this same agent library.)

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn agent(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_scop-agent"))
        .args(args)
        .env_remove("SCOP_COORDINATOR")
        .env_remove("SCOP_WORKER_TOKEN_FILE")
        .output()
        .unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn a_missing_token_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("token");
    let missing = missing.to_str().unwrap();
    let (ok, stderr) = agent(&[
        "--coordinator",
        "127.0.0.1:1",
        "--token-file",
        missing,
        "--cpu",
        "--worker-bin",
        "/bin/true",
    ]);
    assert!(!ok);
    assert!(stderr.contains(&format!("token file {missing}")), "{stderr}");
}

#[test]
fn the_gpu_count_comes_from_the_trainer_binary_and_its_failure_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "secret\n").unwrap();
    let bin = dir.path().join("scop-worker");
    assert!(!Path::new(&bin).exists());
    let (ok, stderr) = agent(&[
        "--coordinator",
        "127.0.0.1:1",
        "--token-file",
        token.to_str().unwrap(),
        "--worker-bin",
        bin.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(stderr.contains(&format!("{} info: ", bin.display())), "{stderr}");
}

#[test]
fn logs_to_a_file_carry_no_ansi_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "secret\n").unwrap();
    // Nothing listens there: the agent logs each failed connection and retries.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let log_path = dir.path().join("agent.log");
    let mut agent = Command::new(env!("CARGO_BIN_EXE_scop-agent"))
        .args(["--coordinator", &format!("http://{closed}"), "--token-file", token.to_str().unwrap()])
        .args([
            "--cpu",
            "--worker-bin",
            "/bin/true",
            "--scratch-dir",
            dir.path().join("scratch").to_str().unwrap(),
        ])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut text = String::new();
    while Instant::now() < deadline {
        text = std::fs::read_to_string(&log_path).unwrap();
        if text.contains("coordinator connection lost") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(text.contains("coordinator connection lost"), "the agent logged no retry:\n{text}");
    assert!(!text.contains('\u{1b}'), "escape codes in a log file:\n{text:?}");
}
