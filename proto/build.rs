//! Compiles `scop/v1/*.proto` with protox, a pure-Rust protobuf compiler, so the
//! build needs no system `protoc`. The descriptor set is also written out for
//! gRPC server reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["scop/v1/common.proto", "scop/v1/jobs.proto", "scop/v1/worker.proto"];
    for file in &files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["."])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("scop_v1_descriptor.bin");
    std::fs::write(&descriptor_path, prost::Message::encode_to_vec(&descriptors))?;
    tonic_prost_build::configure()
        // The generated `connect` constructor would clash with the WorkerService
        // `Connect` RPC; clients build a `Channel` themselves and call `new`.
        .build_transport(false)
        .file_descriptor_set_path(&descriptor_path)
        .compile_fds(descriptors)?;
    Ok(())
}
