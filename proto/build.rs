//! Compiles `cluster.proto` into prost messages and tonic services. protoc
//! comes from the `protoc-bin-vendored` crate unless `PROTOC` is set, so a
//! fresh machine needs no protobuf compiler installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=cluster.proto");
    let protoc = match std::env::var_os("PROTOC") {
        Some(p) => std::path::PathBuf::from(p),
        None => protoc_bin_vendored::protoc_bin_path()?,
    };
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    // Raw stanza bytes stay `Bytes`: no copy between the socket and the wire.
    config.bytes(["."]);
    tonic_prost_build::configure().compile_with_config(config, &["cluster.proto"], &["."])?;
    Ok(())
}
