//! Scratch space that cleans up after itself even when its user panics:
//! tagged directories and loop-backed filesystems. Used by the tests and by
//! `strata bench`, which builds the stores it compares.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::mount::{attach_loop, detach_loop, mount_fs, run, unmount};
use crate::{IoContext, Result};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A directory `/tmp/strata-test-<tag>-<pid>-<n>`; on drop, everything
/// mounted below it is unmounted, the loop devices of files below it are
/// detached (backing loop devices stay attached between commands) and the
/// tree is removed.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates a fresh scratch directory whose name carries `tag`, under
    /// `$STRATA_TEST_TMP` or the temp dir.
    pub fn new(tag: &str) -> Self {
        let base = std::env::var_os("STRATA_TEST_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        Self::new_in(&base, tag)
    }

    /// Creates a fresh scratch directory whose name carries `tag` under `base`.
    pub fn new_in(base: &Path, tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = base.join(format!("strata-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Self { path }
    }

    /// Takes over an existing scratch directory (one a killed process left,
    /// say): dropping the result unmounts, detaches and removes it as for
    /// one made here.
    pub fn adopt(path: PathBuf) -> Self {
        Self { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The process id in a scratch directory's name
    /// (`strata-test-<tag>-<pid>-<n>`), if it is one.
    pub fn owner_pid(name: &str) -> Option<u32> {
        let rest = name.strip_prefix("strata-test-")?;
        let mut parts = rest.rsplitn(3, '-');
        let (_n, pid) = (parts.next()?.parse::<u64>().ok()?, parts.next()?);
        parts.next()?;
        pid.parse().ok()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        clear_below(&self.path, true);
        remove_tree(&self.path);
    }
}

/// Unmounts every mount below `dir` (and `dir` itself when `including`),
/// deepest first, detaching the loop devices of files inside each mount
/// before unmounting it (a loop device keeps its file's filesystem busy),
/// and at the end those of files below `dir`. Reports failures on stderr.
fn clear_below(dir: &Path, including: bool) {
    let mut points: Vec<PathBuf> = crate::mount::mount_points()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.starts_with(dir) && (including || p != dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    points.dedup();
    for p in points {
        detach_below(&p);
        if let Err(e) = unmount(&p) {
            eprintln!("cleanup: unmounting {}: {e}", p.display());
        }
    }
    detach_below(dir);
}

fn detach_below(dir: &Path) {
    for dev in loops_below(dir) {
        if let Some(name) = dev.file_name() {
            remove_dm_holders(&name.to_string_lossy());
        }
        if let Err(e) = detach_loop(&dev) {
            eprintln!("cleanup: detaching {}: {e}", dev.display());
        }
    }
}

/// Removes the device-mapper devices stacked on block device `name` (a thin
/// pool on a scratch loop file, and the thin devices on that pool), top
/// first: a store keeps its pool between commands, so a test's store
/// leaves one behind, holding its deleted files' space.
fn remove_dm_holders(name: &str) {
    let Ok(holders) = std::fs::read_dir(Path::new("/sys/block").join(name).join("holders")) else {
        return;
    };
    for holder in holders.flatten() {
        let holder = holder.file_name().to_string_lossy().into_owned();
        remove_dm_holders(&holder);
        let Ok(dm_name) = std::fs::read_to_string(format!("/sys/block/{holder}/dm/name")) else {
            continue;
        };
        let out = Command::new("dmsetup")
            .args(["remove", "--retry", dm_name.trim()])
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "cleanup: dmsetup remove {}: {}",
                dm_name.trim(),
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => eprintln!("cleanup: dmsetup remove {}: {e}", dm_name.trim()),
        }
    }
}

/// Loop devices whose backing file (per sysfs, deleted or not) lies below
/// `dir`: only those, since other processes attach loop devices too.
pub fn loops_below(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("loop"))
        .filter(|e| {
            std::fs::read_to_string(e.path().join("loop/backing_file"))
                .map(|b| Path::new(b.trim_end().trim_end_matches(" (deleted)")).starts_with(dir))
                .unwrap_or(false)
        })
        .map(|e| Path::new("/dev").join(e.file_name()))
        .collect()
}

/// Removes a tree, deleting btrfs subvolumes it meets if plain removal fails.
fn remove_tree(path: &Path) {
    if std::fs::remove_dir_all(path).is_ok() || !path.exists() {
        return;
    }
    let _ = Command::new("btrfs")
        .args(["subvolume", "delete", "-R"])
        .arg(path)
        .output();
    let _ = std::fs::remove_dir_all(path);
}

/// A filesystem of type `fstype` made in a sparse file and loop-mounted at
/// [`LoopFs::path`]. Dropping it unmounts (which detaches the loop device)
/// and deletes the file.
#[derive(Debug)]
pub struct LoopFs {
    mount_point: PathBuf,
    scratch: ScratchDir,
}

impl LoopFs {
    /// Makes a `size`-byte `fstype` filesystem with extra `mkfs_args` and mounts it.
    pub fn new(fstype: &str, size: u64, mkfs_args: &[&str]) -> Result<Self> {
        Self::with_mount_options(fstype, size, mkfs_args, &[])
    }

    /// [`LoopFs::new`], mounted with `options` (`prjquota`, ...).
    pub fn with_mount_options(
        fstype: &str,
        size: u64,
        mkfs_args: &[&str],
        options: &[String],
    ) -> Result<Self> {
        Self::make(
            ScratchDir::new(&format!("loopfs-{fstype}")),
            fstype,
            size,
            mkfs_args,
            options,
        )
    }

    /// [`LoopFs::new`] with its loop file and mount point under `base`.
    pub fn new_in(base: &Path, fstype: &str, size: u64, mkfs_args: &[&str]) -> Result<Self> {
        let scratch = ScratchDir::new_in(base, &format!("loopfs-{fstype}"));
        Self::make(scratch, fstype, size, mkfs_args, &[])
    }

    fn make(
        scratch: ScratchDir,
        fstype: &str,
        size: u64,
        mkfs_args: &[&str],
        options: &[String],
    ) -> Result<Self> {
        let image = scratch.path().join("fs.img");
        let file = std::fs::File::create(&image).ctx("create", &image)?;
        file.set_len(size).ctx("truncate", &image)?;
        drop(file);
        let force = if fstype == "ext4" { "-F" } else { "-f" };
        run(Command::new(format!("mkfs.{fstype}"))
            .arg(force)
            .args(mkfs_args)
            .arg(&image)
            .arg("-q"))
        .or_else(|_| {
            run(Command::new(format!("mkfs.{fstype}"))
                .arg(force)
                .args(mkfs_args)
                .arg(&image))
        })?;
        let mount_point = scratch.path().join("mnt");
        std::fs::create_dir(&mount_point).ctx("mkdir", &mount_point)?;
        let dev = attach_loop(&image, false, true)?;
        mount_fs(&dev.path, &mount_point, fstype, options)?;
        Ok(Self {
            mount_point,
            scratch,
        })
    }

    /// Where the filesystem is mounted.
    pub fn path(&self) -> &Path {
        &self.mount_point
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        clear_below(&self.mount_point, false);
        detach_below(&self.mount_point);
        if let Err(e) = unmount(&self.mount_point) {
            eprintln!("cleanup: unmounting {}: {e}", self.mount_point.display());
        }
        let _ = &self.scratch;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_reads_scratch_names_only() {
        assert_eq!(
            ScratchDir::owner_pid("strata-test-bench-overlay2-xfs-19809-12"),
            Some(19809)
        );
        assert_eq!(ScratchDir::owner_pid("strata-test-loopfs-xfs-7-0"), Some(7));
        assert_eq!(ScratchDir::owner_pid("strata-test-x-12"), None);
        assert_eq!(ScratchDir::owner_pid("results.json"), None);
        assert_eq!(ScratchDir::owner_pid("strata-test-a-b-c"), None);
    }
}
