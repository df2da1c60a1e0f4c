//! The mount helper: performs a snapshot's mount specs on a directory and
//! unmounts them again, never leaving a mount behind on error.

use std::path::{Path, PathBuf};

use strata_driver_api::mount::{hardened, mount_all, unmount, with_options};
use strata_driver_api::Mount;

use crate::error::{Result, StoreError};

/// Mounts specs on a directory for the guard's lifetime (import, commit,
/// diff, check); unmounts and removes the directory on drop. Always
/// `nosuid,nodev`: nothing of an image is run or opened as a device there.
pub struct TempMount {
    path: PathBuf,
    layers: usize,
}

impl TempMount {
    /// Mounts `mounts` on `dir` (created 0700), adding `nosuid,nodev`.
    pub fn new(mounts: &[Mount], dir: PathBuf) -> Result<Self> {
        strata_driver_api::private::private_mount_point(&dir)?;
        if let Err(e) = mount_all(&hardened(mounts), &dir) {
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

/// What a container mount made by `strata mount` honours of its image.
/// By default neither setuid/setgid bits (nor file capabilities) nor device
/// nodes: the mount is `nosuid,nodev`, like every mount Strata makes for
/// itself. A runtime that needs them in the container's rootfs opts in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContainerMountOptions {
    /// Honour setuid/setgid bits and file capabilities (no `nosuid`).
    pub suid: bool,
    /// Allow opening device nodes (no `nodev`).
    pub dev: bool,
}

impl ContainerMountOptions {
    /// The mount options these choices add to every spec.
    pub fn extra_options(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if !self.suid {
            out.push("nosuid");
        }
        if !self.dev {
            out.push("nodev");
        }
        out
    }
}

/// Mounts a container's specs on `target` for good (`strata mount`), with
/// `nosuid`/`nodev` unless `options` opt out.
pub fn mount_persistent(
    mounts: &[Mount],
    target: &Path,
    options: ContainerMountOptions,
) -> Result<()> {
    strata_driver_api::private::private_mount_point(target)?;
    mount_all(&with_options(mounts, &options.extra_options()), target)?;
    Ok(())
}

/// Undoes [`mount_persistent`]: unmounts every layer of specs at `target`.
pub fn unmount_persistent(target: &Path) -> Result<()> {
    while strata_driver_api::mount::is_mountpoint(target)? {
        unmount(target)?;
    }
    Ok(())
}
