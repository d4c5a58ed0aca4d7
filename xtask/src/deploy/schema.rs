//! Offline validation of rendered objects against the Kubernetes JSON schemas
//! (`kubernetes-validate` from `.venv`, strict: unknown fields are errors).
//!
//! kubernetes-validate only *warns* about a kind it has no schema for and then
//! passes it, so its output is read line by line: every object must have
//! passed against every version, except the Prometheus Operator's custom
//! resources, which no core schema covers. Those are named in the report and
//! checked by reference instead (their selector and port must match a Service).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::Value;

use super::render::{Rendered, id, str_at};

/// The oldest Kubernetes the manifests support (gRPC probes are GA since 1.27)
/// and the newest the pinned kubernetes-validate knows.
pub const VERSIONS: [&str; 2] = ["1.29", "1.37"];

/// Custom resources without a core schema: (apiVersion, kind).
const CUSTOM: [(&str, &str); 2] =
    [("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PodMonitor")];

/// What validation covered.
#[derive(Debug)]
pub struct Coverage {
    pub validated: usize,
    /// Custom resources checked by reference only, as `Kind/name`.
    pub custom: Vec<String>,
}

pub fn validate(root: &Path, scratch: &Path, rendered: &Rendered) -> anyhow::Result<Coverage> {
    let custom: Vec<&Value> = rendered.objects.iter().filter(|o| is_custom(o)).collect();
    let core = rendered.objects.len() - custom.len();
    let file = scratch.join(format!("{}.yaml", rendered.overlay));
    std::fs::write(&file, &rendered.text)?;
    let out = run_validator(root, &file)?;
    let mut passed = 0;
    let mut problems = Vec::new();
    for line in out.lines() {
        if line.starts_with("INFO") && line.contains(" passed for resource ") {
            passed += 1;
        } else if line.starts_with("WARN") && CUSTOM.iter().any(|(api, kind)| schema_missing(line, api, kind))
        {
            // A custom resource: checked below.
        } else if !line.trim().is_empty() {
            problems.push(line.to_owned());
        }
    }
    if !problems.is_empty() {
        bail!(
            "overlay {}: the rendered objects do not validate:\n  {}",
            rendered.overlay,
            problems.join("\n  ")
        );
    }
    let expected = core * VERSIONS.len();
    if passed != expected {
        bail!(
            "overlay {}: kubernetes-validate passed {passed} object checks, expected {core} objects × {} versions:\n{out}",
            rendered.overlay,
            VERSIONS.len()
        );
    }
    for object in &custom {
        check_monitor(rendered, object)?;
    }
    Ok(Coverage { validated: core, custom: custom.iter().map(|o| id(o)).collect() })
}

/// Strict validation must reject an unknown field; proves the validator is
/// really checking (run once, on a copy of a rendered Deployment).
pub fn check_validator_rejects(root: &Path, scratch: &Path, rendered: &Rendered) -> anyhow::Result<()> {
    let mut broken = rendered.of_kind("Deployment").next().context("no Deployment rendered")?.clone();
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicee"] = "Always".into();
    let file = scratch.join("must-fail.yaml");
    std::fs::write(&file, serde_json::to_string(&broken)?)?;
    let out = run_validator(root, &file)?;
    if !out.lines().any(|l| l.starts_with("ERROR") && l.contains("imagePullPolicee")) {
        bail!(
            "kubernetes-validate accepted a container with an unknown field; strict validation is not working:\n{out}"
        );
    }
    Ok(())
}

fn run_validator(root: &Path, file: &Path) -> anyhow::Result<String> {
    let validator = root.join(".venv/bin/kubernetes-validate");
    if !validator.exists() {
        bail!(
            "{} is missing: run `cargo xtask setup` (xtask/requirements.txt lists it)",
            validator.display()
        );
    }
    let mut command = Command::new(&validator);
    command.args(["--strict"]);
    for version in VERSIONS {
        command.args(["-k", version]);
    }
    // Exit status 1 means some object failed; the lines say which.
    let out = command.arg(file).output().with_context(|| format!("cannot run {}", validator.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Ok(text)
}

fn is_custom(object: &Value) -> bool {
    CUSTOM.iter().any(|(api, kind)| object["apiVersion"] == *api && object["kind"] == *kind)
}

fn schema_missing(line: &str, api: &str, kind: &str) -> bool {
    line.contains(&format!("Couldn't find schema for kind {kind} with api version {api} "))
}

/// A ServiceMonitor must select a rendered Service and name one of its ports;
/// a PodMonitor must select a pod template and name one of its container ports.
fn check_monitor(rendered: &Rendered, monitor: &Value) -> anyhow::Result<()> {
    let what = format!("overlay {}: {}", rendered.overlay, id(monitor));
    let selector = monitor
        .pointer("/spec/selector/matchLabels")
        .context(format!("{what}: no spec.selector.matchLabels"))?;
    let (targets, endpoints): (Vec<(&Value, Vec<&str>)>, &str) = if monitor["kind"] == "ServiceMonitor" {
        let services = rendered.of_kind("Service").filter(|s| selects(selector, &s["metadata"]["labels"]));
        (services.map(|s| (s, names(s.pointer("/spec/ports")))).collect(), "/spec/endpoints")
    } else {
        let pods = rendered
            .objects
            .iter()
            .filter(|o| selects(selector, &o["spec"]["template"]["metadata"]["labels"]));
        (pods.map(|o| (o, container_ports(o))).collect(), "/spec/podMetricsEndpoints")
    };
    let [(target, ports)] = targets.as_slice() else {
        bail!("{what}: its selector {selector} must match exactly one object, matches {}", targets.len());
    };
    let endpoints =
        monitor.pointer(endpoints).and_then(Value::as_array).context(format!("{what}: no endpoints"))?;
    for endpoint in endpoints {
        let port = str_at(endpoint, "/port");
        if !ports.contains(&port) {
            bail!("{what}: scrapes port {port:?}, but {} has ports {ports:?}", id(target));
        }
        if endpoint.get("path").is_some_and(|p| p != "/metrics") {
            bail!("{what}: scrapes path {}, scopd serves /metrics", endpoint["path"]);
        }
    }
    Ok(())
}

/// Whether every label of `selector` is on `labels`.
pub fn selects(selector: &Value, labels: &Value) -> bool {
    selector.as_object().is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// The port names of every container of a workload's pod template.
fn container_ports(workload: &Value) -> Vec<&str> {
    let containers = workload.pointer("/spec/template/spec/containers").and_then(Value::as_array);
    containers.into_iter().flatten().flat_map(|c| names(c.get("ports"))).collect()
}

/// The `name` of each entry of a port list.
fn names(ports: Option<&Value>) -> Vec<&str> {
    ports.and_then(Value::as_array).into_iter().flatten().filter_map(|p| p["name"].as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors_need_every_label_and_are_never_empty() {
        let labels = json!({"app": "scopd", "tier": "coordinator"});
        assert!(selects(&json!({"app": "scopd"}), &labels));
        assert!(!selects(&json!({"app": "scopd", "tier": "worker"}), &labels));
        assert!(!selects(&json!({}), &labels));
        assert!(!selects(&json!({"app": "scopd"}), &Value::Null));
    }

    #[test]
    fn monitors_must_name_a_port_of_the_selected_service() {
        let service = json!({"kind": "Service", "metadata": {"name": "scopd", "labels": {"app": "scopd"}},
            "spec": {"ports": [{"name": "metrics", "port": 7072}]}});
        let monitor = |port: &str| {
            json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
            "metadata": {"name": "scopd"}, "spec": {"selector": {"matchLabels": {"app": "scopd"}},
            "endpoints": [{"port": port, "path": "/metrics"}]}})
        };
        let rendered = |m: Value| Rendered {
            overlay: "t".into(),
            text: String::new(),
            objects: vec![service.clone(), m],
        };
        assert!(check_monitor(&rendered(monitor("metrics")), &monitor("metrics")).is_ok());
        let err = check_monitor(&rendered(monitor("http")), &monitor("http")).unwrap_err().to_string();
        assert!(err.contains("scrapes port \"http\"") && err.contains("[\"metrics\"]"), "{err}");
    }
}
