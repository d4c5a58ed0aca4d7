//! Files that survive a crash whole or not at all: written beside their final
//! name, flushed to disk, renamed into place, and the directory flushed so the
//! rename itself is durable. A reader sees the old file or the new one, never a
//! torn one. Plain `std::fs`, so the coordinator uses it without a runtime.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically and durably (see the module docs). The
/// error names the file that failed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DurableError> {
    let tmp = temporary_beside(path);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| DurableError::new(&tmp, e))?;
        file.write_all(bytes).map_err(|e| DurableError::new(&tmp, e))?;
        file.sync_all().map_err(|e| DurableError::new(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| DurableError::new(path, e))?;
        sync_parent(path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Flushes the directory holding `path`, making a rename into it durable.
pub fn sync_parent(path: &Path) -> Result<(), DurableError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    sync_dir(dir)
}

/// Flushes a directory's entries to disk.
pub fn sync_dir(dir: &Path) -> Result<(), DurableError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| DurableError::new(dir, e))
}

/// Flushes every regular file directly inside `dir`, then `dir` itself.
pub fn sync_tree(dir: &Path) -> Result<(), DurableError> {
    for entry in std::fs::read_dir(dir).map_err(|e| DurableError::new(dir, e))? {
        let entry = entry.map_err(|e| DurableError::new(dir, e))?;
        let path = entry.path();
        if path.is_file() {
            File::open(&path).and_then(|f| f.sync_all()).map_err(|e| DurableError::new(&path, e))?;
        }
    }
    sync_dir(dir)
}

/// `<dir>/.<name>.tmp`: hidden, beside the target so the rename stays on one file system.
fn temporary_beside(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// A file operation that failed, with the file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct DurableError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl DurableError {
    fn new(path: &Path, source: std::io::Error) -> Self {
        DurableError { path: path.to_owned(), source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_whole_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        write_atomic(&path, b"{\"old\": true, \"long\": \"xxxxxxxx\"}").unwrap();
        write_atomic(&path, b"{}").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["plan.json"]);
    }

    #[test]
    fn a_failed_write_names_the_file_and_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir/plan.json");
        let error = write_atomic(&path, b"{}").unwrap_err();
        assert!(error.to_string().contains("missing-dir/.plan.json.tmp"), "{error}");
        // The target is a directory: the rename fails and the temporary is removed.
        let blocked = dir.path().join("arch.json");
        std::fs::create_dir(&blocked).unwrap();
        let error = write_atomic(&blocked, b"{}").unwrap_err();
        assert!(error.to_string().contains("arch.json"), "{error}");
        assert!(!dir.path().join(".arch.json.tmp").exists());
        assert!(blocked.is_dir());
    }
}
