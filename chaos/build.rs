//! Compiles the harness's own minimal description of etcd's v3 gRPC API (`proto/etcd/v3.proto`)
//! into prost messages and tonic clients, for the etcd baseline. No servers are generated.
//!
//! `protoc` comes from the vendored `protoc-bin-vendored` crate, handed to prost through its
//! configuration, as in the root crate's build script.

use std::error::Error;

/// The directory imports are relative to.
const PROTO_ROOT: &str = "proto";

/// The files compiled, relative to the crate root.
const PROTOS: [&str; 1] = ["proto/etcd/v3.proto"];

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    println!("cargo:rerun-if-changed=build.rs");

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);

    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_with_config(config, &PROTOS, &[PROTO_ROOT])?;
    Ok(())
}
