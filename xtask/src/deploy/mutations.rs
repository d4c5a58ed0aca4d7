//! The checks must be able to fail: deliberately broken copies of a rendered
//! overlay, each of which the coordinator and worker checks must reject with
//! the expected message.

use anyhow::bail;
use serde_json::Value;

use super::help::Help;
use super::render::Rendered;
use super::workers::AgentHelp;

type Mutation = fn(&mut Vec<Value>);

/// (what is broken, the mutation, a fragment of the expected error)
const CASES: [(&str, Mutation, &str); 9] = [
    (
        "scopd on loopback",
        |o| config(o, "public_addr: 0.0.0.0:7070", "public_addr: 127.0.0.1:7070"),
        "must listen on 0.0.0.0",
    ),
    (
        "a flag scopd does not have",
        |o| args(o, "scopd", &["--config", "/etc/scop/scopd.yaml", "--listen", "x"]),
        "no flag --listen",
    ),
    ("scopd standalone", |o| args(o, "scopd", &["standalone"]), "is not a flag"),
    (
        "agents dialling the public port",
        |o| env(o, "SCOP_COORDINATOR", "scopd:7070"),
        "does not lead to scopd's worker port",
    ),
    (
        "a variable the agent does not read",
        |o| rename_env(o, "SCOP_SLOTS", "SCOP_SLOT"),
        "which the agent does not read",
    ),
    ("the advertise host left on loopback", |o| remove_env(o, "SCOP_ADVERTISE_HOST"), "must be the pod IP"),
    (
        "a token Secret name not rewritten by kustomize",
        |o| worker_secret(o, "scop-tokens"),
        "which is not rendered",
    ),
    (
        "workers without the shared volume",
        |o| unmount(o, "/shared"),
        "no volume is mounted at or above /shared/artifacts",
    ),
    ("the worker port open to every pod", |o| open_worker_port(o), "admits more than worker pods"),
];

/// Runs every case; returns how many were rejected as expected.
pub fn run(rendered: &Rendered, scopd: &Help, agent: &AgentHelp) -> anyhow::Result<usize> {
    for (what, mutate, expected) in CASES {
        let mut objects = rendered.objects.clone();
        mutate(&mut objects);
        let broken =
            Rendered { overlay: format!("{} with {what}", rendered.overlay), text: String::new(), objects };
        match super::check_both(&broken, scopd, agent) {
            Ok(()) => bail!("the deploy checks accepted {what}"),
            Err(e) if format!("{e:#}").contains(expected) => {}
            Err(e) => bail!("{what}: expected an error containing {expected:?}, got: {e:#}"),
        }
    }
    Ok(CASES.len())
}

fn containers<'a>(objects: &'a mut [Value], image: &'a str) -> impl Iterator<Item = &'a mut Value> + 'a {
    objects.iter_mut().flat_map(move |o| {
        let list = o.pointer_mut("/spec/template/spec/containers").and_then(Value::as_array_mut);
        list.into_iter().flatten().filter(move |c| c["image"].as_str().is_some_and(|i| i.starts_with(image)))
    })
}

fn config(objects: &mut [Value], from: &str, to: &str) {
    for map in objects.iter_mut().filter(|o| o["kind"] == "ConfigMap") {
        if let Some(Value::String(text)) = map.pointer_mut("/data/scopd.yaml") {
            *text = text.replace(from, to);
        }
    }
}

fn args(objects: &mut [Value], image: &str, args: &[&str]) {
    for container in containers(objects, image) {
        container["args"] = args.iter().map(|a| Value::from(*a)).collect();
    }
}

fn worker_env(objects: &mut [Value]) -> impl Iterator<Item = &mut Vec<Value>> {
    containers(objects, "scop-worker").filter_map(|c| c.get_mut("env").and_then(Value::as_array_mut))
}

fn env(objects: &mut [Value], name: &str, value: &str) {
    for list in worker_env(objects) {
        for entry in list.iter_mut().filter(|e| e["name"] == name) {
            entry["value"] = value.into();
        }
    }
}

fn rename_env(objects: &mut [Value], from: &str, to: &str) {
    for list in worker_env(objects) {
        for entry in list.iter_mut().filter(|e| e["name"] == from) {
            entry["name"] = to.into();
        }
    }
}

fn remove_env(objects: &mut [Value], name: &str) {
    for list in worker_env(objects) {
        list.retain(|e| e["name"] != name);
    }
}

fn worker_secret(objects: &mut [Value], name: &str) {
    for object in objects.iter_mut().filter(|o| o["kind"] == "StatefulSet" || o["kind"] == "DaemonSet") {
        let volumes = object.pointer_mut("/spec/template/spec/volumes").and_then(Value::as_array_mut);
        for volume in volumes.into_iter().flatten().filter(|v| v.get("secret").is_some()) {
            volume["secret"]["secretName"] = name.into();
        }
    }
}

fn unmount(objects: &mut [Value], path: &str) {
    for container in containers(objects, "scop-worker") {
        if let Some(mounts) = container.get_mut("volumeMounts").and_then(Value::as_array_mut) {
            mounts.retain(|m| m["mountPath"] != path);
        }
    }
}

fn open_worker_port(objects: &mut [Value]) {
    for policy in objects.iter_mut().filter(|o| o["kind"] == "NetworkPolicy") {
        let rules = policy.pointer_mut("/spec/ingress").and_then(Value::as_array_mut);
        for rule in rules.into_iter().flatten() {
            if let Some(rule) = rule.as_object_mut() {
                rule.remove("from");
            }
        }
    }
}
