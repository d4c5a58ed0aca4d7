//! Several hosts on one machine: a network namespace per host, each joined
//! by a veth pair to one bridge in the root namespace, with its own address
//! on 10.77.0.0/24. A partition takes a host's link down. The namespaces, the
//! links and the bridge are removed when the [`Hosts`] guard is dropped,
//! also when a scenario fails or panics, and leftovers of an interrupted run
//! are removed before new ones are made.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

const BRIDGE: &str = "scopchaos0";
/// The bridge's own address: where the suite's relays listen for the hosts.
pub const BRIDGE_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const PREFIX: &str = "scopchaos-";

/// Why namespaces cannot be made here, or `None` when they can (root, `ip`
/// present after installing iproute2 if needed).
pub fn unavailable() -> Option<String> {
    if !nix_is_root() {
        return Some("not running as root".into());
    }
    if !has_ip() {
        eprintln!("chaos: `ip` is missing; installing iproute2 with apt-get");
        let installed = Command::new("apt-get")
            .args(["install", "-y", "-q", "iproute2"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
            || (Command::new("apt-get").args(["update", "-q"]).status().is_ok_and(|s| s.success())
                && Command::new("apt-get")
                    .args(["install", "-y", "-q", "iproute2"])
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .status()
                    .is_ok_and(|s| s.success()));
        if !installed || !has_ip() {
            return Some("`ip` (iproute2) is missing and apt-get could not install it".into());
        }
    }
    // The real test: can a namespace be made and removed?
    let probe = format!("{PREFIX}probe");
    let _ = quiet(&["netns", "del", &probe]);
    if let Err(e) = ip(&["netns", "add", &probe]) {
        return Some(format!("cannot create a network namespace: {e:#}"));
    }
    let _ = quiet(&["netns", "del", &probe]);
    None
}

/// Whether the kernel has the `netem` qdisc (on a throwaway veth).
pub fn has_netem() -> bool {
    let link = format!("{PREFIX}q0");
    if ip(&["link", "add", &link, "type", "veth", "peer", "name", &format!("{PREFIX}q1")]).is_err() {
        return false;
    }
    let ok = Command::new("tc")
        .args(["qdisc", "add", "dev", &link, "root", "netem", "delay", "1ms"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let _ = quiet(&["link", "del", &link]);
    ok
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
}

fn has_ip() -> bool {
    Command::new("ip").arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").args(args).output().context("cannot run ip")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

fn quiet(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One simulated host.
#[derive(Debug, Clone)]
pub struct Host {
    pub namespace: String,
    pub ip: Ipv4Addr,
    /// The bridge side of its veth pair: down is a partition.
    link: String,
}

impl Host {
    /// `command` run inside this host's namespace.
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.namespace]).arg(program);
        cmd
    }

    /// Takes the host's link down (`false`) or up again.
    pub fn set_link(&self, up: bool) -> anyhow::Result<()> {
        ip(&["link", "set", &self.link, if up { "up" } else { "down" }])
    }

    /// Restricts the ephemeral ports of this host to `first..=last` (so the
    /// ring ports its agent reserves are known in advance).
    pub fn set_port_range(&self, first: u16, last: u16) -> anyhow::Result<()> {
        let status = Command::new("ip")
            .args(["netns", "exec", &self.namespace, "sh", "-c"])
            .arg(format!("echo '{first} {last}' > /proc/sys/net/ipv4/ip_local_port_range"))
            .status()?;
        if !status.success() {
            bail!("cannot set the port range of {}", self.namespace);
        }
        Ok(())
    }
}

/// The namespaces of one scenario; removed on drop.
#[derive(Debug)]
pub struct Hosts {
    pub hosts: Vec<Host>,
}

impl Hosts {
    /// Makes one namespace per name, addressed 10.77.0.10, .11, … in order.
    pub fn create(names: &[&str]) -> anyhow::Result<Hosts> {
        cleanup_leftovers();
        let mut made = Hosts { hosts: Vec::new() };
        ip(&["link", "add", BRIDGE, "type", "bridge"])?;
        ip(&["addr", "add", &format!("{BRIDGE_IP}/24"), "dev", BRIDGE])?;
        ip(&["link", "set", BRIDGE, "up"])?;
        for (i, name) in names.iter().enumerate() {
            let namespace = format!("{PREFIX}{name}");
            let ip_addr = Ipv4Addr::new(10, 77, 0, 10 + u8::try_from(i)?);
            let link = format!("sc{i}h");
            let inner = format!("sc{i}n");
            ip(&["netns", "add", &namespace])?;
            let host = Host { namespace: namespace.clone(), ip: ip_addr, link: link.clone() };
            made.hosts.push(host);
            ip(&["link", "add", &link, "type", "veth", "peer", "name", &inner])?;
            ip(&["link", "set", &inner, "netns", &namespace])?;
            ip(&["link", "set", &link, "master", BRIDGE, "up"])?;
            ip(&["-n", &namespace, "addr", "add", &format!("{ip_addr}/24"), "dev", &inner])?;
            ip(&["-n", &namespace, "link", "set", &inner, "up"])?;
            ip(&["-n", &namespace, "link", "set", "lo", "up"])?;
        }
        Ok(made)
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for host in &self.hosts {
            let _ = quiet(&["link", "del", &host.link]);
            let _ = quiet(&["netns", "del", &host.namespace]);
        }
        let _ = quiet(&["link", "del", BRIDGE]);
    }
}

/// Removes what an interrupted run left: our namespaces, links and bridge.
fn cleanup_leftovers() {
    if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(name) = line.split_whitespace().next().filter(|n| n.starts_with(PREFIX)) {
                let _ = quiet(&["netns", "del", name]);
            }
        }
    }
    for i in 0..8 {
        let _ = quiet(&["link", "del", &format!("sc{i}h")]);
    }
    let _ = quiet(&["link", "del", BRIDGE]);
}
