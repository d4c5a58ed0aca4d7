//! Where a job's files may come from: the data roots and models roots a
//! cluster allows, and the check that every path of a spec resolves, after
//! symbolic links, inside them. The coordinator runs it at submission and the
//! worker again before a rank opens anything.

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, FieldError, Result};
use crate::spec::{JobSpec, KnockoffSource};

/// The directories a spec's paths must stay inside.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roots {
    /// Datasets (`data.root`), and checkpoints to start from (`model.init_from`).
    pub data: Vec<PathBuf>,
    /// Models: checkpoints (`model.init_from`) and the only place a knockoff
    /// generator (TorchScript, which runs as code) is loaded from.
    pub models: Vec<PathBuf>,
}

impl Roots {
    /// Roots from a `SCOP_DATA_ROOTS`-style list (entries separated by `:`).
    pub fn split_list(list: &str) -> Vec<PathBuf> {
        list.split(':').filter(|s| !s.is_empty()).map(PathBuf::from).collect()
    }

    /// Checks every path of `spec`, relative ones taken from `base`; every
    /// escape is reported with its field path.
    pub fn check_spec(&self, spec: &JobSpec, base: &Path) -> Result<()> {
        let mut errors = Vec::new();
        let data_or_models: Vec<PathBuf> = self.data.iter().chain(&self.models).cloned().collect();
        let mut check = |field: &str, path: &Path, roots: &[PathBuf], which: &str| {
            if let Err(message) = confine(path, roots, base) {
                errors.push(FieldError::new(field, format!("{message} (allowed: {which})")));
            }
        };
        check("data.root", &spec.data.root, &self.data, "the data roots");
        if let Some(init) = &spec.model.init_from {
            check("model.init_from", init, &data_or_models, "the data and models roots");
        }
        if let KnockoffSource::Generator { path } = &spec.knockoff.source {
            check("knockoff.source.path", path, &self.models, "the models roots only");
        }
        if errors.is_empty() { Ok(()) } else { Err(Error::Invalid(errors)) }
    }
}

/// `path` (relative to `base`) resolved through every symbolic link that
/// exists, if it lies inside one of `roots` (also resolved); otherwise why not.
pub fn confine(path: &Path, roots: &[PathBuf], base: &Path) -> std::result::Result<PathBuf, String> {
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(format!("{} must not contain \"..\"", path.display()));
    }
    let joined = if path.is_absolute() { path.to_owned() } else { base.join(path) };
    let resolved = resolve(&joined);
    if roots.is_empty() {
        return Err(format!("{} is outside every allowed root: none is configured", path.display()));
    }
    if roots.iter().any(|root| resolved.starts_with(resolve(&absolute(root, base)))) {
        Ok(resolved)
    } else {
        let shown = if resolved == joined {
            path.display().to_string()
        } else {
            format!("{} (resolved to {})", path.display(), resolved.display())
        };
        Err(format!("{shown} is outside the allowed roots"))
    }
}

fn absolute(path: &Path, base: &Path) -> PathBuf {
    if path.is_absolute() { path.to_owned() } else { base.join(path) }
}

/// The longest existing prefix canonicalised (following links), the rest appended.
fn resolve(path: &Path) -> PathBuf {
    let mut existing = path.to_owned();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return rest.iter().rev().fold(real, |acc: PathBuf, part| acc.join(part));
        }
        match (existing.file_name().map(ToOwned::to_owned), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_owned();
            }
            _ => return path.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: &str) -> JobSpec {
        let model =
            if extra.contains("model:") { "" } else { "model: { arch: resnet20, num_classes: 10 }\n" };
        JobSpec::from_yaml(&format!("{model}{extra}")).unwrap()
    }

    #[test]
    fn escapes_are_refused_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        for sub in ["data/fmnist", "models", "outside"] {
            std::fs::create_dir_all(base.join(sub)).unwrap();
        }
        std::os::unix::fs::symlink(base.join("outside"), base.join("data/link-out")).unwrap();
        std::fs::write(base.join("data/gen.pt"), b"").unwrap();
        let roots = Roots { data: vec![PathBuf::from("data")], models: vec![base.join("models")] };
        let check = |extra: &str, expected: &[(&str, &str)]| {
            let result = roots.check_spec(&spec(extra), &base);
            match result {
                Ok(()) => assert!(expected.is_empty(), "{extra}: accepted"),
                Err(error) => {
                    let got: Vec<(String, String)> =
                        error.field_errors().into_iter().map(|f| (f.path, f.message)).collect();
                    assert_eq!(got.len(), expected.len(), "{extra}: {got:?}");
                    for ((path, message), (want_path, want)) in got.iter().zip(expected) {
                        assert_eq!(path, want_path, "{extra}");
                        assert!(message.contains(want), "{extra}: {message}");
                    }
                }
            }
        };
        check("data: { format: idx, root: data/fmnist }\n", &[]);
        check("data: { format: idx, root: data/not-yet-there }\n", &[]);
        check("data: { format: idx, root: data/../outside }\n", &[("data.root", "must not contain \"..\"")]);
        check("data: { format: idx, root: /etc }\n", &[("data.root", "/etc is outside the allowed roots")]);
        check("data: { format: idx, root: data/link-out }\n", &[("data.root", "resolved to")]);
        check(
            "data: { format: idx, root: data/fmnist }\nknockoff: { source: { kind: generator, path: data/gen.pt } }\n",
            &[("knockoff.source.path", "allowed: the models roots only")],
        );
        check(
            "data: { format: idx, root: data/fmnist }\nknockoff: { source: { kind: generator, path: models/gen.pt } }\n",
            &[],
        );
        check(
            "data: { format: idx, root: outside }\nmodel: { arch: resnet20, num_classes: 10, init_from: /tmp/x }\n",
            &[("data.root", "outside the allowed roots"), ("model.init_from", "outside the allowed roots")],
        );
        let none = Roots::default().check_spec(&spec("data: { format: idx, root: data }\n"), &base);
        assert!(none.unwrap_err().to_string().contains("none is configured"));
    }
}
