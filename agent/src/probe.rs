//! What the agent learns from the trainer executable before it registers: where
//! it is, and how many CUDA devices libtorch sees there (`scop-worker info`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::AgentError;

/// The trainer executable's name.
pub const WORKER_BIN: &str = "scop-worker";

/// `scop-worker` in the directory of the running executable.
pub fn sibling_worker_bin() -> Result<PathBuf, AgentError> {
    let exe = std::env::current_exe().map_err(|e| AgentError::WorkerBin(e.to_string()))?;
    let bin = exe.with_file_name(WORKER_BIN);
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(AgentError::WorkerBin(format!("{} does not exist; pass --worker-bin", bin.display())))
    }
}

/// The CUDA device count `worker_bin info` reports.
pub fn cuda_devices(worker_bin: &Path) -> Result<u32, AgentError> {
    let failed = |why: String| AgentError::WorkerBin(format!("{} info: {why}", worker_bin.display()));
    let output = Command::new(worker_bin)
        .arg("info")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| failed(e.to_string()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(failed(format!("exited with {}: {}", output.status, stderr.trim())));
    }
    cuda_devices_in(&String::from_utf8_lossy(&output.stdout)).map_err(failed)
}

/// The `cuda_devices` count of `scop-worker info`'s JSON.
fn cuda_devices_in(json: &str) -> Result<u32, String> {
    let info: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    info.get("cuda_devices")
        .and_then(serde_json::Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| "no cuda_devices count in its answer".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_is_read_from_info_and_bad_answers_are_named() {
        assert_eq!(cuda_devices_in(r#"{"cuda_devices": 2, "cudnn": true}"#), Ok(2));
        assert_eq!(cuda_devices_in(r#"{"cudnn": true}"#).unwrap_err(), "no cuda_devices count in its answer");
        assert!(cuda_devices_in("warning").unwrap_err().starts_with("not JSON: "));
        let err = cuda_devices(Path::new("/nonexistent/scop-worker")).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/scop-worker info: "), "{err}");
    }
}
