//! [`VfsDriver`]: snapshots as full directory copies.

use std::fs::{self, Permissions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use strata_driver_api::{
    CreateOptions, Driver, DriverConfig, Error, IoContext, Kind, Mount, Result, SnapshotId,
    StatusLine, Target, Usage,
};

use strata_driver_api::du::disk_usage;

use crate::{copy_tree_with, CopyOptions, Reflink, VfsConfig};

/// Driver name.
const NAME: &str = "vfs";

/// The vfs driver. Layout under its home:
/// - `dir/<id>`: the snapshot's full tree;
/// - `readonly/<id>`: empty marker, present once a snapshot is committed (or
///   for a view), so its mounts are read-only.
#[derive(Debug)]
pub struct VfsDriver {
    home: PathBuf,
    config: VfsConfig,
    /// Whether the home's filesystem accepted a test `FICLONE` at open.
    reflink: bool,
    backing: String,
}

impl VfsDriver {
    /// Opens (and lays out) the driver in `cfg.home`.
    pub fn open(cfg: &DriverConfig<'_>) -> Result<Self> {
        let config = VfsConfig::from_options(cfg.options)?;
        let home = cfg.home.to_owned();
        for sub in ["dir", "readonly"] {
            let p = home.join(sub);
            fs::create_dir_all(&p).ctx("mkdir", &p)?;
        }
        let reflink = config.reflink == Reflink::Auto && probe_reflink(&home)?;
        let backing = strata_driver_api::fs_type_name(&home).ctx("statfs", &home)?;
        Ok(Self {
            home,
            config,
            reflink,
            backing,
        })
    }

    /// Directory holding snapshot `id`'s tree.
    pub fn snapshot_dir(&self, id: SnapshotId) -> PathBuf {
        self.home.join("dir").join(id.to_string())
    }

    fn readonly_marker(&self, id: SnapshotId) -> PathBuf {
        self.home.join("readonly").join(id.to_string())
    }

    fn mark_read_only(&self, id: SnapshotId) -> Result<()> {
        let marker = self.readonly_marker(id);
        fs::write(&marker, b"").ctx("write", &marker)
    }

    fn is_read_only(&self, target: &Target<'_>) -> bool {
        target.kind != Kind::Active || self.readonly_marker(target.id).exists()
    }
}

/// Tries `FICLONE` between two scratch files in `home`. A probe that
/// cannot run at all (a full disk) is logged and counts as "no reflink":
/// the store must still open, e.g. for `rm` on a full disk.
fn probe_reflink(home: &Path) -> Result<bool> {
    let a = home.join(".reflink-probe-src");
    let b = home.join(".reflink-probe-dst");
    let result = (|| -> io::Result<bool> {
        fs::write(&a, b"strata reflink probe")?;
        let src = fs::File::open(&a)?;
        let dst = fs::File::create(&b)?;
        Ok(strata_driver_api::reflink::clone_file(&src, &dst).is_ok())
    })();
    remove_file_if_exists(&a)?;
    remove_file_if_exists(&b)?;
    Ok(result.unwrap_or_else(|e| {
        tracing::warn!(home = %home.display(), error = %e, "reflink probe failed; copying without reflink");
        false
    }))
}

fn remove_file_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io("remove", path, e)),
        _ => Ok(()),
    }
}

impl Driver for VfsDriver {
    fn name(&self) -> &'static str {
        NAME
    }

    fn create(&self, target: Target<'_>, _options: &CreateOptions) -> Result<()> {
        let dir = self.snapshot_dir(target.id);
        match target.parent() {
            Some(parent) => {
                let options = CopyOptions {
                    reflink: self.reflink,
                };
                copy_tree_with(&self.snapshot_dir(parent), &dir, options)?;
            }
            None => {
                fs::create_dir(&dir).ctx("mkdir", &dir)?;
                fs::set_permissions(&dir, Permissions::from_mode(0o755)).ctx("chmod", &dir)?;
            }
        }
        if target.kind != Kind::Active {
            self.mark_read_only(target.id)?;
        }
        Ok(())
    }

    fn commit(&self, target: Target<'_>) -> Result<()> {
        strata_driver_api::sync_filesystem(&self.snapshot_dir(target.id))?;
        self.mark_read_only(target.id)
    }

    fn remove(&self, id: SnapshotId) -> Result<()> {
        let dir = self.snapshot_dir(id);
        match strata_driver_api::tree::remove_tree(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(Error::io("remove", &dir, e))
            }
            _ => {}
        }
        remove_file_if_exists(&self.readonly_marker(id))
    }

    fn mounts(&self, target: Target<'_>) -> Result<Vec<Mount>> {
        let dir = self.snapshot_dir(target.id);
        if !dir.is_dir() {
            return Err(Error::Driver {
                driver: NAME,
                source: format!(
                    "storage of snapshot {} is missing: {}",
                    target.id,
                    dir.display()
                )
                .into(),
            });
        }
        let mode = if self.is_read_only(&target) {
            "ro"
        } else {
            "rw"
        };
        Ok(vec![Mount {
            fstype: "bind".into(),
            source: dir.to_string_lossy().into_owned(),
            options: vec!["rbind".into(), mode.into()],
        }])
    }

    fn usage(&self, target: Target<'_>) -> Result<Usage> {
        disk_usage(&self.snapshot_dir(target.id))
    }

    fn stored_ids(&self) -> Result<Vec<SnapshotId>> {
        let dir = self.home.join("dir");
        let mut ids = Vec::new();
        for entry in fs::read_dir(&dir).ctx("read directory", &dir)? {
            let entry = entry.ctx("read directory", &dir)?;
            if let Some(id) = entry.file_name().to_str().and_then(|s| s.parse().ok()) {
                ids.push(SnapshotId(id));
            }
        }
        ids.sort();
        Ok(ids)
    }

    fn status(&self) -> Vec<StatusLine> {
        let copy = if self.reflink {
            "reflink (FICLONE), data copy where refused"
        } else if self.config.reflink == Reflink::Never {
            "full data copy (vfs.reflink=never)"
        } else {
            "full data copy (backing filesystem has no reflink)"
        };
        vec![
            ("home".into(), self.home.display().to_string()),
            ("backing filesystem".into(), self.backing.clone()),
            ("copy".into(), copy.into()),
            (
                "usage".into(),
                "du of each snapshot directory (reflinked extents counted in full)".into(),
            ),
        ]
    }
}
