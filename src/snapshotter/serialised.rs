//! Driver steps serialised across processes.
//!
//! Several processes open one store at once. Metadata transactions keep
//! their records consistent, but a driver keeps state of its own (a thin
//! pool's transaction id, a btrfs file of pending qgroups, a scratch image)
//! and repairs half-done steps when it opens. [`Serialised`] runs every
//! step that changes storage or kernel state under one `flock` on a file
//! of the store, so a driver only ever sees whole steps of other processes,
//! and a driver opened under [`StepLock::hold`] finds no step half-done
//! unless its process died. A step is one kernel operation (a snapshot, a
//! commit, a removal): other writers wait milliseconds, not a whole command.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use strata_driver_api::{
    CreateOptions, Driver, Error, IoContext, Mount, Result, SnapshotId, StatusLine, Target, Usage,
};

/// The lock file serialising driver steps of every process on a store.
#[derive(Debug, Clone)]
pub struct StepLock {
    path: PathBuf,
}

/// Held while a step runs; released when dropped.
#[derive(Debug)]
pub struct StepGuard {
    _lock: Flock<File>,
}

impl StepLock {
    /// The lock at `path` (made on first use, root-only).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for the lock.
    pub fn hold(&self) -> Result<StepGuard> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&self.path)
            .ctx("open", &self.path)?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| Error::errno("lock", &self.path, errno))?;
        Ok(StepGuard { _lock: lock })
    }
}

/// A driver whose state-changing steps run under a [`StepLock`].
#[derive(Debug)]
pub struct Serialised<D> {
    inner: D,
    lock: StepLock,
}

impl<D: Driver> Serialised<D> {
    /// Wraps `inner`.
    pub fn new(inner: D, lock: StepLock) -> Self {
        Self { inner, lock }
    }

    /// The driver underneath (its own methods, unserialised).
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// The step lock.
    pub fn step_lock(&self) -> &StepLock {
        &self.lock
    }

    fn step<T>(&self, f: impl FnOnce(&D) -> Result<T>) -> Result<T> {
        let _guard = self.lock.hold()?;
        f(&self.inner)
    }
}

impl<D: Driver> Driver for Serialised<D> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn create(&self, target: Target<'_>, options: &CreateOptions) -> Result<()> {
        self.step(|d| d.create(target, options))
    }
    fn commit(&self, target: Target<'_>) -> Result<()> {
        self.step(|d| d.commit(target))
    }
    fn remove(&self, id: SnapshotId) -> Result<()> {
        self.step(|d| d.remove(id))
    }
    fn mounts(&self, target: Target<'_>) -> Result<Vec<Mount>> {
        self.step(|d| d.mounts(target))
    }
    fn usage(&self, target: Target<'_>) -> Result<Usage> {
        self.inner.usage(target)
    }
    fn stored_ids(&self) -> Result<Vec<SnapshotId>> {
        self.inner.stored_ids()
    }
    fn status(&self) -> Vec<StatusLine> {
        self.inner.status()
    }
    fn limits_size(&self) -> bool {
        self.inner.limits_size()
    }
    fn overlay_whiteouts(&self) -> bool {
        self.inner.overlay_whiteouts()
    }
    /// Not a step of its own: the caller holds the [`StepLock`] across its
    /// check that no other process uses the store and this release (a
    /// process opening the driver meanwhile would find its backing gone),
    /// as `strata release` does.
    fn release(&self) -> Result<()> {
        self.inner.release()
    }
    fn backing_files(&self) -> Vec<strata_driver_api::BackingFile> {
        self.inner.backing_files()
    }
    /// Not a step: a path, no kernel work.
    fn changes_dir(&self, id: SnapshotId) -> Option<PathBuf> {
        self.inner.changes_dir(id)
    }
    /// Not a step: the driver serialises its reclaim itself.
    fn pending_reclaim(&self) -> Result<Vec<String>> {
        self.inner.pending_reclaim()
    }
    /// Not a step: it waits for the driver's own background work.
    fn finish_reclaim(&self, deadline: std::time::Instant) -> Result<Vec<String>> {
        self.inner.finish_reclaim(deadline)
    }
}
