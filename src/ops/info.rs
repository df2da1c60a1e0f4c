//! `strata info`: driver, why it was chosen, backing, space, counts.

use crate::snapshotter::SnapshotterExt;
use serde::Serialize;

use crate::error::Result;
use crate::Store;

/// What `info` prints.
#[derive(Debug, Serialize)]
pub struct StoreInfo {
    /// Store root.
    pub root: String,
    /// Driver name.
    pub driver: String,
    /// Why this driver.
    pub driver_reason: String,
    /// Driver options given at init.
    pub options: std::collections::BTreeMap<String, String>,
    /// The driver's own status lines (backing, usage method, ...).
    pub driver_status: Vec<(String, String)>,
    /// The driver's loop-backed files: loop devices, mount point, mounted
    /// or not (they stay set up between commands until `strata release`).
    pub backing: Vec<strata_driver_api::mount::BackingState>,
    /// Bytes free on the root's filesystem.
    pub space_free: u64,
    /// Bytes total on the root's filesystem.
    pub space_total: u64,
    /// Image count.
    pub images: usize,
    /// Container count.
    pub containers: usize,
    /// Snapshot count.
    pub snapshots: usize,
    /// Half-finished operations of processes that died (opening the store
    /// finishes or undoes them; what could not be is counted here).
    pub incomplete_operations: usize,
    /// Snapshot operations other live strata processes are running now.
    pub operations_in_progress: usize,
    /// The filesystem `space_free` and `space_total` describe: the
    /// driver's backing mount, or the store root.
    pub space_of: String,
    /// Live strata processes using the store, this one included.
    pub sessions: usize,
}

/// Gathers [`StoreInfo`].
pub fn info(store: &Store) -> Result<StoreInfo> {
    let meta = store.meta()?;
    let backing = super::release::backing(store)?;
    // The store's own space: its backing filesystem when one is mounted
    // (a loop file's size, not the host's free space).
    let space_at = backing
        .iter()
        .find_map(|b| b.mount_point.clone().filter(|_| b.mounted))
        .unwrap_or_else(|| store.root().to_owned());
    let (free, total) = nix::sys::statvfs::statvfs(&space_at)
        .map(|s| {
            (
                s.blocks_available() * s.fragment_size(),
                s.blocks() * s.fragment_size(),
            )
        })
        .unwrap_or((0, 0));
    Ok(StoreInfo {
        root: store.root().display().to_string(),
        driver: store.config().driver.clone(),
        driver_reason: store.config().driver_reason.clone(),
        options: store.config().options.clone(),
        driver_status: store.driver().status(),
        backing,
        space_of: space_at.display().to_string(),
        space_free: free,
        space_total: total,
        images: meta.images()?.len(),
        containers: meta.containers()?.len(),
        snapshots: store.snapshots().list(&[])?.len(),
        incomplete_operations: store.snapshots().incomplete()?.len(),
        operations_in_progress: store.snapshots().in_progress()?.len(),
        sessions: std::fs::read_dir(store.layout().sessions())
            .map(|d| d.count())
            .unwrap_or(1),
    })
}
