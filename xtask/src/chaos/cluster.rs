//! One scenario's cluster: `scopd standalone --workers 0` and separately
//! started `scop-worker agent`s (so the suite can kill, stop, restart and
//! re-route each of them), on loopback or each in its own network namespace,
//! with the job spec, the scopctl calls and the logs in one directory.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::job::Job;
use super::netns::{Host, Hosts};

/// How a scenario wants its cluster.
#[derive(Debug, Clone)]
pub struct Options {
    /// The coordinator's heartbeat timeout; workers beat every tenth of it.
    pub heartbeat_timeout: Duration,
    /// Agents to start (one CPU rank slot each).
    pub agents: usize,
    /// Put the coordinator and each agent in its own network namespace.
    pub hosts: bool,
    /// Where checkpoints and exports go (default: in the data dir).
    pub artifacts_dir: Option<PathBuf>,
    /// Agents `scopd standalone` starts (and restarts) itself, as a new user
    /// runs it, instead of the suite's own (`agents` should then be 0).
    pub local_agents: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            heartbeat_timeout: Duration::from_secs(5),
            agents: 2,
            hosts: false,
            artifacts_dir: None,
            local_agents: 0,
        }
    }
}

/// A started agent: its process and how to start it again.
#[derive(Debug)]
pub struct Agent {
    pub child: Option<Child>,
    pub coordinator: String,
    pub advertise: String,
    pub host: Option<Host>,
}

/// The cluster; everything it started is killed on drop (then the namespaces go).
#[derive(Debug)]
pub struct Cluster {
    pub dir: PathBuf,
    pub bin: PathBuf,
    pub options: Options,
    scopd: Option<Child>,
    pub public: SocketAddr,
    pub worker: SocketAddr,
    metrics: SocketAddr,
    pub agents: Vec<Agent>,
    /// The namespaces (last: dropped after the processes are killed).
    pub hosts: Option<Hosts>,
}

impl Cluster {
    /// A fresh directory and, with `options.hosts`, the namespaces: the
    /// coordinator's first, then one per agent. Nothing is started yet.
    pub fn new(bin: &Path, dir: PathBuf, options: Options) -> anyhow::Result<Cluster> {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
        }
        std::fs::create_dir_all(dir.join("logs"))?;
        let hosts = if options.hosts {
            let mut names = vec!["coordinator".to_owned()];
            names.extend((0..options.agents).map(|i| format!("worker{i}")));
            Some(Hosts::create(&names.iter().map(String::as_str).collect::<Vec<_>>())?)
        } else {
            None
        };
        let (public, worker, metrics) = match &hosts {
            Some(h) => {
                let ip = h.hosts[0].ip;
                (SocketAddr::from((ip, 7070)), SocketAddr::from((ip, 7071)), SocketAddr::from((ip, 7072)))
            }
            None => (free_port()?, free_port()?, free_port()?),
        };
        let mut config = format!(
            "heartbeat_interval_ms: {}\nheartbeat_timeout_ms: {}\n",
            (options.heartbeat_timeout.as_millis() / 10).max(100),
            options.heartbeat_timeout.as_millis()
        );
        if let Some(artifacts) = &options.artifacts_dir {
            config.push_str(&format!("artifacts_dir: {}\n", artifacts.display()));
        }
        std::fs::write(dir.join("scopd.yaml"), config)?;
        Ok(Cluster {
            dir,
            bin: bin.to_owned(),
            options,
            scopd: None,
            public,
            worker,
            metrics,
            agents: Vec::new(),
            hosts,
        })
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("scopd")
    }

    pub fn artifacts_dir(&self) -> PathBuf {
        self.options.artifacts_dir.clone().unwrap_or_else(|| self.data_dir().join("artifacts"))
    }

    /// Starts (or restarts) `scopd standalone` without local agents and waits until it answers.
    pub fn start_scopd(&mut self) -> anyhow::Result<()> {
        let log = append(&self.dir.join("logs/scopd.log"))?;
        let scopd = self.bin.join("scopd");
        let mut cmd = match &self.hosts {
            Some(h) => h.hosts[0].command(&scopd),
            None => Command::new(&scopd),
        };
        let local_agents = self.options.local_agents.to_string();
        cmd.args(["standalone", "--workers", &local_agents, "--cpu", "--config"])
            .arg(self.dir.join("scopd.yaml"))
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--public-addr", &self.public.to_string()])
            .args(["--worker-addr", &self.worker.to_string()])
            .args(["--metrics-addr", &self.metrics.to_string()])
            .arg("--client-config")
            .arg(self.dir.join("scopctl.yaml"))
            .arg("--data-root")
            .arg(crate::shell::root().join("data"))
            .arg("--models-root")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        self.scopd = Some(cmd.spawn().context("cannot start scopd standalone")?);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.scopctl(&["status"]).output().is_ok_and(|o| o.status.success()) {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.scopd.as_mut().map(Child::try_wait) {
                bail!("scopd exited at start ({status}); see {}", self.dir.join("logs/scopd.log").display());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!("scopd did not answer within 60 s")
    }

    /// The pid of local agent `index` that `scopd standalone` runs now, if any.
    pub fn local_agent_pid(&self, index: usize) -> Option<i32> {
        let scopd = i32::try_from(self.scopd.as_ref()?.id()).ok()?;
        let scratch = self.data_dir().join(format!("agents/{index}"));
        let scratch = scratch.as_os_str().as_encoded_bytes();
        children(scopd).into_iter().find(|&pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| cmdline.split(|&b| b == 0).any(|arg| arg == scratch))
        })
    }

    /// The worker id agent `index` registered under (kept in its scratch dir).
    pub fn worker_id(&self, index: usize) -> Option<String> {
        let scratch = if self.options.local_agents > 0 {
            self.data_dir().join(format!("agents/{index}"))
        } else {
            self.dir.join(format!("agents/{index}"))
        };
        let id = std::fs::read_to_string(scratch.join("worker-id")).ok()?;
        Some(id.trim().to_owned()).filter(|id| !id.is_empty())
    }

    /// Every agent's worker id, by index.
    pub fn worker_ids(&self) -> Vec<Option<String>> {
        (0..self.options.agents.max(self.options.local_agents)).map(|i| self.worker_id(i)).collect()
    }

    /// The workers scopd declared lost, as its log says, in order.
    pub fn lost_workers(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.join("logs/scopd.log")).unwrap_or_default();
        log.lines()
            .filter(|line| line.contains("worker lost"))
            .filter_map(|line| {
                let value = line.split_once("worker_id=")?.1;
                Some(value.split_whitespace().next()?.trim_matches('"').to_owned())
            })
            .collect()
    }

    /// SIGKILL to scopd (its agents live on, as they would on other machines).
    pub fn kill_scopd(&mut self) {
        if let Some(mut child) = self.scopd.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts agent `index` (a new one when `index` is the next), connecting
    /// to `coordinator` (default: the worker port) and advertising `advertise`.
    pub fn start_agent(
        &mut self,
        index: usize,
        coordinator: Option<String>,
        advertise: Option<String>,
    ) -> anyhow::Result<()> {
        let host = self.hosts.as_ref().map(|h| h.hosts[index + 1].clone());
        if index == self.agents.len() {
            let default_advertise = host.as_ref().map_or(Ipv4Addr::LOCALHOST, |h| h.ip).to_string();
            self.agents.push(Agent {
                child: None,
                coordinator: coordinator.unwrap_or_else(|| format!("http://{}", self.worker)),
                advertise: advertise.unwrap_or(default_advertise),
                host,
            });
        }
        let agent = &self.agents[index];
        let worker_bin = self.bin.join("scop-worker");
        let mut cmd = match &agent.host {
            Some(h) => h.command(&worker_bin),
            None => Command::new(&worker_bin),
        };
        let log = append(&self.dir.join(format!("logs/agent-{index}.log")))?;
        cmd.args(["agent", "--cpu", "--slots", "1", "--threads", "1"])
            .args(["--coordinator", &agent.coordinator])
            .arg("--token-file")
            .arg(self.data_dir().join("worker.token"))
            .args(["--advertise-host", &agent.advertise])
            .arg("--scratch-dir")
            .arg(self.dir.join(format!("agents/{index}")))
            .arg("--data-root")
            .arg(crate::shell::root().join("data"))
            .arg("--models-root")
            .arg(&self.dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd.spawn().context("cannot start an agent")?;
        self.agents[index].child = Some(child);
        Ok(())
    }

    pub fn agent_pid(&self, index: usize) -> anyhow::Result<i32> {
        let child = self.agents[index].child.as_ref().context("that agent is not running")?;
        Ok(i32::try_from(child.id())?)
    }

    /// SIGKILL to agent `index` (its rank, orphaned, is left as a dead host's would be).
    pub fn kill_agent(&mut self, index: usize) {
        if let Some(mut child) = self.agents[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The pid of the rank process agent `index` runs now, if any.
    pub fn rank_pid(&self, index: usize) -> Option<i32> {
        let agent = self.agent_pid(index).ok()?;
        children(agent).into_iter().next()
    }

    /// Waits until `count` workers are connected.
    pub fn wait_workers(&self, count: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.scopctl(&["workers", "-o", "json"]).output()?;
            let connected = serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .ok()
                .and_then(|v| v.as_array().cloned())
                .map_or(0, |w| w.iter().filter(|w| w["state"] == "connected").count());
            if connected >= count {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("only {connected} of {count} agents connected within 60 s");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `scopctl` against this cluster's coordinator.
    pub fn scopctl(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.bin.join("scopctl"));
        cmd.args(args).env("SCOPCTL_CONFIG", self.dir.join("scopctl.yaml")).stdin(Stdio::null());
        cmd
    }

    /// Writes the suite's job spec (with `edit` applied) and submits it.
    pub fn submit(&self, edit: impl FnOnce(&mut scop_core::spec::JobSpec)) -> anyhow::Result<Job> {
        let mut spec = super::spec::tiny(&self.dir)?;
        edit(&mut spec);
        let path = self.dir.join("job.yaml");
        std::fs::write(&path, serde_norway::to_string(&spec)?)?;
        let out = self.scopctl(&["submit", "-o", "json"]).arg(&path).output()?;
        if !out.status.success() {
            bail!("scopctl submit: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        let job: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let id = job["id"].as_str().context("scopctl submit printed no id")?.to_owned();
        Ok(Job::follow(self, id, spec))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.options.local_agents > 0
            && let Some(scopd) = self.scopd.as_ref().and_then(|c| i32::try_from(c.id()).ok())
        {
            // Stopped first, so that it restarts none of the agents killed here.
            signal(scopd, Signal::SIGSTOP);
            for index in 0..self.options.local_agents {
                if let Some(agent) = self.local_agent_pid(index) {
                    for rank in children(agent) {
                        signal(rank, Signal::SIGKILL);
                    }
                    signal(agent, Signal::SIGKILL);
                }
            }
        }
        for index in 0..self.agents.len() {
            if let Ok(pid) = self.agent_pid(index) {
                for rank in children(pid) {
                    let _ = kill(Pid::from_raw(rank), Signal::SIGKILL);
                }
            }
            self.kill_agent(index);
        }
        self.kill_scopd();
    }
}

/// A free loopback port (closed again; the race with other processes is accepted).
fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn append(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

/// The pids whose parent is `pid` (from /proc).
pub fn children(pid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&child| {
            std::fs::read_to_string(format!("/proc/{child}/stat")).ok().is_some_and(|stat| {
                // The fields after the command name, which is in parentheses.
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1).map(str::to_owned))
                    .is_some_and(|ppid| ppid == pid.to_string())
            })
        })
        .collect()
}

/// Sends `signal` to `pid`, ignoring a process that is already gone.
pub fn signal(pid: i32, signal: Signal) {
    let _ = kill(Pid::from_raw(pid), signal);
}
