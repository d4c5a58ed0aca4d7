//! One container of a rendered workload as its process sees it: argv, the
//! environment, and which volume (ConfigMap key, Secret key, claim) backs a path.

use anyhow::{Context, bail};
use serde_json::Value;

use super::render::{Rendered, id, str_at};

/// A workload (Deployment, StatefulSet, DaemonSet) and its one container
/// running `image`.
#[derive(Debug, Clone, Copy)]
pub struct Workload<'a> {
    pub object: &'a Value,
    /// `spec.template.spec`.
    pub pod: &'a Value,
    pub container: &'a Value,
}

/// The value of an environment variable as the manifest gives it.
#[derive(Debug, Clone, PartialEq)]
pub enum EnvValue {
    Literal(String),
    /// `valueFrom.fieldRef.fieldPath`.
    Field(String),
    /// Any other `valueFrom` (secretKeyRef, configMapKeyRef, ...).
    Other,
}

/// What a file path inside the container is backed by.
#[derive(Debug, Clone, PartialEq)]
pub enum Backing {
    ConfigMap { name: String, key: String },
    Secret { name: String, key: String },
    Claim { name: String, mount_path: String },
    EmptyDir { mount_path: String },
}

impl<'a> Workload<'a> {
    /// The single workload whose container runs an image named `image`
    /// (any registry prefix and tag).
    pub fn running(rendered: &'a Rendered, image: &str) -> anyhow::Result<Workload<'a>> {
        let mut found = Vec::new();
        for object in &rendered.objects {
            let Some(containers) = object.pointer("/spec/template/spec/containers").and_then(Value::as_array)
            else {
                continue;
            };
            for container in containers.iter().filter(|c| image_name(str_at(c, "/image")) == image) {
                found.push(Workload { object, pod: &object["spec"]["template"]["spec"], container });
            }
        }
        match found.as_slice() {
            [one] => Ok(*one),
            _ => bail!(
                "overlay {}: expected one container running image {image}, found {}",
                rendered.overlay,
                found.len()
            ),
        }
    }

    /// `Kind/name container`, for messages.
    pub fn what(&self) -> String {
        format!("{} container {}", id(self.object), str_at(self.container, "/name"))
    }

    pub fn args(&self) -> Vec<String> {
        strings(self.container.get("args"))
    }

    pub fn command(&self) -> Vec<String> {
        strings(self.container.get("command"))
    }

    pub fn env(&self, name: &str) -> Option<EnvValue> {
        let entry = self.env_entries().find(|e| e["name"] == name)?;
        Some(match (entry.get("value"), entry.pointer("/valueFrom/fieldRef/fieldPath")) {
            (Some(v), _) => EnvValue::Literal(v.as_str().unwrap_or_default().to_owned()),
            (None, Some(field)) => EnvValue::Field(field.as_str().unwrap_or_default().to_owned()),
            (None, None) => EnvValue::Other,
        })
    }

    /// The literal value of `name`, if set as one.
    pub fn env_literal(&self, name: &str) -> Option<String> {
        match self.env(name)? {
            EnvValue::Literal(v) => Some(v),
            _ => None,
        }
    }

    pub fn env_names(&self) -> Vec<String> {
        self.env_entries().filter_map(|e| e["name"].as_str().map(str::to_owned)).collect()
    }

    fn env_entries(&self) -> impl Iterator<Item = &'a Value> + 'a {
        self.container.get("env").and_then(Value::as_array).into_iter().flatten()
    }

    /// The named `containerPort`s: (name, number).
    pub fn ports(&self) -> Vec<(String, u64)> {
        let ports = self.container.get("ports").and_then(Value::as_array).into_iter().flatten();
        ports.map(|p| (str_at(p, "/name").to_owned(), p["containerPort"].as_u64().unwrap_or(0))).collect()
    }

    /// The mount whose path is `path` or the longest prefix of it, and whether it is read-only.
    fn mount_for(&self, path: &str) -> Option<&'a Value> {
        let mounts = self.container.get("volumeMounts").and_then(Value::as_array).into_iter().flatten();
        mounts.filter(|m| under(path, str_at(m, "/mountPath"))).max_by_key(|m| str_at(m, "/mountPath").len())
    }

    /// Whether writing under `path` works: it lies on a writable volume, or the
    /// root filesystem is writable.
    pub fn writable(&self, path: &str) -> bool {
        match self.mount_for(path) {
            Some(mount) => {
                mount["readOnly"] != true
                    && self
                        .backing(path)
                        .is_ok_and(|b| matches!(b, Backing::Claim { .. } | Backing::EmptyDir { .. }))
            }
            None => {
                self.container.pointer("/securityContext/readOnlyRootFilesystem") != Some(&Value::Bool(true))
            }
        }
    }

    /// Which volume backs `path`; an error says why none does.
    pub fn backing(&self, path: &str) -> anyhow::Result<Backing> {
        let what = self.what();
        let mount = self
            .mount_for(path)
            .with_context(|| format!("{what}: no volume is mounted at or above {path}"))?;
        let mount_path = str_at(mount, "/mountPath");
        let volume_name = str_at(mount, "/name");
        let volumes = self.pod.get("volumes").and_then(Value::as_array).into_iter().flatten();
        let volume = volumes.clone().find(|v| v["name"] == volume_name).with_context(|| {
            format!("{what}: mounts volume {volume_name:?}, which the pod does not define")
        })?;
        // The path inside the volume: a subPath mount is one file of it.
        let inner = match mount.get("subPath").and_then(Value::as_str) {
            Some(sub) if path == mount_path => sub.to_owned(),
            Some(_) => bail!("{what}: {path} lies below the subPath mount {mount_path}, which is a file"),
            None => path[mount_path.len()..].trim_start_matches('/').to_owned(),
        };
        if let Some(claim) = volume.pointer("/persistentVolumeClaim/claimName").and_then(Value::as_str) {
            return Ok(Backing::Claim { name: claim.to_owned(), mount_path: mount_path.to_owned() });
        }
        if volume.get("emptyDir").is_some() {
            return Ok(Backing::EmptyDir { mount_path: mount_path.to_owned() });
        }
        let (source, name_field) = match (volume.get("configMap"), volume.get("secret")) {
            (Some(config_map), _) => (config_map, "name"),
            (None, Some(secret)) => (secret, "secretName"),
            _ => bail!(
                "{what}: volume {volume_name:?} at {mount_path} is not a ConfigMap, Secret, claim or emptyDir"
            ),
        };
        let name = str_at(source, &format!("/{name_field}")).to_owned();
        let key = match source.get("items").and_then(Value::as_array) {
            Some(items) => items
                .iter()
                .find(|i| i["path"] == inner.as_str())
                .map(|i| str_at(i, "/key").to_owned())
                .with_context(|| {
                    format!("{what}: volume {volume_name:?} has no item with path {inner:?} (for {path})")
                })?,
            None => inner,
        };
        Ok(if volume.get("secret").is_some() {
            Backing::Secret { name, key }
        } else {
            Backing::ConfigMap { name, key }
        })
    }
}

/// `registry.example/scop/scopd:0.1.0` → `scopd`.
pub fn image_name(image: &str) -> &str {
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split([':', '@']).next().unwrap_or(last)
}

/// The tag of an image reference, if any.
pub fn image_tag(image: &str) -> Option<&str> {
    image.rsplit('/').next()?.split_once(':').map(|(_, tag)| tag)
}

/// Whether `path` is `dir` or lies below it.
pub fn under(path: &str, dir: &str) -> bool {
    !dir.is_empty() && (path == dir || path.starts_with(&format!("{}/", dir.trim_end_matches('/'))))
}

fn strings(list: Option<&Value>) -> Vec<String> {
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Rendered {
        let deployment = json!({"kind": "Deployment", "metadata": {"name": "scopd"}, "spec": {"template": {"spec": {
            "containers": [{"name": "scopd", "image": "registry.example/scopd:0.1.0",
                "securityContext": {"readOnlyRootFilesystem": true},
                "volumeMounts": [
                    {"name": "config", "mountPath": "/etc/scop/scopd.yaml", "subPath": "scopd.yaml", "readOnly": true},
                    {"name": "tokens", "mountPath": "/etc/scop/tokens", "readOnly": true},
                    {"name": "data", "mountPath": "/var/lib/scop"}]}],
            "volumes": [
                {"name": "config", "configMap": {"name": "scopd-config-abc"}},
                {"name": "tokens", "secret": {"secretName": "scop-tokens-x", "items": [{"key": "worker.tokens", "path": "w"}]}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "scopd-data"}}]}}}});
        Rendered { overlay: "t".into(), text: String::new(), objects: vec![deployment] }
    }

    fn check(path: &str, expected: Result<Backing, &str>) {
        let rendered = pod();
        let workload = Workload::running(&rendered, "scopd").unwrap();
        match (workload.backing(path), expected) {
            (Ok(found), Ok(expected)) => assert_eq!(found, expected, "{path}"),
            (Err(found), Err(expected)) => assert!(found.to_string().contains(expected), "{path}: {found}"),
            (found, expected) => panic!("{path}: expected {expected:?}, got {found:?}"),
        }
    }

    #[test]
    fn paths_resolve_to_the_volume_behind_them() {
        let config = Backing::ConfigMap { name: "scopd-config-abc".into(), key: "scopd.yaml".into() };
        check("/etc/scop/scopd.yaml", Ok(config));
        check(
            "/etc/scop/tokens/w",
            Ok(Backing::Secret { name: "scop-tokens-x".into(), key: "worker.tokens".into() }),
        );
        check("/etc/scop/tokens/client.tokens", Err("no item with path \"client.tokens\""));
        check(
            "/var/lib/scop/db",
            Ok(Backing::Claim { name: "scopd-data".into(), mount_path: "/var/lib/scop".into() }),
        );
        check("/var/lib/scopx", Err("no volume is mounted at or above /var/lib/scopx"));
        let rendered = pod();
        let workload = Workload::running(&rendered, "scopd").unwrap();
        assert!(workload.writable("/var/lib/scop/scop.db"));
        assert!(!workload.writable("/etc/scop/tokens/w"));
        assert!(!workload.writable("/home/scop"), "the root filesystem is read-only");
    }

    #[test]
    fn image_names_drop_registry_and_tag() {
        assert_eq!(image_name("registry.example:5000/scop/scop-worker:0.1.0"), "scop-worker");
        assert_eq!(image_name("scopd"), "scopd");
        assert_eq!(image_tag("registry.example:5000/scopd:0.1.0"), Some("0.1.0"));
        assert_eq!(image_tag("scopd"), None);
        assert!(
            under("/shared/artifacts", "/shared")
                && under("/shared", "/shared")
                && !under("/sharedx", "/shared")
        );
    }
}
