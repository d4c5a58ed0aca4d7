//! Embeds the libtorch library directory as an rpath, so that `scop-worker`
//! and its tests run without `LD_LIBRARY_PATH`. torch-sys tells us where that
//! directory is through its `links` metadata.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
