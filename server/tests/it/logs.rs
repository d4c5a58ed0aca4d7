//! What `scopd` writes to a log file: plain text, no terminal colour codes.

use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn logs_to_a_file_carry_no_ansi_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("scopd.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut scopd = Command::new(env!("CARGO_BIN_EXE_scopd"))
        .args(["--insecure-no-auth", "--public-addr", "127.0.0.1:0", "--worker-addr", "127.0.0.1:0"])
        .args(["--metrics-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut text = String::new();
    for _ in 0..600 {
        text = std::fs::read_to_string(&log_path).unwrap();
        if text.contains("store open") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = scopd.kill();
    let _ = scopd.wait();
    assert!(text.contains("store open"), "scopd logged no start-up line:\n{text}");
    assert!(!text.contains('\u{1b}'), "escape codes in a log file:\n{text:?}");
}
