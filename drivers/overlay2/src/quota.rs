//! Project quotas for snapshot directories, where the home's filesystem
//! enforces them (xfs mounted with `prjquota`, ext4 with the `quota`
//! feature and `prjquota`). Each snapshot directory (`snapshots/<id>`,
//! holding both the upper and the work directory, so overlayfs' copy-up
//! renames stay inside one project) gets a project id equal to its own inode
//! number: unique on the filesystem while the directory exists, so stores
//! sharing a filesystem do not collide. The project's counters give usage
//! and inodes without a walk; its block limit is the snapshot's size limit.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use strata_driver_api::{IoContext, Result, Usage};

use crate::quota_sys as sys;
use crate::Overlay2Error;

/// Project quotas on the filesystem of the driver's home.
#[derive(Debug)]
pub struct ProjectQuotas {
    /// The home directory, the handle `quotactl_fd` addresses the filesystem by.
    home: File,
}

impl ProjectQuotas {
    /// `Some` when the filesystem of `home` enforces project quotas.
    pub fn probe(home: &Path) -> Option<Self> {
        let home = File::open(home).ok()?;
        sys::projects_enforced(&home).then_some(Self { home })
    }

    /// Puts the new, still empty, snapshot directory `dir` in a project of
    /// its own, limited to `limit` bytes if given.
    pub fn assign(&self, dir: &Path, limit: Option<u64>) -> Result<()> {
        let (handle, id) = open_with_id(dir)?;
        sys::set_project(&handle, id).ctx("set project id of", dir)?;
        if let Some(bytes) = limit {
            sys::set_limit(&self.home, id, bytes).ctx("set project quota limit of", dir)?;
        }
        Ok(())
    }

    /// Lifts the limit of `dir`'s project before the directory goes (its
    /// inode number may be reused).
    pub fn clear(&self, dir: &Path) -> Result<()> {
        match self.project(dir)? {
            Some(id) => sys::set_limit(&self.home, id, 0).ctx("clear project quota limit of", dir),
            None => Ok(()),
        }
    }

    /// Usage from `dir`'s project counters; `None` for a directory made
    /// before quotas were on (no project of its own).
    pub fn usage(&self, dir: &Path) -> Result<Option<Usage>> {
        let Some(id) = self.project(dir)? else {
            return Ok(None);
        };
        let (size, inodes) =
            sys::project_usage(&self.home, id).ctx("read project quota of", dir)?;
        Ok(Some(Usage { size, inodes }))
    }

    /// `dir`'s project id when it is the one `assign` gives.
    fn project(&self, dir: &Path) -> Result<Option<u32>> {
        let (handle, id) = match open_with_id(dir) {
            Ok(found) => found,
            Err(_) if !dir.exists() => return Ok(None),
            Err(e) => return Err(e),
        };
        let current = sys::project_of(&handle).ctx("read project id of", dir)?;
        Ok((current == id).then_some(id))
    }
}

/// Opens `dir` and derives its project id from its inode number.
fn open_with_id(dir: &Path) -> Result<(File, u32)> {
    let handle = File::open(dir).ctx("open", dir)?;
    let ino = handle.metadata().ctx("stat", dir)?.ino();
    let id = u32::try_from(ino).map_err(|_| Overlay2Error::ProjectId {
        path: dir.display().to_string(),
        ino,
    })?;
    Ok((handle, id))
}
