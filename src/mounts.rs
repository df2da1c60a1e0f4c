//! The mount helper: performs a snapshot's mount specs on a directory and
//! unmounts them again, never leaving a mount behind on error.

use std::path::{Path, PathBuf};

use strata_driver_api::mount::{mount_all, unmount};
use strata_driver_api::Mount;

use crate::error::{Result, StoreError};

/// Mounts specs on a directory for the guard's lifetime (import, commit,
/// diff); unmounts and removes the directory on drop.
pub struct TempMount {
    path: PathBuf,
    layers: usize,
}

impl TempMount {
    /// Mounts `mounts` on `dir`, creating it.
    pub fn new(mounts: &[Mount], dir: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io("mkdir", &dir, e))?;
        if let Err(e) = mount_all(mounts, &dir) {
            let _ = std::fs::remove_dir(&dir);
            return Err(e.into());
        }
        Ok(Self {
            path: dir,
            layers: mounts.len(),
        })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes everything written under the mount to its device and reports
    /// a failed writeback (a full thin pool returns EIO only here: an
    /// unmount would drop the error and the data with it).
    pub fn sync(&self) -> Result<()> {
        let dir =
            std::fs::File::open(&self.path).map_err(|e| StoreError::io("open", &self.path, e))?;
        nix::unistd::syncfs(&dir)
            .map_err(|e| StoreError::io("syncfs", &self.path, std::io::Error::from(e)))
    }
}

impl Drop for TempMount {
    fn drop(&mut self) {
        for _ in 0..self.layers {
            if let Err(e) = unmount(&self.path) {
                tracing::error!(path = %self.path.display(), error = %e, "unmount failed");
            }
        }
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// Mounts a container's specs on `target` for good (`strata mount`).
pub fn mount_persistent(mounts: &[Mount], target: &Path) -> Result<()> {
    std::fs::create_dir_all(target).map_err(|e| StoreError::io("mkdir", target, e))?;
    mount_all(mounts, target)?;
    Ok(())
}

/// Undoes [`mount_persistent`]: unmounts every layer of specs at `target`.
pub fn unmount_persistent(target: &Path) -> Result<()> {
    while strata_driver_api::mount::is_mountpoint(target)? {
        unmount(target)?;
    }
    Ok(())
}
