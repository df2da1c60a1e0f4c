//! `strata release`: unmount the driver's backing and detach its loop
//! devices. The backing otherwise stays set up between commands (setting
//! it up and tearing it down at every command let a later one attach the
//! same file twice); release is for taking the store off the host, e.g.
//! before moving or deleting its root.

use strata_driver_api::mount::{backing_state, BackingState};

use crate::error::{Result, StoreError};
use crate::Store;

/// Releases the backing when no container is mounted; the driver refuses,
/// naming the holder, when anything else (a leftover scratch mount, open
/// files, a device-mapper device) still holds it.
pub fn release(store: &Store) -> Result<()> {
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
