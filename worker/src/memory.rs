//! How the worker asks glibc's malloc to treat large blocks.
//!
//! libtorch allocates every CPU tensor with `posix_memalign`. By default glibc
//! serves a block above its mmap threshold (at most 32 MiB) with a fresh
//! `mmap` and returns it to the kernel with `munmap` when freed. A forward pass
//! of a ResNet-50 at batch 32 makes and frees dozens of activations of 25–100
//! MiB, so every pass faults in, and the kernel zeroes, gigabytes of new pages:
//! `scop-worker bench-models --batches 32 --reps 1 --threads 1` took 3.1 M page
//! faults before the change below and 0.43 M after it (`perf stat`), and 1.29×
//! the CPU time (median of 4 alternating runs). The loader's batch tensors (38
//! MiB at 224 px, batch 64) paid the same, and a ResNet-20 training step less
//! (its activations are smaller): 1.03× and 1.04× the CPU time.
//!
//! [`keep_freed_memory`] serves every block from malloc's heaps and keeps
//! freed memory there for the next block of that size, as PyTorch's CUDA
//! caching allocator does on a GPU. The process's resident memory then stays
//! at its peak instead of falling between steps, which for a training or
//! inference loop is the working set it needs again at the next step. The
//! peaks measured in the same runs: bench-models 1.34 → 1.70 GiB, the loader
//! alone 468 → 983 MiB (freed batches stay in the decoding threads' arenas),
//! the ResNet-20 training bench 1.69 → 1.75 GiB.

/// A trim threshold no heap reaches: freed memory is never handed back early.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const NEVER_TRIM: libc::c_int = libc::c_int::MAX;

/// Environment variables through which a user sets glibc's malloc themselves;
/// when any is set, [`keep_freed_memory`] leaves malloc as they asked.
const USER_SETTINGS: [&str; 3] = ["GLIBC_TUNABLES", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_"];

/// Stops glibc from mapping large blocks afresh and unmapping them when freed
/// (see the module documentation). Call once, first thing in `main`, before
/// other threads start. Returns whether malloc was changed: not on other
/// C libraries, nor when the user set malloc's options in the environment.
pub fn keep_freed_memory() -> bool {
    if USER_SETTINGS.iter().any(|name| std::env::var_os(name).is_some()) {
        return false;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets malloc's parameters; it is called before
        // any other thread exists, as its documentation asks.
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0) == 1 && libc::mallopt(libc::M_TRIM_THRESHOLD, NEVER_TRIM) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
