//! Disk space held back for metadata. When a driver fills the disk, the
//! metadata write that records the outcome (or the rollback) would fail and
//! leave an intent record behind; releasing the reserve lets that write
//! through. The reserve is re-created at the next open when space allows.

use std::fs;
use std::path::PathBuf;

use nix::fcntl::{fallocate, FallocateFlags};

/// A file of allocated (not sparse) blocks that can be given back.
#[derive(Debug)]
pub struct SpaceReserve {
    path: PathBuf,
}

impl SpaceReserve {
    /// Makes sure `path` holds `bytes` allocated bytes, if the disk has room;
    /// a reserve that cannot be made now is simply absent.
    pub fn new(path: PathBuf, bytes: u64) -> Self {
        let ready = fs::metadata(&path)
            .map(|m| m.len() == bytes)
            .unwrap_or(false);
        if !ready {
            let made = strata_driver_api::private::private_file_options()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .and_then(|f| {
                    fallocate(&f, FallocateFlags::empty(), 0, bytes as i64)
                        .map_err(std::io::Error::from)
                });
            if let Err(e) = made {
                tracing::warn!(path = %path.display(), error = %e, "no room for the metadata space reserve");
                let _ = fs::remove_file(&path);
            }
        }
        Self { path }
    }

    /// Whether the reserve is in place. Without it a new snapshot could fill
    /// the disk with no room left to record the outcome, so creating is
    /// refused until space is freed.
    pub fn is_present(&self) -> bool {
        self.path.exists()
    }

    /// The reserve file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Deletes the reserve; whether there was one to give back.
    pub fn release(&self) -> bool {
        let released = fs::remove_file(&self.path).is_ok();
        if released {
            tracing::warn!(path = %self.path.display(), "disk full: released the metadata space reserve");
        }
        released
    }
}
