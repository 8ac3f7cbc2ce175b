//! Compiles etcd's v3 API and MetaStore's internal messages with tonic/prost.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/etcd/kv.proto",
        "proto/etcd/auth.proto",
        "proto/etcd/rpc.proto",
        "proto/etcd/v3lock.proto",
        "proto/etcd/v3election.proto",
        "proto/metastore/internal.proto",
        "proto/metastore/peer.proto",
    ];
    tonic_prost_build::configure().build_client(true).build_server(true).compile_protos(&protos, &["proto"])?;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}
