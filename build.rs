//! Compiles the `recall.v1` wire contract in `proto/` into Rust (prost messages, tonic clients and
//! servers) and writes its file descriptor set for gRPC reflection.
//!
//! `protoc` comes from the vendored `protoc-bin-vendored` crate and is handed to prost through its
//! configuration, not the `PROTOC` environment variable, so the build needs no system protoc and
//! no `unsafe` `set_var`.

use std::{env, error::Error, path::PathBuf};

/// The directory holding the proto packages; imports are relative to it.
const PROTO_ROOT: &str = "proto";

/// Every file of the contract, relative to the crate root.
const PROTOS: [&str; 6] = [
    "proto/recall/v1/types.proto",
    "proto/recall/v1/operator.proto",
    "proto/recall/v1/subscribe.proto",
    "proto/recall/v1/check.proto",
    "proto/recall/v1/sightings.proto",
    "proto/recall/v1/raft.proto",
];

/// The descriptor set file in `OUT_DIR`, read by `tonic::include_file_descriptor_set!`.
const DESCRIPTOR_FILE: &str = "recall_descriptor.bin";

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    println!("cargo:rerun-if-changed=build.rs");

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);

    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join(DESCRIPTOR_FILE))
        .compile_with_config(config, &PROTOS, &[PROTO_ROOT])?;
    Ok(())
}
