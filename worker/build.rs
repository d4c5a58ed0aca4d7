//! Embeds the libtorch library directory as an rpath, so that `scop-worker`
//! and its tests run without `LD_LIBRARY_PATH`. torch-sys tells us where that
//! directory is through its `links` metadata.
//!
//! With a CUDA build of libtorch (the default PyPI wheel is one) it also links
//! `libtorch_cuda` explicitly. Nothing in our code or in tch calls into it, so
//! a linker that drops unused libraries (`--as-needed`, the default on Debian
//! and Ubuntu) leaves it out, libtorch never registers its CUDA backend, and
//! the worker sees no GPU at all.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        if std::path::Path::new(&lib).join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-L{lib},-ltorch_cuda,--as-needed");
        }
    }
}
