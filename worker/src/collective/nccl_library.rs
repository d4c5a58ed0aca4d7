//! Finding `libnccl` at run time for cudarc's dynamic loader.
//!
//! cudarc opens NCCL by a fixed list of names (`libnccl.so`, `libnccl.so.<cuda
//! major>`, ...) and panics if none loads. The `nvidia-nccl-cu13` wheel, which is how
//! PyTorch's CUDA builds ship NCCL, contains only `libnccl.so.2`, a name not on that
//! list. So before the first NCCL call we probe the list ourselves (turning the
//! panic into an error with instructions), and offer [`nccl_link_dir`], which makes
//! a directory holding a `libnccl.so` link to the real library; a launcher puts that
//! directory on the rank processes' `LD_LIBRARY_PATH`.

use std::path::{Path, PathBuf};

use super::error::{Error, Result};

/// The name the link in [`nccl_link_dir`]'s directory gets (the first cudarc tries).
pub const NCCL_LINK_NAME: &str = "libnccl.so";

/// Succeeds if cudarc will be able to open libnccl in this process.
pub fn ensure_nccl_loadable() -> Result<()> {
    let candidates = cudarc::get_lib_name_candidates("nccl");
    for name in &candidates {
        // SAFETY: loading NCCL runs its library initialisers, which only set up
        // NCCL's own state; the handle is dropped (the library stays loaded by the
        // dynamic linker's reference count only while cudarc holds it).
        #[allow(unsafe_code)]
        let loaded = unsafe { libloading::Library::new(name) };
        if loaded.is_ok() {
            return Ok(());
        }
    }
    let hint = match find_libnccl() {
        Some(found) => format!(
            "found {}; make a directory with `{NCCL_LINK_NAME}` linking to it (scop_worker::collective::nccl_link_dir does) and put it on LD_LIBRARY_PATH",
            found.display()
        ),
        None => "no libnccl.so.2 found either: install the nvidia-nccl-cu13 wheel (it comes with torch) or the system NCCL".into(),
    };
    Err(Error::Nccl(format!("cannot load libnccl under any of the names {candidates:?}: {hint}")))
}

/// Succeeds if cudarc will be able to open the CUDA driver (`libcuda`) in this
/// process; cudarc would panic instead. A machine with NCCL but no NVIDIA
/// driver gets an error naming the library.
pub fn ensure_cuda_driver_loadable() -> Result<()> {
    let candidates = cudarc::get_lib_name_candidates("cuda");
    // SAFETY: as in `ensure_nccl_loadable`: only the driver's own initialisers run.
    #[allow(unsafe_code)]
    let loadable = candidates.iter().any(|name| unsafe { libloading::Library::new(name) }.is_ok());
    if loadable {
        return Ok(());
    }
    Err(Error::Nccl(format!(
        "cannot load the CUDA driver library (libcuda) under any of the names {candidates:?}: \
         NCCL needs an NVIDIA GPU with its driver installed"
    )))
}

/// Looks for `libnccl.so.2` on `LD_LIBRARY_PATH`, in the `nvidia/nccl/lib` folder of
/// the Python environment whose libtorch this process has loaded, and in the usual
/// system directories.
pub fn find_libnccl() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("LD_LIBRARY_PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    // libtorch's lib dir is `site-packages/torch/lib`; the wheel sits beside torch.
    if let Some(torch_lib) = loaded_libtorch_dir() {
        dirs.push(torch_lib.join("../../nvidia/nccl/lib"));
    }
    dirs.extend(["/usr/lib/x86_64-linux-gnu", "/usr/local/lib", "/usr/lib64", "/usr/lib"].map(PathBuf::from));
    dirs.into_iter().map(|d| d.join("libnccl.so.2")).find(|p| p.is_file())
}

/// Creates `dir/libnccl.so` linking to `library` (replacing an older link) and
/// returns `dir`, ready to be prepended to a rank process's `LD_LIBRARY_PATH`.
pub fn nccl_link_dir(dir: &Path, library: &Path) -> Result<PathBuf> {
    let fail = |what: &str, e: std::io::Error| Error::Nccl(format!("cannot {what} {}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(|e| fail("create", e))?;
    let link = dir.join(NCCL_LINK_NAME);
    if link.symlink_metadata().is_ok() {
        std::fs::remove_file(&link).map_err(|e| fail("replace the link in", e))?;
    }
    let target =
        library.canonicalize().map_err(|e| fail(&format!("resolve {} for", library.display()), e))?;
    std::os::unix::fs::symlink(&target, &link).map_err(|e| fail("link libnccl in", e))?;
    Ok(dir.to_path_buf())
}

/// The directory this process loaded `libtorch_cpu.so` from, read from `/proc/self/maps`.
fn loaded_libtorch_dir() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| path.ends_with("/libtorch_cpu.so"))
        .and_then(|path| Path::new(path).parent().map(Path::to_path_buf))
}
