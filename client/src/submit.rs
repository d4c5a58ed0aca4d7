//! `scopctl submit`: the spec is read and validated here first, its relative
//! paths resolved against the spec file's directory (the workers read those
//! paths, from wherever they run), and only then sent.

use std::collections::HashMap;
use std::path::Path;

use scop_core::spec::JobSpec;
use scop_proto::v1 as pb;

use crate::client::Client;
use crate::error::{Error, Result};

/// What to submit besides the spec.
#[derive(Debug, Clone, Default)]
pub struct SubmitOptions {
    pub labels: Vec<(String, String)>,
    pub priority: i32,
    /// Idempotency key: submitting again with it returns the first job.
    pub request_id: Option<String>,
}

/// The spec as it is sent: parsed, validated, its relative paths made
/// relative to `path`'s directory. Every problem is reported with its field path.
pub fn load_spec(path: &Path) -> Result<String> {
    let spec = JobSpec::from_file(path).map_err(|error| match error {
        scop_core::Error::Io { path, source } => Error::Io { path, source },
        invalid => {
            Error::InvalidSpec { source_name: path.display().to_string(), errors: invalid.field_errors() }
        }
    })?;
    let yaml = serde_norway::to_string(&spec)
        .map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))?;
    Ok(format!("# Submitted by scopctl from {}; its relative paths are resolved.\n{yaml}", path.display()))
}

/// Validates, then submits; returns the queued job.
pub async fn submit(client: &Client, spec_path: &Path, options: &SubmitOptions) -> Result<pb::Job> {
    let spec_yaml = load_spec(spec_path)?;
    let labels: HashMap<String, String> = options.labels.iter().cloned().collect();
    let request = pb::SubmitJobRequest {
        spec_yaml,
        request_id: options.request_id.clone().unwrap_or_default(),
        labels,
        priority: options.priority,
    };
    client.submit(request).await.map_err(|error| match error {
        // The server read the very text we sent; name the file it came from.
        Error::InvalidSpec { errors, .. } => {
            Error::InvalidSpec { source_name: spec_path.display().to_string(), errors }
        }
        other => other,
    })
}

/// A `--label` value: `key=value`.
pub fn parse_label(text: &str) -> std::result::Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected key=value, got {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_resolved_against_the_spec_file() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("examples");
        std::fs::create_dir_all(&nested).unwrap();
        let path = nested.join("job.yaml");
        std::fs::write(
            &path,
            "model: { arch: resnet20, num_classes: 10 }\ndata: { format: idx, root: ../data/fm }\n",
        )
        .unwrap();
        let sent = JobSpec::from_yaml(&load_spec(&path).unwrap()).unwrap();
        assert_eq!(sent.data.root, dir.path().join("data/fm"));
        assert!(sent.output.dir.is_absolute(), "{:?}", sent.output.dir);
    }

    #[test]
    fn every_spec_problem_is_reported_with_its_field_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.yaml");
        std::fs::write(
            &path,
            "model: { arch: resnet21, num_classes: 10 }\ndata: { format: idx, root: d }\nprune: { rate: 1.5 }\n",
        )
        .unwrap();
        let error = load_spec(&path).unwrap_err();
        assert_eq!(error.exit_code(), crate::ExitCode::InvalidSpec);
        let text = error.to_string();
        assert!(text.starts_with(&format!("invalid job spec {}:\n", path.display())), "{text}");
        assert!(text.contains("\n  model.arch: must be one of"), "{text}");
        assert!(text.contains("\n  prune.rate: "), "{text}");
        let error = load_spec(&dir.path().join("missing.yaml")).unwrap_err();
        assert_eq!(error.exit_code(), crate::ExitCode::Other);
        assert!(error.to_string().contains("missing.yaml"), "{error}");
    }

    #[test]
    fn labels_are_key_value_pairs() {
        assert_eq!(parse_label("team=vision"), Ok(("team".into(), "vision".into())));
        assert_eq!(parse_label("empty="), Ok(("empty".into(), String::new())));
        assert!(parse_label("novalue").is_err());
        assert!(parse_label("=x").is_err());
    }
}
