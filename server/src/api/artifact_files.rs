//! A job's files in the artifact store as the public API serves them: what
//! `ListArtifacts` lists, the path checks behind `DownloadArtifact`, and the
//! chunked read that streams a file.

use std::path::{Component, Path, PathBuf};

use scop_core::job_dir::PLAN_FILE;
use scop_proto::v1 as pb;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tonic::Status;

use crate::domain::{Artifact, Stage};
use crate::error::{Error, Result};
use crate::shutdown::Shutdown;

/// Largest chunk of a download; well under the public port's message limit.
pub const CHUNK_BYTES: usize = 1 << 20;

/// What `ListArtifacts` shows: the files the stages reported (the export),
/// with paths relative to the job's directory, plus `plan.json` once written.
pub fn listing(recorded: Vec<(Stage, Artifact)>, job_id: &str, job_dir: &Path) -> Vec<(Stage, Artifact)> {
    let mut listed: Vec<(Stage, Artifact)> = recorded
        .into_iter()
        .map(|(stage, mut artifact)| {
            artifact.path = relative_to_job(&artifact.path, job_id, job_dir);
            (stage, artifact)
        })
        .collect();
    let plan = std::fs::metadata(job_dir.join(PLAN_FILE)).ok().filter(std::fs::Metadata::is_file);
    if let Some(meta) = plan.filter(|_| !listed.iter().any(|(_, a)| a.path == PLAN_FILE)) {
        let artifact = Artifact { kind: "plan".into(), path: PLAN_FILE.into(), size_bytes: meta.len() };
        listed.push((Stage::Decide, artifact));
    }
    listed.sort_by(|a, b| a.1.path.cmp(&b.1.path));
    listed
}

/// A reported path made relative to the job's directory. Workers used to
/// report the path they wrote to (`<artifacts>/jobs/<id>/export/model.pt`,
/// possibly mounted elsewhere); relative paths are kept as they are.
pub fn relative_to_job(path: &str, job_id: &str, job_dir: &Path) -> String {
    let as_path = Path::new(path);
    if let Ok(inside) = as_path.strip_prefix(job_dir) {
        return slash_separated(inside);
    }
    let parts: Vec<Component<'_>> = as_path.components().collect();
    let marker = parts.windows(2).rposition(|w| {
        w[0] == Component::Normal("jobs".as_ref()) && w[1] == Component::Normal(job_id.as_ref())
    });
    match marker {
        Some(at) => slash_separated(&parts[at + 2..].iter().collect::<PathBuf>()),
        None => path.to_owned(),
    }
}

fn slash_separated(path: &Path) -> String {
    let parts: Vec<String> =
        path.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    parts.join("/")
}

/// The file `path` names inside `job_dir`, checked: relative, without `..`,
/// not leading out through a symbolic link, and a regular file.
pub fn resolve(job_id: &str, job_dir: &Path, path: &str) -> Result<PathBuf> {
    let invalid = |message: String| Error::InvalidArgument { field: "path".into(), message };
    if path.is_empty() {
        return Err(invalid("must not be empty".into()));
    }
    for component in Path::new(path).components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(invalid(format!("must not contain \"..\", got {path:?}"))),
            Component::RootDir | Component::Prefix(_) => {
                return Err(invalid(format!("must be relative to the job's directory, got {path:?}")));
            }
        }
    }
    let not_found = || Error::ArtifactNotFound { job_id: job_id.to_owned(), path: path.to_owned() };
    let root = job_dir.canonicalize().map_err(|_| not_found())?;
    let file = root.join(path).canonicalize().map_err(|_| not_found())?;
    if !file.starts_with(&root) {
        return Err(invalid(format!("{path:?} leads out of the job's directory")));
    }
    if !std::fs::metadata(&file).map_err(|_| not_found())?.is_file() {
        return Err(not_found());
    }
    Ok(file)
}

/// Streams `file` in chunks of at most [`CHUNK_BYTES`] until its end, the
/// client leaving, or shutdown. An empty file is one empty chunk.
pub async fn stream_file(
    file: PathBuf,
    sender: mpsc::Sender<Result<pb::ArtifactChunk, Status>>,
    mut shutdown: Shutdown,
) {
    let io = |source| Status::from(Error::Io { path: file.display().to_string(), source });
    let opened = match tokio::fs::File::open(&file).await {
        Ok(opened) => opened,
        Err(error) => {
            let _ = sender.send(Err(io(error))).await;
            return;
        }
    };
    let total_bytes = match opened.metadata().await {
        Ok(meta) => meta.len(),
        Err(error) => {
            let _ = sender.send(Err(io(error))).await;
            return;
        }
    };
    // Never read past the size announced in every chunk, even if the file grows.
    let mut reader = opened.take(total_bytes);
    let mut offset = 0u64;
    loop {
        let mut data = Vec::with_capacity(CHUNK_BYTES.min(total_bytes as usize));
        let chunk = match (&mut reader).take(CHUNK_BYTES as u64).read_to_end(&mut data).await {
            // The file shrank since it was opened: what there was has been sent.
            Ok(0) if offset > 0 => return,
            Ok(read) => {
                let chunk = pb::ArtifactChunk { data, offset, total_bytes };
                offset += read as u64;
                Ok(chunk)
            }
            Err(error) => Err(io(error)),
        };
        let last = chunk.is_err() || offset >= total_bytes;
        tokio::select! {
            sent = sender.send(chunk) => if sent.is_err() || last { return },
            () = shutdown.wait() => {
                let _ = sender.try_send(Err(Status::unavailable("the coordinator is shutting down")));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_paths_become_relative_to_the_job_directory() {
        let dir = Path::new("/data/artifacts/jobs/j1");
        let check =
            |path: &str, expected: &str| assert_eq!(relative_to_job(path, "j1", dir), expected, "{path}");
        check("/data/artifacts/jobs/j1/export/model.pt", "export/model.pt");
        check("/mnt/elsewhere/jobs/j1/export/model.pt", "export/model.pt");
        check("export/model.pt", "export/model.pt");
        check("/somewhere/else/model.pt", "/somewhere/else/model.pt");
    }

    #[test]
    fn paths_that_escape_the_job_directory_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let job = root.path().join("jobs/j1");
        std::fs::create_dir_all(job.join("export")).unwrap();
        std::fs::write(job.join("export/model.pt"), b"ts").unwrap();
        std::fs::write(root.path().join("secret"), b"no").unwrap();
        std::os::unix::fs::symlink(root.path().join("secret"), job.join("link")).unwrap();

        assert_eq!(
            resolve("j1", &job, "export/model.pt").unwrap(),
            job.canonicalize().unwrap().join("export/model.pt")
        );
        let check = |path: &str, expected: &str| {
            let error = resolve("j1", &job, path).unwrap_err().to_string();
            assert_eq!(error, expected, "{path}");
        };
        check("", "path: must not be empty");
        check("../../secret", "path: must not contain \"..\", got \"../../secret\"");
        check("/etc/passwd", "path: must be relative to the job's directory, got \"/etc/passwd\"");
        check("link", "path: \"link\" leads out of the job's directory");
        check("export/missing.pt", "job \"j1\" has no file \"export/missing.pt\"");
        check("export", "job \"j1\" has no file \"export\"");
    }

    #[test]
    fn the_listing_adds_the_plan_and_orders_by_path() {
        let root = tempfile::tempdir().unwrap();
        let job = root.path().join("jobs/j1");
        std::fs::create_dir_all(&job).unwrap();
        std::fs::write(job.join("plan.json"), b"{}").unwrap();
        let model = Artifact {
            kind: "torchscript".into(),
            path: job.join("export/model.pt").display().to_string(),
            size_bytes: 7,
        };
        let listed = listing(vec![(Stage::Export, model)], "j1", &job);
        let paths: Vec<(Stage, &str, u64)> =
            listed.iter().map(|(s, a)| (*s, a.path.as_str(), a.size_bytes)).collect();
        assert_eq!(paths, [(Stage::Export, "export/model.pt", 7), (Stage::Decide, "plan.json", 2)]);
    }
}
