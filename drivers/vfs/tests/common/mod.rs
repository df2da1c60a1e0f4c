//! Local test fixtures until the api crate's `testing` module lands: a
//! scratch directory under /tmp that unmounts everything beneath it on drop,
//! an xfs loop filesystem, and a minimal mount helper for bind specs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use strata_driver_api::Mount;

/// Whether we run as root; prints a loud skip otherwise.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("SKIP {test}: needs root");
    false
}

/// `/tmp/strata-test-<tag>-XXXX`, unmounted and removed on drop.
pub struct Scratch(tempfile::TempDir);

impl Scratch {
    pub fn new(tag: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("strata-test-{tag}-"))
            .tempdir_in("/tmp")
            .expect("create scratch dir");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        unmount_beneath(self.path());
    }
}

/// Unmounts every mount at or below `root`, deepest first.
pub fn unmount_beneath(root: &Path) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(root))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        let _ = umount2(&p, MntFlags::MNT_DETACH);
    }
}

/// Performs one mount spec at `target` (bind or overlay only).
pub fn mount_spec(m: &Mount, target: &Path) {
    let ro = m.options.iter().any(|o| o == "ro");
    if m.fstype == "bind" {
        let mut flags = MsFlags::MS_BIND;
        if m.options.iter().any(|o| o == "rbind") {
            flags |= MsFlags::MS_REC;
        }
        mount(
            Some(m.source.as_str()),
            target,
            None::<&str>,
            flags,
            None::<&str>,
        )
        .expect("bind mount");
        if ro {
            let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            mount(None::<&str>, target, None::<&str>, flags, None::<&str>).expect("remount ro");
        }
        return;
    }
    let data: Vec<&str> = m
        .options
        .iter()
        .map(String::as_str)
        .filter(|o| *o != "ro" && *o != "rw")
        .collect();
    let flags = if ro {
        MsFlags::MS_RDONLY
    } else {
        MsFlags::empty()
    };
    mount(
        Some(m.source.as_str()),
        target,
        Some(m.fstype.as_str()),
        flags,
        Some(data.join(",").as_str()),
    )
    .unwrap_or_else(|e| panic!("mount {m:?}: {e}"));
}

/// Mounts `mounts` (one spec) at a fresh dir under `scratch`.
pub fn mount_at(mounts: &[Mount], scratch: &Path, name: &str) -> PathBuf {
    assert_eq!(mounts.len(), 1, "one mount spec expected: {mounts:?}");
    let target = scratch.join(name);
    std::fs::create_dir_all(&target).unwrap();
    mount_spec(&mounts[0], &target);
    target
}

pub fn unmount(target: &Path) {
    umount2(target, MntFlags::empty()).expect("umount");
}

/// A loop-mounted filesystem in a sparse file under a scratch dir.
pub struct LoopFs {
    scratch: Scratch,
    mnt: PathBuf,
}

impl LoopFs {
    /// `None` (after a loud skip) when mkfs or mount is impossible.
    pub fn new(test: &str, fstype: &str, mkfs_args: &[&str]) -> Option<Self> {
        let scratch = Scratch::new(fstype);
        let image = scratch.path().join("image");
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(1 << 30))
            .expect("create image file");
        let mnt = scratch.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let mkfs = Command::new(format!("mkfs.{fstype}"))
            .args(mkfs_args)
            .arg(&image)
            .output();
        if !matches!(&mkfs, Ok(o) if o.status.success()) {
            eprintln!("SKIP {test}: mkfs.{fstype} failed: {mkfs:?}");
            return None;
        }
        let status = Command::new("mount")
            .arg("-o")
            .arg("loop")
            .arg(&image)
            .arg(&mnt)
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("SKIP {test}: loop mount of {fstype} failed");
            return None;
        }
        Some(Self { scratch, mnt })
    }

    pub fn path(&self) -> &Path {
        &self.mnt
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        // The loop device was attached with autoclear by mount(8): it goes
        // away with the last reference to the filesystem.
        unmount_beneath(&self.mnt);
    }
}
