//! Compiles `proto/` with protox (pure Rust, no system `protoc`) and generates
//! the tonic client and server code. The encoded descriptor set is written to
//! `OUT_DIR` too, because gRPC server reflection serves it.

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTO_FILES: &[&str] = &[
    "tributary/v1/workflow.proto",
    "tributary/v1/run.proto",
    "tributary/v1/executor.proto",
    "tributary/v1/key.proto",
    "tributary/v1/schedule.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptor_set = protox::compile(PROTO_FILES, ["proto"])?;
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    fs::write(
        out_dir.join("tributary_descriptor.bin"),
        descriptor_set.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // The generated `connect` constructor would clash with the `Connect` RPC
        // of ExecutorService; clients build a `Channel` and call `new` instead.
        .build_transport(false)
        .compile_fds(descriptor_set)?;
    Ok(())
}
