//! What libtorch this process runs on: devices, threads, optional backends.

use serde::Serialize;

/// A snapshot of the libtorch runtime, printed by `scop-worker info`.
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeInfo {
    pub cuda_devices: usize,
    pub cudnn: bool,
    pub intra_op_threads: i32,
    pub mkl: bool,
    pub openmp: bool,
}

/// Pretends this many CUDA devices are present, for tests of how agents and
/// `scopd standalone` treat a GPU machine on a machine without one. Only the
/// count is faked (capped by `CUDA_VISIBLE_DEVICES`, as a real count would be);
/// a CUDA rank still needs a real GPU.
pub const FAKE_CUDA_DEVICES_ENV: &str = "SCOP_TEST_FAKE_CUDA_DEVICES";

/// The CUDA devices libtorch sees (or [`FAKE_CUDA_DEVICES_ENV`] says).
pub fn cuda_device_count() -> usize {
    let fake = std::env::var(FAKE_CUDA_DEVICES_ENV).ok().and_then(|n| n.trim().parse::<usize>().ok());
    match fake {
        Some(count) => match std::env::var("CUDA_VISIBLE_DEVICES") {
            Ok(visible) => count.min(visible.split(',').filter(|d| !d.trim().is_empty()).count()),
            Err(_) => count,
        },
        None => usize::try_from(tch::Cuda::device_count()).unwrap_or(0),
    }
}

impl RuntimeInfo {
    pub fn probe() -> Self {
        Self {
            cuda_devices: cuda_device_count(),
            cudnn: tch::Cuda::cudnn_is_available(),
            intra_op_threads: tch::get_num_threads(),
            mkl: tch::utils::has_mkl(),
            openmp: tch::utils::has_openmp(),
        }
    }
}
