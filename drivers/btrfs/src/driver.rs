//! [`BtrfsDriver`]: each snapshot is the subvolume `<root>/snapshots/<id>`.

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use btrfsutil::subvolume::{DeleteFlags, SnapshotFlags, Subvolume};
use strata_driver_api::{
    CreateOptions, Driver, DriverConfig, Error, IoContext, Kind, Mount, Result, SnapshotId,
    StatusLine, Target, Usage,
};

use crate::backing::Backing;
use crate::config::BtrfsConfig;
use crate::error::{BtrfsError, DRIVER};
use crate::pending::Pending;
use crate::quota::{self, Cleanup, QuotaMode};
use crate::reclaim::Reclaimer;
use crate::sys;

/// Directory under the filesystem root holding one subvolume per snapshot.
pub const SNAPSHOTS_DIR: &str = "snapshots";

/// The btrfs driver. See the crate documentation.
#[derive(Debug)]
pub struct BtrfsDriver {
    backing: Backing,
    snapshots: PathBuf,
    quota: QuotaMode,
    /// Who destroys the qgroups of removed subvolumes.
    cleanup: Cleanup,
    /// Qgroups of removed subvolumes still to destroy (with
    /// [`Cleanup::Strata`], and ids left by earlier processes).
    pending: Pending,
    /// Destroys them in the background.
    reclaim: Reclaimer,
}

impl BtrfsDriver {
    /// Opens the driver in `cfg.home`: finds or makes the btrfs filesystem,
    /// mounts a loop file if needed, turns quotas on (`btrfs.quota`).
    pub fn open(cfg: &DriverConfig<'_>) -> Result<Self> {
        let options = BtrfsConfig::from_options(cfg.options)?;
        let backing = Backing::open(cfg.home, &options)?;
        let snapshots = backing.root.join(SNAPSHOTS_DIR);
        fs::create_dir_all(&snapshots).ctx("mkdir", &snapshots)?;
        // The backing stays mounted when this fails, as it does between
        // commands; `strata release` unmounts it.
        let quota = sys::open_dir(&backing.root)
            .ctx("open", &backing.root)
            .and_then(|dir| Ok(quota::open(&dir, &backing.root, options.quota)?))?;
        let release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        let cleanup = Cleanup::resolve(options.qgroup_cleanup, &release);
        let pending = Pending::new(cfg.home, &backing.root);
        let reclaim = Reclaimer::new(pending.clone());
        // Also with quotas off now: the file may hold ids from before.
        reclaim.start()?;
        Ok(Self {
            backing,
            snapshots,
            quota,
            cleanup,
            pending,
            reclaim,
        })
    }

    /// The quota mode in use.
    pub fn quota_mode(&self) -> QuotaMode {
        self.quota
    }

    /// The root of the btrfs filesystem (or the home when on host btrfs).
    pub fn fs_root(&self) -> &Path {
        &self.backing.root
    }

    /// A directory fd on the filesystem for ioctls (opened per call so that
    /// `release` can unmount).
    fn fs_dir(&self) -> Result<File> {
        sys::open_dir(&self.backing.root).ctx("open", &self.backing.root)
    }

    /// Path of snapshot `id`'s subvolume.
    pub fn subvolume_path(&self, id: SnapshotId) -> PathBuf {
        self.snapshots.join(id.to_string())
    }

    /// Subvolume id of snapshot `id`.
    pub fn subvolume_id(&self, id: SnapshotId) -> Result<u64> {
        let path = self.subvolume_path(id);
        Ok(Subvolume::get(path.as_path())
            .map_err(|e| BtrfsError::util("subvolume id of", &path, e))?
            .id())
    }

    /// Exclusive and referenced bytes of snapshot `id` from btrfs' own
    /// accounting, `None` when quotas are off or inconsistent.
    pub fn qgroup_info(&self, id: SnapshotId) -> Result<Option<sys::QgroupInfo>> {
        if self.quota == QuotaMode::Off {
            return Ok(None);
        }
        let subvolid = self.subvolume_id(id)?;
        Ok(quota::read(&self.fs_dir()?, &self.backing.root, subvolid)?)
    }

    /// Inodes the snapshot created or changed since it was made from its
    /// parent (every inode of a base snapshot), from an in-kernel search of
    /// the subvolume's tree that skips blocks untouched since.
    fn changed_inodes(&self, target: Target<'_>) -> Result<u64> {
        let path = self.subvolume_path(target.id);
        let sv = Subvolume::get(path.as_path()).map_err(|e| BtrfsError::util("open", &path, e))?;
        let since = match target.parent() {
            Some(_) => {
                sv.info()
                    .map_err(|e| BtrfsError::util("subvolume info of", &path, e))?
                    .otransid
            }
            None => 0,
        };
        let fs = self.fs_dir()?;
        sys::changed_inodes(&fs, sv.id(), since).ctx("count inodes of", &path)
    }

    fn make_subvolume(&self, target: &Target<'_>, path: &Path) -> Result<Subvolume> {
        let read_only = target.kind == Kind::View;
        match target.parent() {
            Some(parent) => {
                let src_path = self.subvolume_path(parent);
                let src = Subvolume::get(src_path.as_path())
                    .map_err(|e| BtrfsError::util("open parent subvolume", &src_path, e))?;
                let flags = read_only.then_some(SnapshotFlags::READ_ONLY);
                Ok(src
                    .snapshot(path, flags, None)
                    .map_err(|e| BtrfsError::util("snapshot into", path, e))?)
            }
            None => {
                let sv = Subvolume::create(path, None)
                    .map_err(|e| BtrfsError::util("create subvolume", path, e))?;
                fs::set_permissions(path, fs::Permissions::from_mode(0o755)).ctx("chmod", path)?;
                if read_only {
                    sv.set_ro(true)
                        .map_err(|e| BtrfsError::util("set read-only", path, e))?;
                }
                Ok(sv)
            }
        }
    }

    /// Ids of `subvolid` and every subvolume nested in it, innermost first.
    fn nested_subvolumes(&self, subvolid: u64) -> Result<Vec<u64>> {
        let dir = self.fs_dir()?;
        let mut out = Vec::new();
        let mut stack = vec![subvolid];
        while let Some(id) = stack.pop() {
            out.push(id);
            let children = sys::child_subvolumes(&dir, id).map_err(|e| {
                Error::io(
                    "list subvolumes nested in",
                    self.backing.root.join(format!("<subvolume {id}>")),
                    e,
                )
            })?;
            stack.extend(children);
        }
        out.reverse();
        Ok(out)
    }

    /// Who destroys the qgroups of removed subvolumes.
    pub fn qgroup_cleanup(&self) -> Cleanup {
        self.cleanup
    }

    /// Subvolume ids of removed snapshots whose qgroups are still to be
    /// destroyed: the recorded ones, and with [`Cleanup::Kernel`] those a
    /// scan finds unlinked (being dropped, or left by the kernel).
    pub fn pending_qgroups(&self) -> Result<Vec<u64>> {
        let mut ids = self.pending.ids()?;
        if self.cleanup == Cleanup::Kernel && self.quota != QuotaMode::Off {
            ids.extend(quota::stale(&self.fs_dir()?, &self.backing.root)?);
            ids.sort_unstable();
            ids.dedup();
        }
        Ok(ids)
    }

    /// Destroys pending qgroups in the foreground, waiting for btrfs'
    /// cleaner until `deadline`; returns the subvolume ids still pending.
    pub fn finish_pending(&self, deadline: Instant) -> Result<Vec<u64>> {
        let left = self.pending.finish(deadline)?;
        if self.cleanup == Cleanup::Strata || self.quota == QuotaMode::Off {
            return Ok(left);
        }
        self.finish_stale(deadline)
    }

    /// Waits until `deadline` for btrfs' cleaner to drop the unlinked
    /// subvolumes, destroying each qgroup it leaves behind; returns the ids
    /// still there. A qgroup the kernel refuses to destroy after the cleaner
    /// has dropped its tree is still charged for extents shared elsewhere
    /// (simple quotas): no wait helps it, so it is returned without one.
    fn finish_stale(&self, deadline: Instant) -> Result<Vec<u64>> {
        let dir = self.fs_dir()?;
        let root = &self.backing.root;
        let mut charged = Vec::new();
        let mut left = crate::pending::until_none_left(deadline, || {
            sys::sync(&dir).ctx("commit the transaction of", root)?;
            charged.clear();
            let mut dropping = Vec::new();
            for id in quota::stale(&dir, root)? {
                if quota::try_destroy(&dir, root, id)? {
                    continue;
                }
                let tree = sys::subvolume_tree_exists(&dir, id)
                    .map_err(|e| Error::io("look up", root.join(format!("<subvolume {id}>")), e))?;
                if tree {
                    dropping.push(id);
                } else {
                    charged.push(id);
                }
            }
            Ok(dropping)
        })?;
        left.extend(charged);
        left.sort_unstable();
        Ok(left)
    }

    /// Deletes subvolume `sv` at `path` with those nested in it, their
    /// qgroup ids recorded first for the reclaim thread unless the kernel
    /// removes the qgroups itself.
    fn delete_subvolume(&self, path: &Path, sv: Subvolume) -> Result<()> {
        let ids = self.nested_subvolumes(sv.id())?;
        let nested = ids.len() > 1;
        let delete = move || {
            if nested {
                // Nested subvolumes are unlinked from their parent directory,
                // which must be writable; the snapshot is going away anyway.
                sv.set_ro(false)
                    .map_err(|e| BtrfsError::util("clear read-only", path, e))?;
            }
            sv.delete(DeleteFlags::RECURSIVE)
                .map_err(|e| BtrfsError::util("delete subvolume", path, e).into())
        };
        if self.quota == QuotaMode::Off || self.cleanup == Cleanup::Kernel {
            return delete();
        }
        self.pending.record_then(&ids, delete)?;
        self.reclaim.poke();
        Ok(())
    }
}

fn qgroup_names(ids: Vec<u64>) -> Vec<String> {
    ids.into_iter().map(|id| format!("qgroup 0/{id}")).collect()
}

impl Driver for BtrfsDriver {
    fn name(&self) -> &'static str {
        DRIVER
    }

    /// A qgroup limit, when quotas are on.
    fn limits_size(&self) -> bool {
        self.quota != QuotaMode::Off
    }

    fn create(&self, target: Target<'_>, options: &CreateOptions) -> Result<()> {
        if target.kind == Kind::Committed {
            return Err(Error::InvalidArgument(format!(
                "snapshot {} cannot be created committed",
                target.id
            )));
        }
        if options.size.is_some() && self.quota == QuotaMode::Off {
            return Err(Error::Unsupported {
                driver: DRIVER.into(),
                reason: "size limits need quotas (btrfs.quota=on)".into(),
            });
        }
        let path = self.subvolume_path(target.id);
        let sv = self.make_subvolume(&target, &path)?;
        if let Some(size) = options.size {
            quota::limit(&self.fs_dir()?, &self.backing.root, sv.id(), size)?;
        }
        Ok(())
    }

    /// Writes the subvolume's data to disk (a snapshot of it would flush
    /// it, setting the flag does not), then sets the read-only flag.
    fn commit(&self, target: Target<'_>) -> Result<()> {
        let path = self.subvolume_path(target.id);
        strata_driver_api::sync_filesystem(&path)?;
        let sv = Subvolume::get(path.as_path()).map_err(|e| BtrfsError::util("open", &path, e))?;
        sv.set_ro(true)
            .map_err(|e| BtrfsError::util("set read-only", &path, e))?;
        Ok(())
    }

    fn remove(&self, id: SnapshotId) -> Result<()> {
        let path = self.subvolume_path(id);
        if fs::symlink_metadata(&path).is_err() {
            return Ok(());
        }
        let sv = Subvolume::get(path.as_path()).map_err(|e| BtrfsError::util("open", &path, e))?;
        self.delete_subvolume(&path, sv)
    }

    fn mounts(&self, target: Target<'_>) -> Result<Vec<Mount>> {
        let subvolid = self.subvolume_id(target.id)?;
        let mode = if target.kind == Kind::Active {
            "rw"
        } else {
            "ro"
        };
        Ok(vec![Mount {
            fstype: "btrfs".into(),
            source: self.backing.device.to_string_lossy().into_owned(),
            options: vec![mode.into(), format!("subvolid={subvolid}")],
        }])
    }

    fn usage(&self, target: Target<'_>) -> Result<Usage> {
        if let Some(info) = self.qgroup_info(target.id)? {
            return Ok(Usage {
                size: info.exclusive,
                inodes: self.changed_inodes(target)?,
            });
        }
        strata_driver_api::du::disk_usage(&self.subvolume_path(target.id))
    }

    fn stored_ids(&self) -> Result<Vec<SnapshotId>> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.snapshots).ctx("readdir", &self.snapshots)? {
            let entry = entry.ctx("readdir", &self.snapshots)?;
            if let Some(id) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
                ids.push(SnapshotId(id));
            }
        }
        ids.sort();
        Ok(ids)
    }

    fn status(&self) -> Vec<StatusLine> {
        let mut lines = vec![
            ("backing".to_owned(), self.backing.describe()),
            ("snapshots".to_owned(), self.snapshots.display().to_string()),
            ("usage method".to_owned(), self.quota.describe().to_owned()),
            (
                "size limits".to_owned(),
                match self.quota {
                    QuotaMode::Off => "unavailable (quotas off)".to_owned(),
                    _ => "qgroup limit on exclusive bytes".to_owned(),
                },
            ),
        ];
        if self.quota != QuotaMode::Off {
            lines.push((
                "qgroup cleanup".to_owned(),
                self.cleanup.describe().to_owned(),
            ));
        }
        if let Ok(p) = self.pending.ids() {
            if !p.is_empty() {
                lines.push(("qgroups awaiting cleanup".to_owned(), format!("{p:?}")));
            }
        }
        lines
    }

    /// Stops the reclaim thread (it holds the filesystem open during a
    /// pass), finishes what it can in the foreground, then unmounts; the
    /// thread starts again when the backing stays.
    fn release(&self) -> Result<()> {
        self.reclaim.stop();
        let released = self
            .pending
            .finish(Instant::now() + quota::DROP_WAIT)
            .and_then(|_| self.backing.release());
        if released.is_err() {
            self.reclaim.start()?;
        }
        released
    }

    fn pending_reclaim(&self) -> Result<Vec<String>> {
        Ok(qgroup_names(self.pending_qgroups()?))
    }

    fn finish_reclaim(&self, deadline: Instant) -> Result<Vec<String>> {
        Ok(qgroup_names(self.finish_pending(deadline)?))
    }

    fn backing_files(&self) -> Vec<strata_driver_api::BackingFile> {
        self.backing.files()
    }
}

/// Whether `home` is on a btrfs filesystem (`--driver auto` prefers btrfs then).
pub fn home_is_btrfs(home: &Path) -> bool {
    sys::is_btrfs(home).unwrap_or(false)
}

/// Whether the driver can work in `home`: btrfs in the kernel, and for a home
/// not on btrfs, mkfs.btrfs and loop devices.
pub fn supported(home: &Path) -> std::result::Result<(), String> {
    if home_is_btrfs(home) {
        return Ok(());
    }
    if !strata_driver_api::kernel_has_fs("btrfs").map_err(|e| format!("/proc/filesystems: {e}"))? {
        return Err("the kernel has no btrfs (not in /proc/filesystems)".into());
    }
    if !Path::new("/dev/loop-control").exists() {
        return Err("no /dev/loop-control for the loop-backed filesystem".into());
    }
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("mkfs.btrfs").is_file()))
        .unwrap_or(false);
    if !found {
        return Err("mkfs.btrfs not found in PATH (install btrfs-progs)".into());
    }
    Ok(())
}
