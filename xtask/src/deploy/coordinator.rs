//! The rendered coordinator against `scopd --help`: its flags and variables,
//! the config file it is given, the ports it listens on, the Service and
//! probes pointing at them, and the files behind its token and data paths.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use serde_json::Value;

use super::help::Help;
use super::pod::{Backing, Workload};
use super::render::{Rendered, id, str_at};

/// What the workers' checks need to know about the coordinator.
#[derive(Debug)]
pub struct Coordinator<'a> {
    pub workload: Workload<'a>,
    /// The Service selecting the coordinator pod.
    pub service: &'a Value,
    /// The port scopd serves the worker API on.
    pub worker_port: u16,
    pub artifacts_dir: String,
    pub artifacts: Backing,
    pub worker_token: Backing,
    /// The users file (a Secret key), which the workers must not see.
    pub users: Backing,
    pub worker_tls: bool,
}

/// The settings the checks read, by config-file key. Each is also a flag
/// (`-` for `_`) whose variable `--help` names; the file sits below both.
const SETTINGS: [&str; 9] = [
    "data_dir",
    "artifacts_dir",
    "public_addr",
    "worker_addr",
    "metrics_addr",
    "users_file",
    "token_file",
    "worker_token_file",
    "insecure_no_auth",
];

pub fn check<'a>(rendered: &'a Rendered, help: &Help) -> anyhow::Result<Coordinator<'a>> {
    let workload = Workload::running(rendered, "scopd")?;
    let what = workload.what();
    let object = workload.object;
    if object["kind"] != "Deployment" || object["spec"]["replicas"] != 1 {
        bail!("{what}: scopd must be a Deployment with 1 replica (one SQLite writer)");
    }
    if str_at(object, "/spec/strategy/type") != "Recreate" {
        bail!("{what}: the Deployment needs strategy Recreate, or two pods would share the database volume");
    }
    if !workload.command().is_empty() {
        bail!("{what}: sets `command`; the image's ENTRYPOINT (scopd) must run");
    }
    let flags = parse_args(&workload, help)?;
    for name in workload.env_names().iter().filter(|n| n.starts_with("SCOP_")) {
        if help.option_for_env(name).is_none() {
            bail!("{what}: sets {name}, which scopd does not read (it reads {})", help.envs().join(", "));
        }
    }
    let file = config_file(rendered, &workload, help, &flags)?;
    let setting = |key: &str| -> anyhow::Result<Option<String>> {
        // The users file's flag is `--users`; every other key is its flag.
        let flag = if key == "users_file" { "users".to_owned() } else { key.replace('_', "-") };
        let opt =
            help.option(&flag).with_context(|| format!("scopd has no --{flag}, which the check reads"))?;
        let env = opt.env.as_deref().and_then(|e| workload.env_literal(e));
        Ok(flags.get(&flag).cloned().or(env).or_else(|| file.get(key).cloned()).or(opt.default.clone()))
    };
    let settings: BTreeMap<&str, Option<String>> =
        SETTINGS.iter().map(|k| Ok((*k, setting(k)?))).collect::<anyhow::Result<_>>()?;
    let get = |key: &str| settings[key].clone().unwrap_or_default();
    if get("insecure_no_auth") == "true" {
        bail!("{what}: authentication is turned off (insecure_no_auth)");
    }

    let ports = workload.ports();
    let mut listen = Vec::new();
    for key in ["public_addr", "worker_addr", "metrics_addr"] {
        let addr: std::net::SocketAddr =
            get(key).parse().with_context(|| format!("{what}: {key} is {:?}, not host:port", get(key)))?;
        if !addr.ip().is_unspecified() {
            bail!("{what}: {key} is {addr}; in a pod scopd must listen on 0.0.0.0 (or [::]) to be reachable");
        }
        if !ports.iter().any(|(_, n)| *n == u64::from(addr.port())) {
            bail!("{what}: listens on {addr} ({key}) but declares container ports {ports:?}");
        }
        listen.push(addr.port());
    }
    let [public_port, worker_port, metrics_port] = listen[..] else { unreachable!("three addresses") };
    check_probes(&workload, &[public_port, worker_port], metrics_port)?;
    let service = check_service(rendered, &workload, &listen)?;

    let data_dir = get("data_dir");
    match workload.backing(&data_dir)? {
        Backing::Claim { .. } if workload.writable(&data_dir) => {}
        other => {
            bail!("{what}: data_dir {data_dir} must be on a writable PersistentVolumeClaim, is on {other:?}")
        }
    }
    let artifacts_dir = get("artifacts_dir");
    let artifacts = workload.backing(&artifacts_dir)?;
    if !matches!(artifacts, Backing::Claim { .. }) || !workload.writable(&artifacts_dir) {
        bail!(
            "{what}: artifacts_dir {artifacts_dir} must be on a writable shared claim, is on {artifacts:?}"
        );
    }
    if artifacts == workload.backing(&data_dir)? {
        bail!(
            "{what}: artifacts_dir and data_dir are on the same claim; the workers must not mount the database"
        );
    }
    if settings["token_file"].is_some() {
        bail!(
            "{what}: token_file is the deprecated shared admin token; give users_file (each user its role)"
        );
    }
    if get("users_file").is_empty() {
        bail!("{what}: no users_file: the public API needs its users (names, roles, token hashes)");
    }
    let users = secret_key(rendered, &workload, &get("users_file"))?;
    let worker_token = secret_key(rendered, &workload, &get("worker_token_file"))?;
    Ok(Coordinator {
        workload,
        service,
        worker_port,
        artifacts_dir,
        artifacts,
        worker_token,
        users,
        worker_tls: file.contains_key("worker_tls") || flags.contains_key("worker-tls-cert"),
    })
}

/// The container's flags and their values; unknown flags and positional
/// arguments (such as `standalone`) are errors.
fn parse_args(workload: &Workload, help: &Help) -> anyhow::Result<BTreeMap<String, String>> {
    let what = workload.what();
    let args = workload.args();
    let mut flags = BTreeMap::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let Some(flag) = arg.strip_prefix("--") else {
            bail!(
                "{what}: argument {arg:?} is not a flag; plain scopd is the coordinator (`standalone` starts local agents)"
            );
        };
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (flag, None),
        };
        let opt = help
            .option(name)
            .with_context(|| format!("{what}: scopd has no flag --{name} ({})", help.command))?;
        let value = match (opt.takes_value, inline) {
            (true, Some(value)) => value,
            (true, None) => {
                rest.next().cloned().with_context(|| format!("{what}: --{name} needs a value"))?
            }
            (false, _) => "true".to_owned(),
        };
        flags.insert(name.to_owned(), value);
    }
    Ok(flags)
}

/// The `--config` file's top-level keys as strings, read from its ConfigMap.
fn config_file(
    rendered: &Rendered,
    workload: &Workload,
    help: &Help,
    flags: &BTreeMap<String, String>,
) -> anyhow::Result<BTreeMap<String, String>> {
    let env = help.option("config").and_then(|o| o.env.as_deref()).and_then(|e| workload.env_literal(e));
    let Some(path) = flags.get("config").cloned().or(env) else { return Ok(BTreeMap::new()) };
    let Backing::ConfigMap { name, key } = workload.backing(&path)? else {
        bail!("{}: the config file {path} is not mounted from a ConfigMap", workload.what());
    };
    let text = config_map_data(rendered, &name, &key)?;
    let yaml: Value = serde_norway::from_str(text).with_context(|| format!("ConfigMap/{name} key {key}"))?;
    let map = yaml.as_object().with_context(|| format!("ConfigMap/{name} key {key}: not a mapping"))?;
    Ok(map
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
        .collect())
}

pub fn config_map_data<'a>(rendered: &'a Rendered, name: &str, key: &str) -> anyhow::Result<&'a str> {
    let map =
        rendered.named("ConfigMap", name).with_context(|| format!("no ConfigMap/{name} is rendered"))?;
    map.pointer(&format!("/data/{key}"))
        .and_then(Value::as_str)
        .with_context(|| format!("ConfigMap/{name} has no key {key}"))
}

/// The Secret key behind `path`, which must exist in the render.
pub fn secret_key(rendered: &Rendered, workload: &Workload, path: &str) -> anyhow::Result<Backing> {
    let backing = workload.backing(path)?;
    let Backing::Secret { name, key } = &backing else {
        bail!("{}: token file {path} must come from a Secret, comes from {backing:?}", workload.what());
    };
    let secret = rendered.named("Secret", name).with_context(|| {
        format!(
            "{}: mounts Secret {name}, which is not rendered (a generated name not rewritten?)",
            workload.what()
        )
    })?;
    if secret.pointer(&format!("/data/{key}")).or(secret.pointer(&format!("/stringData/{key}"))).is_none() {
        bail!("{}: Secret/{name} has no key {key} for {path}", workload.what());
    }
    Ok(backing)
}

/// gRPC probes must hit a gRPC port, HTTP ones the metrics port.
fn check_probes(workload: &Workload, grpc: &[u16], metrics: u16) -> anyhow::Result<()> {
    let mut probes = 0;
    for kind in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let Some(probe) = workload.container.get(kind) else { continue };
        probes += 1;
        let (port, allowed) = if let Some(port) = probe.pointer("/grpc/port") {
            (port, grpc.to_vec())
        } else if let Some(port) = probe.pointer("/httpGet/port") {
            (port, vec![metrics])
        } else {
            bail!("{}: {kind} is neither a gRPC nor an HTTP probe", workload.what());
        };
        if !port.as_u64().is_some_and(|p| allowed.iter().any(|a| u64::from(*a) == p)) {
            bail!("{}: {kind} probes port {port}, scopd serves that probe on {allowed:?}", workload.what());
        }
    }
    if probes < 2 {
        bail!("{}: needs readiness and liveness probes", workload.what());
    }
    Ok(())
}

/// The one Service selecting the coordinator must expose all three ports.
fn check_service<'a>(
    rendered: &'a Rendered,
    workload: &Workload,
    listen: &[u16],
) -> anyhow::Result<&'a Value> {
    let labels = &workload.object["spec"]["template"]["metadata"]["labels"];
    let services: Vec<&Value> = rendered
        .of_kind("Service")
        .filter(|s| super::schema::selects(&s["spec"]["selector"], labels))
        .collect();
    let [service] = services.as_slice() else {
        bail!("{}: expected one Service selecting it, found {}", workload.what(), services.len());
    };
    let container_ports = workload.ports();
    let targets: Vec<u64> = service["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| match &p["targetPort"] {
            Value::String(name) => {
                container_ports.iter().find(|(n, _)| n == name).map_or(0, |(_, number)| *number)
            }
            Value::Number(n) => n.as_u64().unwrap_or(0),
            _ => p["port"].as_u64().unwrap_or(0),
        })
        .collect();
    for port in listen {
        if !targets.contains(&u64::from(*port)) {
            bail!("{}: no port targets scopd's port {port} (targets {targets:?})", id(service));
        }
    }
    Ok(service)
}
