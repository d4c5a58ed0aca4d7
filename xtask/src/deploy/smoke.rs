//! The rendered settings, run for real on 127.0.0.1: `scopd` with the
//! rendered config file and its users file and token Secret, then `scop-worker agent` with the
//! worker container's variables and arguments, which must register (so the
//! two token files pair up), and both must stop cleanly on SIGTERM within
//! their pods' termination grace periods.
//!
//! Paths and addresses that only exist in a pod are moved into a scratch
//! directory and onto loopback; everything else is passed as rendered.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use super::coordinator::{Coordinator, config_map_data};
use super::pod::{Backing, EnvValue, Workload};
use super::render::{Rendered, str_at};

pub fn run(
    rendered: &Rendered,
    coordinator: &Coordinator,
    workers: &Workload,
    bin: &Path,
    scratch: &Path,
) -> anyhow::Result<String> {
    let dir = scratch.join(format!("smoke-{}", rendered.overlay));
    std::fs::create_dir_all(dir.join("scratch"))?;
    let scopd_pod = &coordinator.workload;
    let file = |name: &str, backing: &Backing| -> anyhow::Result<std::path::PathBuf> {
        let path = dir.join(name);
        std::fs::write(&path, data(rendered, backing)?)?;
        Ok(path)
    };

    let mut scopd = Command::new(bin.join("scopd"));
    let mut args = scopd_pod.args().into_iter();
    while let Some(arg) = args.next() {
        if arg == "--config" {
            let path = args.next().unwrap_or_default();
            scopd.arg("--config").arg(file("scopd.yaml", &scopd_pod.backing(&path)?)?);
        } else {
            scopd.arg(arg);
        }
    }
    scopd
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--artifacts-dir")
        .arg(dir.join("shared/artifacts"))
        .arg("--users")
        .arg(file("users.yaml", &coordinator.users)?)
        .arg("--worker-token-file")
        .arg(file("worker.tokens", &coordinator.worker_token)?)
        .args([
            "--public-addr",
            "127.0.0.1:0",
            "--worker-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ]);
    literal_env(&mut scopd, scopd_pod);
    let (mut scopd, logs) = Process::start(scopd, "scopd")?;
    let worker_addr = logs.wait_for_addr("worker gRPC API listening", &mut scopd)?;
    let metrics_addr = logs.wait_for_addr("metrics on", &mut scopd)?;

    let mut agent = Command::new(bin.join("scop-worker"));
    agent.args(workers.args());
    literal_env(&mut agent, workers);
    let token = match workers.env("SCOP_WORKER_TOKEN_FILE") {
        Some(EnvValue::Literal(path)) => file("agent.token", &workers.backing(&path)?)?,
        _ => bail!("{}: no SCOP_WORKER_TOKEN_FILE", workers.what()),
    };
    agent
        .env("SCOP_COORDINATOR", &worker_addr)
        .env("SCOP_WORKER_TOKEN_FILE", token)
        .env("SCOP_ADVERTISE_HOST", "127.0.0.1")
        .env("SCOP_SCRATCH_DIR", dir.join("scratch"));
    let (mut agent, _agent_logs) = Process::start(agent, "scop-worker agent")?;

    let deadline = Instant::now() + Duration::from_secs(60);
    let devices = loop {
        let scrape = scrape(&metrics_addr)?;
        if sample(&scrape, "scop_workers{state=\"connected\"}") == Some(1.0) {
            break ["busy", "free", "unavailable"]
                .iter()
                .filter_map(|s| sample(&scrape, &format!("scop_devices{{state=\"{s}\"}}")))
                .sum::<f64>();
        }
        agent.check_running()?;
        if Instant::now() > deadline {
            bail!("overlay {}: the agent did not register with scopd within 60 s", rendered.overlay);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if devices < 1.0 {
        bail!("overlay {}: the registered agent offers no devices", rendered.overlay);
    }
    let agent_stop = agent.terminate(grace(workers))?;
    let scopd_stop = scopd.terminate(grace(scopd_pod))?;
    Ok(format!(
        "scopd ran on the rendered config and tokens, an agent with the rendered settings registered \
         ({devices} slot(s)); on SIGTERM they stopped in {:.1} s and {:.1} s",
        agent_stop.as_secs_f64(),
        scopd_stop.as_secs_f64()
    ))
}

fn grace(workload: &Workload) -> Duration {
    Duration::from_secs(workload.pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30))
}

/// Literal SCOP_* variables of the container; none leak in from this process.
fn literal_env(command: &mut Command, workload: &Workload) {
    for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("SCOP_")) {
        command.env_remove(name);
    }
    for name in workload.env_names() {
        if let Some(value) = workload.env_literal(&name) {
            command.env(&name, value);
        }
    }
    command.env("RUST_LOG", "info").env("NO_COLOR", "1").env("RUST_BACKTRACE", "0");
}

/// The bytes behind a ConfigMap or Secret key of the render.
fn data(rendered: &Rendered, backing: &Backing) -> anyhow::Result<Vec<u8>> {
    match backing {
        Backing::ConfigMap { name, key } => Ok(config_map_data(rendered, name, key)?.as_bytes().to_vec()),
        Backing::Secret { name, key } => {
            let secret = rendered.named("Secret", name).with_context(|| format!("no Secret/{name}"))?;
            if let Some(text) = secret.pointer(&format!("/stringData/{key}")).and_then(Value::as_str) {
                return Ok(text.as_bytes().to_vec());
            }
            base64(str_at(secret, &format!("/data/{key}")))
                .with_context(|| format!("Secret/{name} key {key}"))
        }
        other => bail!("{other:?} holds no file of the render"),
    }
}

fn base64(text: &str) -> anyhow::Result<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut bits, mut count) = (0u32, 0);
    for byte in text.bytes().filter(|b| !b.is_ascii_whitespace() && *b != b'=') {
        let value = ALPHABET
            .iter()
            .position(|a| *a == byte)
            .with_context(|| format!("not base64: {:?}", byte as char))?;
        bits = (bits << 6) | value as u32;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    Ok(out)
}

/// `GET /metrics` over plain HTTP/1.1.
fn scrape(addr: &str) -> anyhow::Result<String> {
    let mut stream = std::net::TcpStream::connect(addr)
        .with_context(|| format!("cannot reach scopd's metrics at {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

/// The value of the sample written exactly as `series` in the exposition.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A child process whose output lines arrive on a channel; killed if dropped.
struct Process {
    child: Child,
    name: &'static str,
}

struct Logs {
    lines: mpsc::Receiver<String>,
    seen: std::cell::RefCell<Vec<String>>,
}

impl Process {
    fn start(mut command: Command, name: &'static str) -> anyhow::Result<(Process, Logs)> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let (tx, lines) = mpsc::channel();
        // scopd logs to stdout, the worker to stderr: read both.
        let outputs: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().context("no stdout")?),
            Box::new(child.stderr.take().context("no stderr")?),
        ];
        for output in outputs {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(output).lines().map_while(Result::ok) {
                    if tx.send(strip_ansi(&line)).is_err() {
                        return;
                    }
                }
            });
        }
        Ok((Process { child, name }, Logs { lines, seen: Default::default() }))
    }

    fn check_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            Some(status) => bail!("{} exited early with {status}", self.name),
            None => Ok(()),
        }
    }

    /// SIGTERM, then the time it took to exit successfully (within `grace`).
    fn terminate(&mut self, grace: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        crate::shell::output(Command::new("kill").args(["-TERM", &self.child.id().to_string()]))?;
        while started.elapsed() < grace {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("{} exited with {status} on SIGTERM", self.name);
                }
                return Ok(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("{} did not stop within its {} s grace period", self.name, grace.as_secs())
    }
}

/// The line without terminal colour sequences (`ESC [ … m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            out.push(c);
        }
    }
    out
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Logs {
    /// The `addr=` of the first log line containing `message`.
    fn wait_for_addr(&self, message: &str, process: &mut Process) -> anyhow::Result<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(line) = self.seen.borrow().iter().find(|l| l.contains(message)) {
                let addr = line.split("addr=").nth(1).and_then(|r| r.split_whitespace().next());
                return addr.map(str::to_owned).with_context(|| format!("no addr= in {line:?}"));
            }
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => self.seen.borrow_mut().push(line),
                Err(_) if Instant::now() > deadline => {
                    bail!("{} logged no {message:?} within 30 s", process.name)
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = process.child.wait();
                    bail!("{} stopped before {message:?}:\n{}", process.name, self.seen.borrow().join("\n"));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_and_samples() {
        assert_eq!(super::base64("IyBhCnRva2VuCg==").unwrap(), b"# a\ntoken\n");
        assert!(super::base64("a*b").is_err());
        let scrape = "# HELP x\nscop_workers{state=\"connected\"} 1\nscop_workers{state=\"lost\"} 0\n";
        assert_eq!(super::sample(scrape, "scop_workers{state=\"connected\"}"), Some(1.0));
        assert_eq!(super::sample(scrape, "scop_workers{state=\"gone\"}"), None);
        assert_eq!(
            super::strip_ansi("\u{1b}[3maddr\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:1"),
            "addr=127.0.0.1:1"
        );
    }
}
