//! The worker id the coordinator gave this agent, kept in a file in the
//! scratch directory, so that an agent restarted on the same scratch
//! directory registers as the same worker. Its outbox then speaks for ranks
//! placed on that worker, and the coordinator accepts the events it resends;
//! under a new id it would refuse them as reports for ranks placed elsewhere.

use std::path::{Path, PathBuf};

const FILE: &str = "worker-id";

fn file(scratch_dir: &Path) -> PathBuf {
    scratch_dir.join(FILE)
}

/// The id a previous run of the agent registered under; empty (a new worker) if none.
pub fn load(scratch_dir: &Path) -> String {
    let path = file(scratch_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            let valid = !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_graphic());
            if valid {
                tracing::info!(worker_id = %id, "registering under the worker id of a previous run");
                return id.to_owned();
            }
            tracing::warn!(path = %path.display(), "ignoring a worker id file that holds no id");
            String::new()
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot read the worker id of a previous run");
            String::new()
        }
    }
}

/// Records `id` (atomically, so a crash leaves the old id or the new one).
pub fn save(scratch_dir: &Path, id: &str) {
    let result = std::fs::create_dir_all(scratch_dir).map_err(|e| e.to_string()).and_then(|()| {
        scop_core::durable::write_atomic(&file(scratch_dir), format!("{id}\n").as_bytes())
            .map_err(|e| e.to_string())
    });
    if let Err(error) = result {
        tracing::warn!(%error, "worker id not saved; a restarted agent registers as a new worker");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_survives_a_restart_and_junk_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()), "", "no file: a new worker");
        save(dir.path(), "01a2-worker");
        assert_eq!(load(dir.path()), "01a2-worker");
        save(dir.path(), "second");
        assert_eq!(load(dir.path()), "second");
        std::fs::write(file(dir.path()), "\n \n").unwrap();
        assert_eq!(load(dir.path()), "");
        std::fs::write(file(dir.path()), "two words").unwrap();
        assert_eq!(load(dir.path()), "");
    }
}
