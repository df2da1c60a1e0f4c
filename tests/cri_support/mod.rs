//! A small CRI client (the kubelet's side of `runtime.v1`): the messages
//! the CRI test sends and reads, with field numbers from the CRI protos
//! (`k8s.io/cri-api`, `runtime/v1/api.proto`), over tonic on a unix socket.
//! Fields the test does not use are left out; protobuf skips them.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;

use containerd_snapshots::tonic::{
    self,
    codec::ProstCodec,
    codegen::http::uri::PathAndQuery,
    transport::{Channel, Endpoint, Uri},
    Status,
};
use tokio::net::UnixStream;

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxMetadata {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub uid: String,
    #[prost(string, tag = "3")]
    pub namespace: String,
    #[prost(uint32, tag = "4")]
    pub attempt: u32,
}

/// `NamespaceMode.NODE`: the host's namespace (no CNI needed).
pub const NAMESPACE_NODE: i32 = 2;

#[derive(Clone, PartialEq, prost::Message)]
pub struct NamespaceOption {
    #[prost(int32, tag = "1")]
    pub network: i32,
    #[prost(int32, tag = "2")]
    pub pid: i32,
    #[prost(int32, tag = "3")]
    pub ipc: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxSandboxSecurityContext {
    #[prost(message, optional, tag = "1")]
    pub namespace_options: Option<NamespaceOption>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxPodSandboxConfig {
    #[prost(string, tag = "1")]
    pub cgroup_parent: String,
    #[prost(message, optional, tag = "2")]
    pub security_context: Option<LinuxSandboxSecurityContext>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxConfig {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<PodSandboxMetadata>,
    #[prost(string, tag = "2")]
    pub hostname: String,
    #[prost(string, tag = "3")]
    pub log_directory: String,
    #[prost(map = "string, string", tag = "6")]
    pub labels: HashMap<String, String>,
    #[prost(message, optional, tag = "8")]
    pub linux: Option<LinuxPodSandboxConfig>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RunPodSandboxRequest {
    #[prost(message, optional, tag = "1")]
    pub config: Option<PodSandboxConfig>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RunPodSandboxResponse {
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerMetadata {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(uint32, tag = "2")]
    pub attempt: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ImageSpec {
    #[prost(string, tag = "1")]
    pub image: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerConfig {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<ContainerMetadata>,
    #[prost(message, optional, tag = "2")]
    pub image: Option<ImageSpec>,
    #[prost(string, repeated, tag = "3")]
    pub command: Vec<String>,
    #[prost(string, repeated, tag = "4")]
    pub args: Vec<String>,
    #[prost(string, tag = "11")]
    pub log_path: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateContainerRequest {
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
    #[prost(message, optional, tag = "2")]
    pub config: Option<ContainerConfig>,
    #[prost(message, optional, tag = "3")]
    pub sandbox_config: Option<PodSandboxConfig>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateContainerResponse {
    #[prost(string, tag = "1")]
    pub container_id: String,
}

/// `StartContainerRequest`, `RemoveContainerRequest`, `ContainerStatsRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerIdRequest {
    #[prost(string, tag = "1")]
    pub container_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StopContainerRequest {
    #[prost(string, tag = "1")]
    pub container_id: String,
    #[prost(int64, tag = "2")]
    pub timeout: i64,
}

/// `StopPodSandboxRequest`, `RemovePodSandboxRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SandboxIdRequest {
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
}

/// Any response the test does not read.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Empty {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct FilesystemIdentifier {
    #[prost(string, tag = "1")]
    pub mountpoint: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct UInt64Value {
    #[prost(uint64, tag = "1")]
    pub value: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct FilesystemUsage {
    #[prost(int64, tag = "1")]
    pub timestamp: i64,
    #[prost(message, optional, tag = "2")]
    pub fs_id: Option<FilesystemIdentifier>,
    #[prost(message, optional, tag = "3")]
    pub used_bytes: Option<UInt64Value>,
    #[prost(message, optional, tag = "4")]
    pub inodes_used: Option<UInt64Value>,
}

impl FilesystemUsage {
    /// (mount point, bytes, inodes), absent values as empty and 0.
    pub fn figures(&self) -> (String, u64, u64) {
        (
            self.fs_id
                .as_ref()
                .map(|f| f.mountpoint.clone())
                .unwrap_or_default(),
            self.used_bytes.as_ref().map_or(0, |v| v.value),
            self.inodes_used.as_ref().map_or(0, |v| v.value),
        )
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ImageFsInfoResponse {
    #[prost(message, repeated, tag = "1")]
    pub image_filesystems: Vec<FilesystemUsage>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerStats {
    #[prost(message, optional, tag = "4")]
    pub writable_layer: Option<FilesystemUsage>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerStatsResponse {
    #[prost(message, optional, tag = "1")]
    pub stats: Option<ContainerStats>,
}

/// A CRI connection.
pub struct Cri {
    runtime: tokio::runtime::Runtime,
    channel: Channel,
}

impl Cri {
    /// Connects to the CRI socket (containerd's own).
    pub fn connect(socket: &Path) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let path = socket.to_owned();
        let endpoint = Endpoint::try_from("http://[::]:50051").expect("endpoint");
        let channel = runtime
            .block_on(
                endpoint.connect_with_connector(tower::service_fn(move |_: Uri| {
                    UnixStream::connect(path.clone())
                })),
            )
            .expect("connect to the CRI socket");
        Self { runtime, channel }
    }

    /// Calls `/runtime.v1.SERVICE/METHOD`.
    pub fn call<Q, R>(&self, method: &'static str, request: Q) -> Result<R, Box<Status>>
    where
        Q: prost::Message + Send + Sync + 'static,
        R: prost::Message + Default + Send + Sync + 'static,
    {
        self.runtime
            .block_on(async {
                let mut grpc = tonic::client::Grpc::new(self.channel.clone());
                grpc.ready()
                    .await
                    .map_err(|e| Status::unavailable(e.to_string()))?;
                let codec = ProstCodec::<Q, R>::default();
                let path = PathAndQuery::from_static(method);
                grpc.unary(tonic::Request::new(request), path, codec)
                    .await
                    .map(tonic::Response::into_inner)
            })
            .map_err(Box::new)
    }
}
