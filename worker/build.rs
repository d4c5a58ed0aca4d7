//! Embeds the libtorch library directory as an rpath, so that `scop-worker`
//! and its tests run without `LD_LIBRARY_PATH`. torch-sys tells us where that
//! directory is through its `links` metadata.
//!
//! With a CUDA build of libtorch (the default PyPI wheel is one) it also links
//! `libtorch_cuda` explicitly. Nothing in our code or in tch calls into it, so
//! a linker that drops unused libraries (`--as-needed`, the default on Debian
//! and Ubuntu) leaves it out, libtorch never registers its CUDA backend, and
//! the worker sees no GPU at all.
//!
//! It also compiles the C++ in `csrc/` against libtorch's headers (next to its
//! `lib/`), with the flags torch-sys builds tch's own wrapper with.

use std::path::Path;

const KERNELS: &[&str] = &["csrc/batch_norm.cpp"];

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .expect("torch-sys did not say where libtorch lives (DEP_TCH_LIBTORCH_LIB is unset)");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-L{lib},-ltorch_cuda,--as-needed");
    }

    let include = Path::new(&lib).parent().expect("libtorch's lib directory has a parent").join("include");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .std("c++17")
        // The kernels' loops must be vectorised whatever the profile: -O1 does not.
        .opt_level(3)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .define("GLOG_USE_GLOG_EXPORT", None)
        // libtorch's headers warn about themselves; ours are read in review.
        .warnings(false);
    for file in KERNELS {
        println!("cargo:rerun-if-changed={file}");
        build.file(file);
    }
    build.compile("scop_kernels");
}
