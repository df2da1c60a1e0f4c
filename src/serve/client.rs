//! A blocking gRPC client that is itself a [`Snapshotter`]: it lets the
//! shared conformance suite (and latency measurements) drive a server
//! through its socket exactly as containerd does.

use std::future::Future;
use std::path::{Path, PathBuf};

use crate::snapshotter::Snapshotter;
use containerd_snapshots::api::snapshots::v1::{self as grpc, snapshots_client::SnapshotsClient};
use containerd_snapshots::tonic::metadata::{Ascii, MetadataValue};
use containerd_snapshots::tonic::transport::{Channel, Endpoint, Uri};
use containerd_snapshots::tonic::{Request, Status};
use strata_driver_api::{Error, Info, Labels, Mount, SnapshotKey, Usage};
use tokio::net::UnixStream;

use super::{convert, ServeError};

/// Snapshotter name sent in requests; a proxy plug-in serves one snapshotter
/// and ignores it, as containerd's own proxy does.
const SNAPSHOTTER: &str = "strata";

/// gRPC metadata header carrying the containerd namespace of a request.
const NAMESPACE_HEADER: &str = "containerd-namespace";

/// Blocking client of a snapshots gRPC server on a unix socket. Must not be
/// called from inside an async runtime (it blocks on its own).
pub struct GrpcSnapshotter {
    runtime: tokio::runtime::Runtime,
    client: SnapshotsClient<Channel>,
    socket: PathBuf,
    snapshotter: String,
    namespace: Option<MetadataValue<Ascii>>,
}

impl std::fmt::Debug for GrpcSnapshotter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcSnapshotter")
            .field("socket", &self.socket)
            .field("snapshotter", &self.snapshotter)
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl GrpcSnapshotter {
    /// Connects to the server listening on `socket`.
    pub fn connect(socket: &Path) -> Result<Self, ServeError> {
        Self::connect_as(socket, SNAPSHOTTER, None)
    }

    /// Connects to containerd's own snapshots service on its `socket`:
    /// requests name `snapshotter` (`btrfs`, `overlayfs`, `devmapper`, ...)
    /// and carry `namespace` in the `containerd-namespace` header.
    pub fn connect_containerd(
        socket: &Path,
        snapshotter: &str,
        namespace: &str,
    ) -> Result<Self, ServeError> {
        let value = MetadataValue::try_from(namespace)
            .map_err(|_| ServeError::BadNamespace(namespace.to_owned()))?;
        Self::connect_as(socket, snapshotter, Some(value))
    }

    fn connect_as(
        socket: &Path,
        snapshotter: &str,
        namespace: Option<MetadataValue<Ascii>>,
    ) -> Result<Self, ServeError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .thread_name("strata-grpc-client")
            .build()
            .map_err(ServeError::Runtime)?;
        let path = socket.to_owned();
        let transport = |source| ServeError::Transport {
            path: socket.to_owned(),
            source,
        };
        // The URI is required by the API but unused: the connector dials the socket.
        let endpoint = Endpoint::try_from("http://[::]:50051").map_err(transport)?;
        let channel = runtime
            .block_on(
                endpoint.connect_with_connector(tower::service_fn(move |_: Uri| {
                    UnixStream::connect(path.clone())
                })),
            )
            .map_err(transport)?;
        Ok(Self {
            runtime,
            client: SnapshotsClient::new(channel),
            socket: socket.to_owned(),
            snapshotter: snapshotter.to_owned(),
            namespace,
        })
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `message` as a request, with the namespace header when one is set.
    fn request<M>(&self, message: M) -> Request<M> {
        let mut request = Request::new(message);
        if let Some(ns) = &self.namespace {
            request.metadata_mut().insert(NAMESPACE_HEADER, ns.clone());
        }
        request
    }

    fn run<T, Fut>(&self, f: impl FnOnce(SnapshotsClient<Channel>) -> Fut) -> Result<T, Error>
    where
        Fut: Future<Output = Result<T, Status>>,
    {
        self.runtime
            .block_on(f(self.client.clone()))
            .map_err(|s| convert::from_status(&s))
    }
}

fn mounts_in(mounts: Vec<containerd_snapshots::api::types::Mount>) -> Vec<Mount> {
    mounts.into_iter().map(convert::mount_in).collect()
}

fn key_of(parent: Option<&SnapshotKey>) -> String {
    parent.map(|p| p.0.clone()).unwrap_or_default()
}

fn missing_info() -> Error {
    Error::driver("grpc", "server answered without snapshot info")
}

impl Snapshotter for GrpcSnapshotter {
    fn prepare(
        &self,
        key: &SnapshotKey,
        parent: Option<&SnapshotKey>,
        labels: Labels,
    ) -> Result<Vec<Mount>, Error> {
        let req = self.request(grpc::PrepareSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.0.clone(),
            parent: key_of(parent),
            labels: convert::labels_out(labels),
        });
        let resp = self.run(|mut c| async move { c.prepare(req).await })?;
        Ok(mounts_in(resp.into_inner().mounts))
    }

    fn view(
        &self,
        key: &SnapshotKey,
        parent: Option<&SnapshotKey>,
        labels: Labels,
    ) -> Result<Vec<Mount>, Error> {
        let req = self.request(grpc::ViewSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.0.clone(),
            parent: key_of(parent),
            labels: convert::labels_out(labels),
        });
        let resp = self.run(|mut c| async move { c.view(req).await })?;
        Ok(mounts_in(resp.into_inner().mounts))
    }

    fn commit(&self, name: &SnapshotKey, key: &SnapshotKey, labels: Labels) -> Result<(), Error> {
        let req = self.request(grpc::CommitSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            name: name.0.clone(),
            key: key.0.clone(),
            labels: convert::labels_out(labels),
        });
        self.run(|mut c| async move { c.commit(req).await })?;
        Ok(())
    }

    fn remove(&self, key: &SnapshotKey) -> Result<(), Error> {
        let req = self.request(grpc::RemoveSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.0.clone(),
        });
        self.run(|mut c| async move { c.remove(req).await })?;
        Ok(())
    }

    fn mounts(&self, key: &SnapshotKey) -> Result<Vec<Mount>, Error> {
        let req = self.request(grpc::MountsRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.0.clone(),
        });
        let resp = self.run(|mut c| async move { c.mounts(req).await })?;
        Ok(mounts_in(resp.into_inner().mounts))
    }

    fn stat(&self, key: &SnapshotKey) -> Result<Info, Error> {
        let req = self.request(grpc::StatSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.0.clone(),
        });
        let resp = self.run(|mut c| async move { c.stat(req).await })?;
        convert::info_from_grpc(resp.into_inner().info.ok_or_else(missing_info)?)
    }

    fn update(&self, info: &Info, fieldpaths: &[String]) -> Result<Info, Error> {
        let req = self.request(grpc::UpdateSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            info: Some(convert::info_to_grpc(info)),
            update_mask: (!fieldpaths.is_empty()).then(|| prost_types::FieldMask {
                paths: fieldpaths.to_vec(),
            }),
        });
        let resp = self.run(|mut c| async move { c.update(req).await })?;
        convert::info_from_grpc(resp.into_inner().info.ok_or_else(missing_info)?)
    }

    fn usage(&self, key: &SnapshotKey) -> Result<Usage, Error> {
        let req = self.request(grpc::UsageRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.0.clone(),
        });
        let resp = self
            .run(|mut c| async move { c.usage(req).await })?
            .into_inner();
        Ok(Usage {
            size: u64::try_from(resp.size).unwrap_or(0),
            inodes: u64::try_from(resp.inodes).unwrap_or(0),
        })
    }

    /// Reads the whole stream first, then visits: `visit` may call back
    /// into this client, which cannot block inside its own runtime.
    fn walk(
        &self,
        filters: &[String],
        visit: &mut dyn FnMut(&Info) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let req = self.request(grpc::ListSnapshotsRequest {
            snapshotter: self.snapshotter.clone(),
            filters: filters.to_vec(),
        });
        let infos = self.run(|mut c| async move {
            let mut stream = c.list(req).await?.into_inner();
            let mut infos = Vec::new();
            while let Some(batch) = stream.message().await? {
                infos.extend(batch.info);
            }
            Ok(infos)
        })?;
        for info in infos {
            visit(&convert::info_from_grpc(info)?)?;
        }
        Ok(())
    }

    fn cleanup(&self) -> Result<(), Error> {
        let req = self.request(grpc::CleanupRequest {
            snapshotter: self.snapshotter.clone(),
        });
        self.run(|mut c| async move { c.cleanup(req).await })?;
        Ok(())
    }
}
