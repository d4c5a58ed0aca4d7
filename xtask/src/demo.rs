//! `cargo xtask demo`: the largest real end-to-end slice of scop that exists.
//!
//! Today that is: set up libtorch, build every binary in release mode, fetch
//! Fashion-MNIST, start a real `scopd`, ask it for its health with `scopctl`,
//! and probe the worker's libtorch runtime. It says plainly what it ran.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{data, setup, shell};

pub fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    setup::run()?;
    shell::run(shell::cargo().args(["build", "--release", "--bins"]))?;
    let data_dir = data::fashion_mnist()?;
    let bin = shell::root().join("target/release");

    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr = format!("127.0.0.1:{port}");
    eprintln!("demo: starting scopd on {addr}");
    let mut scopd = Command::new(bin.join("scopd"))
        .args(["--grpc-addr", &addr])
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start scopd")?;
    let result = (|| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = Command::new(bin.join("scopctl"))
                .args(["--server", &format!("http://{addr}"), "status"])
                .output()?;
            if status.status.success() {
                print!("{}", String::from_utf8_lossy(&status.stdout));
                break;
            }
            if Instant::now() > deadline {
                bail!("scopd did not become healthy: {}", String::from_utf8_lossy(&status.stderr));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        shell::run(Command::new(bin.join("scop-worker")).arg("info"))
    })();
    let _ = scopd.kill();
    let _ = scopd.wait();
    result?;

    println!();
    println!("demo: what ran, for real:");
    println!("  - libtorch 2.11.0 from .venv, linked only by scop-worker");
    println!("  - release builds of scopd, scopctl and scop-worker");
    println!("  - Fashion-MNIST in {}", data_dir.display());
    println!("  - scopd serving grpc.health.v1 on {addr}, checked by `scopctl status`");
    println!("  - scop-worker probing its libtorch runtime");
    println!("demo: finished in {:.0?}", started.elapsed());
    Ok(())
}
