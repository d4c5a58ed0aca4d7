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

impl RuntimeInfo {
    pub fn probe() -> Self {
        Self {
            cuda_devices: usize::try_from(tch::Cuda::device_count()).unwrap_or(0),
            cudnn: tch::Cuda::cudnn_is_available(),
            intra_op_threads: tch::get_num_threads(),
            mkl: tch::utils::has_mkl(),
            openmp: tch::utils::has_openmp(),
        }
    }
}
