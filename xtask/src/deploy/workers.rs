//! The rendered worker agents against `scop-worker agent --help` and against
//! the coordinator: the subcommand, flags and variables, the coordinator
//! address, the token, the shared volume, GPUs, and the policies around them.

use anyhow::{Context, bail};
use serde_json::Value;

use super::coordinator::{Coordinator, secret_key};
use super::help::Help;
use super::pod::{EnvValue, Workload};
use super::render::{Rendered, id, str_at};
use super::schema::selects;

/// The agent subcommand, its help, and the worker binary's subcommands.
#[derive(Debug)]
pub struct AgentHelp {
    pub agent: Help,
    pub subcommands: Vec<String>,
}

pub fn check<'a>(
    rendered: &'a Rendered,
    help: &AgentHelp,
    coordinator: &Coordinator,
) -> anyhow::Result<Workload<'a>> {
    let workload = Workload::running(rendered, "scop-worker")?;
    let what = workload.what();
    if !matches!(workload.object["kind"].as_str(), Some("StatefulSet" | "DaemonSet")) {
        bail!("{what}: workers must be a StatefulSet or DaemonSet");
    }
    if !workload.command().is_empty() {
        bail!("{what}: sets `command`; the image's ENTRYPOINT (scop-worker) must run");
    }
    let args = workload.args();
    match args.first() {
        Some(sub) if sub == "agent" && help.subcommands.iter().any(|s| s == "agent") => {}
        other => bail!(
            "{what}: must run `scop-worker agent`, runs subcommand {other:?} (it has {:?})",
            help.subcommands
        ),
    }
    let agent = &help.agent;
    let mut given: Vec<String> = Vec::new();
    let mut rest = args[1..].iter();
    while let Some(arg) = rest.next() {
        let name =
            arg.strip_prefix("--").with_context(|| format!("{what}: argument {arg:?} is not a flag"))?;
        let name = name.split_once('=').map_or(name, |(n, _)| n);
        let opt = agent.option(name).with_context(|| format!("{what}: the agent has no flag --{name}"))?;
        if opt.takes_value && !arg.contains('=') {
            rest.next().with_context(|| format!("{what}: --{name} needs a value"))?;
        }
        given.push(name.to_owned());
    }
    for name in workload.env_names().iter().filter(|n| n.starts_with("SCOP_")) {
        let opt = agent.option_for_env(name).with_context(|| {
            format!(
                "{what}: sets {name}, which the agent does not read (it reads {})",
                agent.envs().join(", ")
            )
        })?;
        given.push(opt.long.clone());
    }
    for required in &agent.required {
        if !given.contains(required) {
            bail!("{what}: the agent requires --{required}, set neither as a flag nor through its variable");
        }
    }
    let value = |long: &str| -> Option<EnvValue> {
        let env = agent.option(long)?.env.clone()?;
        workload.env(&env)
    };

    // The coordinator's worker port, through its Service.
    let Some(EnvValue::Literal(address)) = value("coordinator") else {
        bail!("{what}: the coordinator address must be a literal SCOP_COORDINATOR");
    };
    check_address(&address, coordinator, &what)?;
    match value("advertise-host") {
        Some(EnvValue::Field(field)) if field == "status.podIP" => {}
        other => {
            bail!("{what}: SCOP_ADVERTISE_HOST must be the pod IP (fieldRef status.podIP), is {other:?}")
        }
    }

    // The same worker token the coordinator accepts, and not the users file.
    let Some(EnvValue::Literal(token)) = value("token-file") else {
        bail!("{what}: the worker token file must be a literal path");
    };
    let backing = secret_key(rendered, &workload, &token)?;
    if backing != coordinator.worker_token {
        bail!(
            "{what}: reads its token from {backing:?}, the coordinator accepts {:?}",
            coordinator.worker_token
        );
    }
    for volume in workload.pod["volumes"].as_array().into_iter().flatten() {
        let keys = volume.pointer("/secret/items").and_then(Value::as_array);
        if volume.get("secret").is_some() && keys.is_none_or(|k| k.iter().any(|i| i["key"] == "users.yaml")) {
            bail!("{what}: volume {} exposes the users file to workers", volume["name"]);
        }
    }

    // The shared volume: the same claim at the same path as the coordinator's.
    let artifacts = workload.backing(&coordinator.artifacts_dir)?;
    if artifacts != coordinator.artifacts || !workload.writable(&coordinator.artifacts_dir) {
        bail!(
            "{what}: the artifacts dir {} is on {artifacts:?} here but on {:?} in the coordinator",
            coordinator.artifacts_dir,
            coordinator.artifacts
        );
    }
    let scratch = match value("scratch-dir") {
        Some(EnvValue::Literal(dir)) => dir,
        _ => "/tmp".to_owned(),
    };
    if !workload.writable(&scratch) {
        bail!("{what}: the scratch dir {scratch} is not writable (read-only root filesystem?)");
    }

    let gpus = workload.container.pointer("/resources/limits/nvidia.com~1gpu");
    let cpu_only = matches!(value("cpu"), Some(EnvValue::Literal(v)) if v == "true");
    if gpus.is_some() && cpu_only {
        bail!("{what}: requests nvidia.com/gpu but sets SCOP_CPU_ONLY");
    }
    if workload.container.pointer("/resources/requests/nvidia.com~1gpu").is_some_and(|r| Some(r) != gpus) {
        bail!("{what}: nvidia.com/gpu requests must equal its limits");
    }
    check_policies(rendered, &workload, coordinator)?;
    Ok(workload)
}

/// `scopd:7071`, `http://scopd.scop.svc:7071`: the coordinator's Service and its worker port.
fn check_address(address: &str, coordinator: &Coordinator, what: &str) -> anyhow::Result<()> {
    let (scheme, rest) = address.split_once("://").unwrap_or(("http", address));
    match (scheme, coordinator.worker_tls) {
        ("http", false) | ("https", true) => {}
        ("http", true) => bail!("{what}: coordinator {address}: the worker port serves TLS, so use https://"),
        ("https", false) => {
            bail!("{what}: coordinator {address}: the worker port serves plain gRPC, use http://")
        }
        _ => bail!("{what}: coordinator {address}: the scheme must be http or https"),
    }
    let (host, port) =
        rest.rsplit_once(':').with_context(|| format!("{what}: coordinator {address} has no port"))?;
    let service = str_at(coordinator.service, "/metadata/name");
    let namespace = str_at(coordinator.service, "/metadata/namespace");
    let names = [
        service.to_owned(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ];
    if !names.iter().any(|n| n == host) {
        bail!("{what}: coordinator host {host} is not the Service {} ({names:?})", id(coordinator.service));
    }
    let ports = coordinator.service["spec"]["ports"].as_array().into_iter().flatten();
    let by_port = ports.clone().find(|p| p["port"].as_u64().map(|n| n.to_string()).as_deref() == Some(port));
    let target = by_port.map(|p| &p["targetPort"]);
    let container_ports = coordinator.workload.ports();
    let target_number = match target {
        Some(Value::String(name)) => container_ports.iter().find(|(n, _)| n == name).map(|(_, n)| *n),
        Some(Value::Number(n)) => n.as_u64(),
        _ => None,
    };
    if target_number != Some(u64::from(coordinator.worker_port)) {
        bail!(
            "{what}: coordinator port {port} of {} does not lead to scopd's worker port {}",
            id(coordinator.service),
            coordinator.worker_port
        );
    }
    Ok(())
}

/// Only workers reach the worker port; workers reach each other; a PDB covers them.
fn check_policies(rendered: &Rendered, workers: &Workload, coordinator: &Coordinator) -> anyhow::Result<()> {
    let worker_labels = &workers.object["spec"]["template"]["metadata"]["labels"];
    let coordinator_labels = &coordinator.workload.object["spec"]["template"]["metadata"]["labels"];
    let port_names: Vec<(String, u64)> = coordinator.workload.ports();
    let is_worker_port = |p: &Value| match &p["port"] {
        Value::String(name) => {
            port_names.iter().any(|(n, number)| n == name && *number == u64::from(coordinator.worker_port))
        }
        Value::Number(n) => n.as_u64() == Some(u64::from(coordinator.worker_port)),
        _ => true, // no port: every port
    };
    let mut admitted_workers = false;
    let mut worker_peers = false;
    for policy in rendered.of_kind("NetworkPolicy") {
        let rules = policy.pointer("/spec/ingress").and_then(Value::as_array).into_iter().flatten();
        let selected = &policy["spec"]["podSelector"]["matchLabels"];
        for rule in rules {
            let ports: Vec<&Value> =
                rule.get("ports").and_then(Value::as_array).into_iter().flatten().collect();
            let from: Vec<&Value> =
                rule.get("from").and_then(Value::as_array).into_iter().flatten().collect();
            let only_workers = !from.is_empty()
                && from.iter().all(|f| {
                    selects(&f["podSelector"]["matchLabels"], worker_labels)
                        && f.get("namespaceSelector").is_none()
                        && f.get("ipBlock").is_none()
                });
            if selects(selected, coordinator_labels)
                && (ports.is_empty() || ports.iter().any(|p| is_worker_port(p)))
            {
                if !only_workers {
                    bail!("{}: admits more than worker pods to the worker port", id(policy));
                }
                admitted_workers = true;
            }
            if selects(selected, worker_labels) && only_workers {
                worker_peers = true;
            }
        }
    }
    if !admitted_workers || !worker_peers {
        bail!(
            "overlay {}: NetworkPolicies must admit workers to scopd's worker port ({admitted_workers}) and to each other ({worker_peers})",
            rendered.overlay
        );
    }
    let pdb = rendered
        .of_kind("PodDisruptionBudget")
        .any(|p| selects(&p["spec"]["selector"]["matchLabels"], worker_labels));
    if !pdb {
        bail!("overlay {}: no PodDisruptionBudget selects the workers", rendered.overlay);
    }
    Ok(())
}
