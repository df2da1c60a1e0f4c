//! `strata release`: unmount the driver's backing and detach its loop
//! devices. The backing otherwise stays set up between commands (setting
//! it up and tearing it down at every command let a later one attach the
//! same file twice); release is for taking the store off the host, e.g.
//! before moving or deleting its root.

use crate::db::session;
use crate::snapshotter::StepLock;
use strata_driver_api::mount::{backing_state, BackingState};

use crate::error::{Result, StoreError};
use crate::Store;

/// Releases the backing when no container is mounted and no other strata
/// process has the store open; the driver refuses, naming the holder, when
/// anything else (a leftover scratch mount, open files, a device-mapper
/// device) still holds it. Runs under the store's step lock, so a process
/// opening the store waits and then sets the backing up again.
pub fn release(store: &Store) -> Result<()> {
    let _step = StepLock::new(store.layout().step_lock()).hold()?;
    let others = other_sessions(store);
    if !others.is_empty() {
        return Err(StoreError::InUse {
            root: store.root().to_path_buf(),
            sessions: others.join(", "),
        });
    }
    if let Some(c) = store
        .meta()?
        .containers()?
        .into_iter()
        .find(|c| c.mounted_at.is_some())
    {
        return Err(StoreError::StillMounted {
            id: c.id.short().to_owned(),
            path: c.mounted_at.unwrap_or_default(),
        });
    }
    store.driver().release()?;
    Ok(())
}

/// Live sessions of other strata processes on the store (`<pid>-<n>`).
fn other_sessions(store: &Store) -> Vec<String> {
    let dir = store.layout().sessions();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut live: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|id| id != store.session().id() && session::is_alive(&dir, id))
        .collect();
    live.sort();
    live
}

/// Reads the kernel state of the driver's loop-backed files (loop devices,
/// mount point, mounted or not), for `strata info`.
pub fn backing(store: &Store) -> Result<Vec<BackingState>> {
    store
        .driver()
        .backing_files()
        .iter()
        .map(|b| backing_state(b).map_err(StoreError::from))
        .collect()
}
