//! A short-lived read-only view of a committed snapshot, mounted under the
//! process's scratch directory: made, read, then unmounted and removed when
//! dropped. Every reader of a layer's merged content (diff, save's
//! regeneration of a tar, `check --data`) goes through it.

use std::path::Path;

use crate::snapshotter::Snapshotter;
use strata_driver_api::SnapshotKey;

use super::keys::{check_view_key, scratch_view_key, LABEL_CHECK};
use super::Store;
use crate::error::Result;
use crate::mounts::TempMount;

/// Who a view is for; it decides the view's key and labels, so `check`
/// and recovery can tell what a dead process left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewFor {
    /// diff, commit, save.
    Transfer,
    /// `check --data`.
    Check,
}

/// A mounted read-only view, unmounted and removed on drop.
pub struct ScratchView<'a> {
    store: &'a Store,
    key: SnapshotKey,
    mount: Option<TempMount>,
}

impl<'a> ScratchView<'a> {
    /// Mounts a view of `parent` (`None`: an empty view) for `purpose`.
    /// On error nothing is left: neither the view snapshot nor a mount.
    pub fn new(store: &'a Store, parent: Option<&SnapshotKey>, purpose: ViewFor) -> Result<Self> {
        let mut labels = store.session_labels();
        let (key, dir) = match purpose {
            ViewFor::Transfer => (scratch_view_key(), "mounts"),
            ViewFor::Check => {
                labels.insert(LABEL_CHECK.to_owned(), "1".to_owned());
                (check_view_key(), "check")
            }
        };
        let mounts = store.snapshots().view(&key, parent, labels)?;
        let mut view = ScratchView {
            store,
            key,
            mount: None,
        };
        let dir = store.temp_dir(dir)?.join(view.key.as_str());
        view.mount = Some(TempMount::new(&mounts, dir)?);
        Ok(view)
    }

    /// Where the view is mounted.
    pub fn path(&self) -> &Path {
        self.mount
            .as_ref()
            .map(|m| m.path())
            .unwrap_or(Path::new("/nonexistent"))
    }
}

impl Drop for ScratchView<'_> {
    fn drop(&mut self) {
        self.mount.take();
        if let Err(e) = self.store.snapshots().remove(&self.key) {
            tracing::error!(key = %self.key, error = %e, "removing a temporary view; the next `strata check --repair` will");
        }
    }
}
