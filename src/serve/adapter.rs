//! The containerd-snapshots `Snapshotter` implementation over any Strata
//! [`Snapshotter`]: every call runs on tokio's blocking pool, so a slow
//! driver call never stalls the gRPC reactor and calls run concurrently.

use std::collections::HashMap;
use std::sync::Arc;

use crate::snapshotter::Snapshotter;
use containerd_snapshots::api::types as ctypes;
use containerd_snapshots::tonic::{self, Status};
use strata_driver_api::{Error, SnapshotKey};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::convert;

/// How many listed snapshots may wait for a slow client before the walk pauses.
const LIST_BUFFER: usize = 128;

/// Serves a Strata snapshotter to containerd.
pub struct Adapter {
    inner: Arc<dyn Snapshotter>,
}

impl Adapter {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Snapshotter>) -> Self {
        Self { inner }
    }

    /// Runs `f` on the blocking pool and maps its error to a gRPC status.
    async fn call<T, F>(&self, op: &'static str, f: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Snapshotter) -> Result<T, Error> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let result = tokio::task::spawn_blocking(move || f(inner.as_ref()))
            .await
            .map_err(|e| Status::internal(format!("{op}: worker failed: {e}")))?;
        result.map_err(|e| {
            tracing::debug!(op, error = %e, "snapshot call failed");
            convert::to_status(&e)
        })
    }
}

fn mounts_out(mounts: Vec<strata_driver_api::Mount>) -> Vec<ctypes::Mount> {
    mounts.into_iter().map(convert::mount_out).collect()
}

#[tonic::async_trait]
impl containerd_snapshots::Snapshotter for Adapter {
    type Error = Status;

    async fn stat(&self, key: String) -> Result<containerd_snapshots::Info, Status> {
        let info = self
            .call("stat", move |s| s.stat(&SnapshotKey(key)))
            .await?;
        Ok(convert::info_out(info))
    }

    async fn update(
        &self,
        info: containerd_snapshots::Info,
        fieldpaths: Option<Vec<String>>,
    ) -> Result<containerd_snapshots::Info, Status> {
        let info = self
            .call("update", move |s| {
                let paths = convert::fieldpaths_in(fieldpaths)?;
                let key = SnapshotKey(info.name.clone());
                let kind = match convert::kind_in(&info.kind) {
                    Some(kind) => kind,
                    None => s.stat(&key)?.kind,
                };
                s.update(&convert::info_in(info, kind), &paths)
            })
            .await?;
        Ok(convert::info_out(info))
    }

    async fn usage(&self, key: String) -> Result<containerd_snapshots::Usage, Status> {
        let usage = self
            .call("usage", move |s| s.usage(&SnapshotKey(key)))
            .await?;
        Ok(convert::usage_out(usage))
    }

    async fn mounts(&self, key: String) -> Result<Vec<ctypes::Mount>, Status> {
        let mounts = self
            .call("mounts", move |s| s.mounts(&SnapshotKey(key)))
            .await?;
        Ok(mounts_out(mounts))
    }

    async fn prepare(
        &self,
        key: String,
        parent: String,
        labels: HashMap<String, String>,
    ) -> Result<Vec<ctypes::Mount>, Status> {
        let mounts = self
            .call("prepare", move |s| {
                let parent = convert::parent_key(parent);
                s.prepare(
                    &SnapshotKey(key),
                    parent.as_ref(),
                    convert::labels_in(labels),
                )
            })
            .await?;
        Ok(mounts_out(mounts))
    }

    async fn view(
        &self,
        key: String,
        parent: String,
        labels: HashMap<String, String>,
    ) -> Result<Vec<ctypes::Mount>, Status> {
        let mounts = self
            .call("view", move |s| {
                let parent = convert::parent_key(parent);
                s.view(
                    &SnapshotKey(key),
                    parent.as_ref(),
                    convert::labels_in(labels),
                )
            })
            .await?;
        Ok(mounts_out(mounts))
    }

    async fn commit(
        &self,
        name: String,
        key: String,
        labels: HashMap<String, String>,
    ) -> Result<(), Status> {
        self.call("commit", move |s| {
            s.commit(
                &SnapshotKey(name),
                &SnapshotKey(key),
                convert::labels_in(labels),
            )
        })
        .await
    }

    async fn remove(&self, key: String) -> Result<(), Status> {
        self.call("remove", move |s| s.remove(&SnapshotKey(key)))
            .await
    }

    async fn clear(&self) -> Result<(), Status> {
        self.call("cleanup", |s| s.cleanup()).await
    }

    type InfoStream = ReceiverStream<Result<containerd_snapshots::Info, Status>>;

    /// Streams the walk: the walk runs on the blocking pool and pauses when
    /// the client reads slowly; the store holds no lock meanwhile, so other
    /// calls (a Stat during a List) proceed.
    async fn list(
        &self,
        _snapshotter: String,
        filters: Vec<String>,
    ) -> Result<Self::InfoStream, Status> {
        crate::snapshotter::Filters::parse(&filters).map_err(|e| convert::to_status(&e))?;
        let (tx, rx) = mpsc::channel(LIST_BUFFER);
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let result = inner.walk(&filters, &mut |info| {
                tx.blocking_send(Ok(convert::info_out(info.clone())))
                    .map_err(|_| Error::FailedPrecondition("list: client went away".into()))
            });
            if let Err(e) = result {
                // The client may be gone already; nothing else to tell.
                let _ = tx.blocking_send(Err(convert::to_status(&e)));
            }
        });
        Ok(ReceiverStream::new(rx))
    }
}
