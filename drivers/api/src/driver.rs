//! The low-level trait each driver crate implements. It only manages the
//! storage of snapshots by [`SnapshotId`]; names, parents, labels, kinds,
//! crash bookkeeping and locking live in `strata::snapshotter::Snapshots`, which calls it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::{CreateOptions, Kind, Mount, Result, SnapshotId, StatusLine, Usage};

/// A snapshot's storage as the driver sees it.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The snapshot's id; name every kernel object after it.
    pub id: SnapshotId,
    /// Active, view or committed.
    pub kind: Kind,
    /// Ids of the committed ancestors, nearest first (empty for a base snapshot).
    pub parents: &'a [SnapshotId],
}

impl Target<'_> {
    /// The direct parent, if any.
    pub fn parent(&self) -> Option<SnapshotId> {
        self.parents.first().copied()
    }
}

/// Storage backend of snapshots.
///
/// Contract, relied on by `strata::snapshotter::Snapshots`:
/// - `create` is called once per id, after the store has recorded the intent;
///   on error the store calls `remove` for the same id, so `create` need not
///   clean up after itself but `remove` must cope with half-made storage.
/// - `remove` is idempotent: removing storage that is (partly) gone succeeds.
/// - `commit` is idempotent and keeps the id: the storage becomes read-only.
/// - Parents passed to `create`, `mounts` and `usage` are always committed.
/// - Drivers never mount anything on behalf of callers: `mounts` returns
///   specs. They may mount their own backing store (loop file, pool).
pub trait Driver: Send + Sync + 'static {
    /// Short name: `vfs`, `overlay2`, `btrfs`, `devmapper`, `blockfile`.
    fn name(&self) -> &'static str;

    /// Creates the storage of a new active or view snapshot.
    fn create(&self, target: Target<'_>, options: &CreateOptions) -> Result<()>;

    /// Makes an active snapshot's storage read-only for use as a parent.
    fn commit(&self, target: Target<'_>) -> Result<()>;

    /// Deletes a snapshot's storage and every kernel object made for it.
    fn remove(&self, id: SnapshotId) -> Result<()>;

    /// The mounts that show the snapshot's merged view.
    fn mounts(&self, target: Target<'_>) -> Result<Vec<Mount>>;

    /// Space used by the snapshot alone.
    fn usage(&self, target: Target<'_>) -> Result<Usage>;

    /// Ids of every snapshot storage that exists on disk or in the kernel, so
    /// `strata check` can find orphans after a crash.
    fn stored_ids(&self) -> Result<Vec<SnapshotId>>;

    /// Lines for `strata info`: backing, usage method, options in effect.
    fn status(&self) -> Vec<StatusLine>;

    /// Whether `create` enforces [`CreateOptions::size`] here (a quota, a
    /// device or image size). When not, the store refuses `strata.io/size`
    /// and records containerd's size hint as unenforced.
    fn limits_size(&self) -> bool {
        false
    }

    /// Whether the driver stores OCI whiteouts in overlayfs' own form
    /// (character device 0/0, `trusted.overlay.opaque`) instead of applying
    /// deletions.
    fn overlay_whiteouts(&self) -> bool {
        false
    }

    /// The directory holding only snapshot `id`'s own changes, in
    /// overlayfs' form (deletions as 0/0 character devices, opaque
    /// directories marked), when the driver keeps one: overlay2's upper
    /// directory. `None` (the default) when changes exist only in the
    /// merged view.
    fn changes_dir(&self, _id: SnapshotId) -> Option<PathBuf> {
        None
    }

    /// Releases what `open` set up (backing mounts, loop devices, a pool
    /// the driver made) so the host holds nothing of the store; the next
    /// `open` sets it up again. Only `strata release` calls it: the backing
    /// otherwise stays set up between commands, because unmounting it at
    /// every exit let a later command attach the same file twice.
    /// Snapshots stay intact. Fails, changing nothing, with an error naming
    /// what still holds the backing (a mounted snapshot, open files, a
    /// device-mapper device); never detaches lazily.
    fn release(&self) -> Result<()> {
        Ok(())
    }

    /// The files this driver attaches to loop devices and keeps attached
    /// (empty when it uses none), so `strata info` and `strata check` can
    /// inspect them without knowing the driver.
    fn backing_files(&self) -> Vec<crate::BackingFile> {
        Vec::new()
    }

    /// Space of removed snapshots the driver still reclaims in the
    /// background (btrfs: qgroups of deleted subvolumes awaiting its
    /// cleaner), one item each, e.g. `qgroup 0/261`; for `strata check`.
    /// Empty (the default) when `remove` leaves nothing behind.
    fn pending_reclaim(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// Finishes [`Driver::pending_reclaim`] in the foreground, waiting at
    /// most until `deadline`; returns the items still pending.
    fn finish_reclaim(&self, _deadline: Instant) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}

/// How a driver is opened: its home directory under the store root and the
/// `--opt key=value` options given at `strata init`.
#[derive(Debug, Clone)]
pub struct DriverConfig<'a> {
    /// Directory the driver owns (`<root>/<driver name>`); created by the caller.
    pub home: &'a Path,
    /// Driver options, e.g. `btrfs.size=10G`.
    pub options: &'a std::collections::BTreeMap<String, String>,
}

impl Driver for Box<dyn Driver> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn create(&self, target: Target<'_>, options: &CreateOptions) -> Result<()> {
        (**self).create(target, options)
    }
    fn commit(&self, target: Target<'_>) -> Result<()> {
        (**self).commit(target)
    }
    fn remove(&self, id: SnapshotId) -> Result<()> {
        (**self).remove(id)
    }
    fn mounts(&self, target: Target<'_>) -> Result<Vec<Mount>> {
        (**self).mounts(target)
    }
    fn usage(&self, target: Target<'_>) -> Result<Usage> {
        (**self).usage(target)
    }
    fn stored_ids(&self) -> Result<Vec<SnapshotId>> {
        (**self).stored_ids()
    }
    fn status(&self) -> Vec<StatusLine> {
        (**self).status()
    }
    fn limits_size(&self) -> bool {
        (**self).limits_size()
    }
    fn overlay_whiteouts(&self) -> bool {
        (**self).overlay_whiteouts()
    }
    fn release(&self) -> Result<()> {
        (**self).release()
    }
    fn backing_files(&self) -> Vec<crate::BackingFile> {
        (**self).backing_files()
    }
    fn changes_dir(&self, id: SnapshotId) -> Option<PathBuf> {
        (**self).changes_dir(id)
    }
    fn pending_reclaim(&self) -> Result<Vec<String>> {
        (**self).pending_reclaim()
    }
    fn finish_reclaim(&self, deadline: Instant) -> Result<Vec<String>> {
        (**self).finish_reclaim(deadline)
    }
}
