//! containerd's snapshot semantics over any driver: the [`Snapshotter`]
//! interface, implemented by [`Snapshots`] (a driver plus the metadata
//! records in the store's database) for every driver and by the gRPC client
//! in tests; its [`Filters`]; [`Serialised`] driver steps across processes;
//! and the space reserve that lets a full disk's rollback still write.

mod filter;
mod reserve;
mod serialised;
mod snapshots;

pub use filter::Filters;
pub use serialised::{Serialised, StepGuard, StepLock};
pub use snapshots::{is_committed_in, Incomplete, Record, Snapshots, State};

use strata_driver_api::{Info, Kind, Labels, Mount, Result, SnapshotKey, Usage};

/// containerd's snapshotter semantics.
///
/// - Keys of active and view snapshots and names of committed ones share one
///   namespace: reusing one fails with [`strata_driver_api::Error::AlreadyExists`].
/// - Only committed snapshots can be parents ([`strata_driver_api::Error::FailedPrecondition`]
///   otherwise, [`strata_driver_api::Error::NotFound`] for a missing parent).
/// - A snapshot with children cannot be removed.
/// - Only active snapshots can be committed; the key disappears, the name
///   appears, the storage stays.
pub trait Snapshotter: Send + Sync {
    /// Creates an active (writable) snapshot on top of `parent`.
    fn prepare(
        &self,
        key: &SnapshotKey,
        parent: Option<&SnapshotKey>,
        labels: Labels,
    ) -> Result<Vec<Mount>>;

    /// Creates a read-only view of `parent`.
    fn view(
        &self,
        key: &SnapshotKey,
        parent: Option<&SnapshotKey>,
        labels: Labels,
    ) -> Result<Vec<Mount>>;

    /// Commits active `key` as read-only `name`; `labels` replace the active ones
    /// when not empty.
    fn commit(&self, name: &SnapshotKey, key: &SnapshotKey, labels: Labels) -> Result<()>;

    /// Removes a snapshot without children.
    fn remove(&self, key: &SnapshotKey) -> Result<()>;

    /// The mounts of an active or view snapshot (committed ones too, read-only).
    fn mounts(&self, key: &SnapshotKey) -> Result<Vec<Mount>>;

    /// Describes one snapshot.
    fn stat(&self, key: &SnapshotKey) -> Result<Info>;

    /// Updates labels. With no `fieldpaths` the labels are replaced; with
    /// `labels.NAME` paths only those labels are set (or removed when absent
    /// from `info`).
    fn update(&self, info: &Info, fieldpaths: &[String]) -> Result<Info>;

    /// Space used by the snapshot alone.
    fn usage(&self, key: &SnapshotKey) -> Result<Usage>;

    /// Calls `visit` for every snapshot matching any of `filters` (all when
    /// empty). Filters are containerd's: `kind==active`, `name==k`,
    /// `parent==p`, `labels.KEY==v`, `labels.KEY` (present); a comma inside
    /// one filter means AND. `visit` may call other methods (no lock is held).
    fn walk(&self, filters: &[String], visit: &mut dyn FnMut(&Info) -> Result<()>) -> Result<()>;

    /// Removes storage no snapshot refers to (containerd's Cleanup).
    fn cleanup(&self) -> Result<()>;
}

/// Convenience wrappers over [`Snapshotter`].
pub trait SnapshotterExt: Snapshotter {
    /// All snapshots matching `filters`.
    fn list(&self, filters: &[String]) -> Result<Vec<Info>> {
        let mut out = Vec::new();
        self.walk(filters, &mut |info| {
            out.push(info.clone());
            Ok(())
        })?;
        Ok(out)
    }

    /// Whether `key` exists.
    fn exists(&self, key: &SnapshotKey) -> Result<bool> {
        match self.stat(key) {
            Ok(_) => Ok(true),
            Err(strata_driver_api::Error::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Kind of `key`.
    fn kind_of(&self, key: &SnapshotKey) -> Result<Kind> {
        Ok(self.stat(key)?.kind)
    }
}

impl<T: Snapshotter + ?Sized> SnapshotterExt for T {}
