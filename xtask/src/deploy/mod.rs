//! `cargo xtask check-deploy`: the images, manifests and monitoring files under
//! `deploy/` agree with the repository and with what the binaries accept.
//!
//! No Docker engine and no cluster are needed. Each overlay is rendered with
//! `kubectl kustomize`, validated offline against the Kubernetes schemas, and
//! compared with the `--help` of the binaries the test suite already built;
//! then the rendered coordinator and agent settings run for real: scopd with
//! the rendered config and tokens, and an agent that registers with it.

mod coordinator;
mod dockerfile;
pub mod help;
mod mutations;
mod pod;
mod render;
mod schema;
mod smoke;
mod workers;

use std::path::Path;

use anyhow::{Context, bail};
use serde_json::Value;

use self::dockerfile::{ImageFacts, Packages};
use self::help::Help;
use self::pod::{Workload, image_tag};
use self::render::Rendered;
use self::workers::AgentHelp;
use crate::shell;

/// Overlays that must exist (others found under deploy/k8s/overlays are checked too).
const OVERLAYS: [&str; 2] = ["gpu", "cpu-dev"];

pub fn run() -> anyhow::Result<()> {
    let root = shell::root();
    let bin = shell::debug_binaries()?;
    let scopd = Help::of(&bin.join("scopd"), &[])?;
    let worker = Help::of(&bin.join("scop-worker"), &[])?;
    let agent =
        AgentHelp { agent: Help::of(&bin.join("scop-worker"), &["agent"])?, subcommands: worker.subcommands };
    Help::of(&bin.join("scopctl"), &[])?;

    let (packages, version) = cargo_packages()?;
    let scopd_image = dockerfile::check(&root, "deploy/docker/scopd.Dockerfile", &packages)?;
    let worker_image = dockerfile::check(&root, "deploy/docker/worker.Dockerfile", &packages)?;
    for (image, facts) in [("scopd", &scopd_image), ("scop-worker", &worker_image)] {
        // The manifests name images by the binary their ENTRYPOINT runs.
        if !facts.entrypoint.ends_with(&format!("/{image}")) {
            bail!("the {image} image runs {}, not {image}", facts.entrypoint);
        }
    }
    check_torch_pin(&root)?;
    eprintln!("check-deploy: Dockerfiles: COPY sources, cargo builds and ENTRYPOINTs ok");

    let overlays = render::overlays(&root)?;
    for required in OVERLAYS {
        if !overlays.iter().any(|o| o == required) {
            bail!("deploy/k8s/overlays/{required} is missing");
        }
    }
    let scratch = tempfile::tempdir().context("cannot create a temporary directory")?;
    let copy = render::prepare(&root, scratch.path(), &overlays)?;
    let mut cpu_dev = None;
    for overlay in &overlays {
        let rendered = render::render(&copy, overlay)?;
        let coverage = schema::validate(&root, scratch.path(), &rendered)?;
        let coordinator = coordinator::check(&rendered, &scopd)?;
        let workers = workers::check(&rendered, &agent, &coordinator)?;
        check_pod(&coordinator.workload, &scopd_image, &version)?;
        check_pod(&workers, &worker_image, &version)?;
        let exposed: Vec<u64> = coordinator.workload.ports().iter().map(|(_, n)| *n).collect();
        if exposed != scopd_image.exposed {
            bail!("scopd.Dockerfile EXPOSEs {:?}, the coordinator declares {exposed:?}", scopd_image.exposed);
        }
        let gpus = workers.container.pointer("/resources/limits/nvidia.com~1gpu").is_some();
        if gpus != (overlay != "cpu-dev") {
            bail!(
                "overlay {overlay}: workers {} nvidia.com/gpu",
                if gpus { "request" } else { "do not request" }
            );
        }
        let outcome = smoke::run(&rendered, &coordinator, &workers, &bin, scratch.path())?;
        let custom = if coverage.custom.is_empty() {
            String::new()
        } else {
            format!("; not in the core schemas, checked by reference: {}", coverage.custom.join(", "))
        };
        eprintln!(
            "check-deploy: overlay {overlay}: {} objects valid against Kubernetes {}{custom}; flags, variables, \
             ports, tokens and volumes match; {outcome}",
            coverage.validated,
            schema::VERSIONS.join(" and "),
        );
        if overlay == "cpu-dev" {
            cpu_dev = Some(rendered);
        }
    }
    let cpu_dev = cpu_dev.expect("cpu-dev was rendered");
    schema::check_validator_rejects(&root, scratch.path(), &cpu_dev)?;
    let caught = mutations::run(&cpu_dev, &scopd, &agent)?;
    eprintln!("check-deploy: {caught} deliberately broken variants of cpu-dev were each rejected");
    check_prometheus(&root, &scopd)?;
    eprintln!("check-deploy: all deploy checks passed");
    Ok(())
}

/// Settings every pod needs: the image of this version, the image's non-root
/// user, a locked-down container, resources and a termination grace period.
fn check_pod(workload: &Workload, image: &ImageFacts, version: &str) -> anyhow::Result<()> {
    let what = workload.what();
    let reference = render::str_at(workload.container, "/image");
    if image_tag(reference) != Some(version) {
        bail!("{what}: image {reference} is not tagged with this checkout's version {version}");
    }
    let pod_security = &workload.pod["securityContext"];
    if pod_security["runAsNonRoot"] != true || pod_security["runAsUser"].as_u64() != Some(image.uid) {
        bail!("{what}: the pod must set runAsNonRoot and runAsUser {} (the image's USER)", image.uid);
    }
    let security = &workload.container["securityContext"];
    let dropped = security
        .pointer("/capabilities/drop")
        .and_then(Value::as_array)
        .is_some_and(|d| d.iter().any(|c| c == "ALL"));
    if security["allowPrivilegeEscalation"] != false || security["readOnlyRootFilesystem"] != true || !dropped
    {
        bail!(
            "{what}: needs allowPrivilegeEscalation false, readOnlyRootFilesystem true and capabilities drop ALL"
        );
    }
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            if workload.container.pointer(&format!("/resources/{kind}/{resource}")).is_none() {
                bail!("{what}: no {resource} in resources.{kind}");
            }
        }
    }
    if workload.pod["terminationGracePeriodSeconds"].as_u64().is_none() {
        bail!("{what}: set terminationGracePeriodSeconds explicitly");
    }
    Ok(())
}

/// The worker image installs the torch that tch is built for, as `.venv` does.
fn check_torch_pin(root: &Path) -> anyhow::Result<()> {
    let requirements = std::fs::read_to_string(root.join("xtask/requirements.txt"))?;
    let pinned = requirements
        .lines()
        .find_map(|l| l.trim().strip_prefix("torch=="))
        .context("xtask/requirements.txt pins no torch")?;
    let image = dockerfile::arg_default(root, "deploy/docker/worker.Dockerfile", "TORCH_VERSION")?;
    if image.as_deref() != Some(pinned) {
        bail!("worker.Dockerfile installs torch {image:?}, xtask/requirements.txt pins {pinned}");
    }
    Ok(())
}

/// The local scrape config reaches scopd's default metrics address.
fn check_prometheus(root: &Path, scopd: &Help) -> anyhow::Result<()> {
    let file = "deploy/monitoring/prometheus.yml";
    let text = std::fs::read_to_string(root.join(file)).with_context(|| format!("cannot read {file}"))?;
    let config: Value = serde_norway::from_str(&text).with_context(|| file.to_owned())?;
    let default = scopd
        .option("metrics-addr")
        .and_then(|o| o.default.clone())
        .context("scopd --metrics-addr has no default")?;
    let jobs = config["scrape_configs"].as_array().into_iter().flatten();
    let scrapes_scopd = jobs.clone().any(|job| {
        let path_ok = job.get("metrics_path").is_none_or(|p| p == "/metrics");
        let targets =
            job.pointer("/static_configs/0/targets").and_then(Value::as_array).into_iter().flatten();
        path_ok && targets.clone().any(|t| t.as_str() == Some(default.as_str()))
    });
    if !scrapes_scopd {
        bail!("{file}: no scrape job targets scopd's default metrics address {default} at /metrics");
    }
    Ok(())
}

/// Workspace packages with their binaries and features, and the workspace version.
fn cargo_packages() -> anyhow::Result<(Packages, String)> {
    let out = shell::output(shell::cargo().args(["metadata", "--no-deps", "--format-version", "1"]))?;
    let metadata: Value = serde_json::from_str(&out).context("cargo metadata printed no JSON")?;
    let mut packages = Packages::new();
    let mut version = String::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let name = render::str_at(package, "/name").to_owned();
        let bins = package["targets"].as_array().into_iter().flatten();
        let bins = bins.filter(|t| t["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "bin")));
        let features =
            package["features"].as_object().map(|f| f.keys().cloned().collect()).unwrap_or_default();
        if name == "scop-server" {
            version = render::str_at(package, "/version").to_owned();
        }
        packages.insert(name, (bins.map(|t| render::str_at(t, "/name").to_owned()).collect(), features));
    }
    Ok((packages, version))
}

/// For the mutation checks: run both rendered checks on `rendered`.
fn check_both(rendered: &Rendered, scopd: &Help, agent: &AgentHelp) -> anyhow::Result<()> {
    let coordinator = coordinator::check(rendered, scopd)?;
    workers::check(rendered, agent, &coordinator)?;
    Ok(())
}
