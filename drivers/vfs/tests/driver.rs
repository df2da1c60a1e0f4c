//! The vfs driver with real bind mounts: create, commit, views, usage,
//! stored ids and idempotent remove. Needs root.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use strata_driver_api::mount::{mount_all, unmount};
use strata_driver_api::testing::{require_root, skip, LoopFs, ScratchDir};
use strata_driver_api::Mount;
use strata_driver_api::{CreateOptions, Driver, DriverConfig, Kind, SnapshotId, Target};
use strata_vfs::VfsDriver;

fn target(id: u64, kind: Kind, parents: &[SnapshotId]) -> Target<'_> {
    Target {
        id: SnapshotId(id),
        kind,
        parents,
    }
}

fn open(home: &Path) -> VfsDriver {
    fs::create_dir_all(home).unwrap();
    let options = BTreeMap::new();
    VfsDriver::open(&DriverConfig {
        home,
        options: &options,
    })
    .expect("open vfs")
}

/// Mounts `mounts` at a fresh directory `name` below `scratch`.
fn mount_at(mounts: &[Mount], scratch: &Path, name: &str) -> PathBuf {
    let target = scratch.join(name);
    fs::create_dir_all(&target).unwrap();
    mount_all(mounts, &target).unwrap_or_else(|e| panic!("mount {mounts:?}: {e}"));
    target
}

#[test]
fn lifecycle_with_bind_mounts() {
    if !require_root("lifecycle_with_bind_mounts") {
        return;
    }
    let scratch = ScratchDir::new("vfs-driver");
    let d = open(&scratch.path().join("home"));
    let none = CreateOptions::default();

    // Base layer: empty 0755 directory, written through a rw bind mount.
    d.create(target(1, Kind::Active, &[]), &none).unwrap();
    let m = d.mounts(target(1, Kind::Active, &[])).unwrap();
    assert_eq!(m[0].fstype, "bind");
    assert_eq!(m[0].options, ["rbind", "rw"]);
    let mnt = mount_at(&m, scratch.path(), "m1");
    assert_eq!(fs::metadata(&mnt).unwrap().mode() & 0o7777, 0o755);
    fs::create_dir(mnt.join("etc")).unwrap();
    fs::write(mnt.join("etc/os-release"), b"ID=strata\n").unwrap();
    fs::write(mnt.join("blob"), vec![1u8; 1 << 20]).unwrap();
    unmount(&mnt).unwrap();
    d.commit(target(1, Kind::Active, &[])).unwrap();
    d.commit(target(1, Kind::Committed, &[])).unwrap(); // idempotent

    // A committed snapshot mounts read-only.
    let m = d.mounts(target(1, Kind::Committed, &[])).unwrap();
    assert!(m[0].is_read_only());
    let mnt = mount_at(&m, scratch.path(), "m1ro");
    let err = fs::write(mnt.join("x"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    unmount(&mnt).unwrap();

    // Child: a copy of the parent; its changes do not reach the parent.
    let p = [SnapshotId(1)];
    d.create(target(2, Kind::Active, &p), &none).unwrap();
    let mnt = mount_at(
        &d.mounts(target(2, Kind::Active, &p)).unwrap(),
        scratch.path(),
        "m2",
    );
    assert_eq!(
        fs::read(mnt.join("etc/os-release")).unwrap(),
        b"ID=strata\n"
    );
    fs::remove_file(mnt.join("blob")).unwrap();
    fs::write(mnt.join("etc/os-release"), b"ID=child\n").unwrap();
    unmount(&mnt).unwrap();
    let parent_dir = d.snapshot_dir(SnapshotId(1));
    assert_eq!(
        fs::read(parent_dir.join("etc/os-release")).unwrap(),
        b"ID=strata\n"
    );
    assert!(parent_dir.join("blob").exists());

    // View: read-only copy.
    d.create(target(3, Kind::View, &p), &none).unwrap();
    let m = d.mounts(target(3, Kind::View, &p)).unwrap();
    assert_eq!(m[0].options, ["rbind", "ro"]);
    let mnt = mount_at(&m, scratch.path(), "m3");
    assert!(mnt.join("blob").exists());
    assert!(fs::write(mnt.join("y"), b"y").is_err());
    unmount(&mnt).unwrap();

    // Usage: the 1 MiB blob is in 1 and 3, not in 2.
    let u1 = d.usage(target(1, Kind::Committed, &[])).unwrap();
    let u2 = d.usage(target(2, Kind::Active, &p)).unwrap();
    assert!(u1.size >= 1 << 20, "{u1:?}");
    assert!(u2.size < 1 << 20, "{u2:?}");
    assert_eq!(u1.inodes, 4, "{u1:?}"); // root, etc, os-release, blob
    assert_eq!(u2.inodes, 3, "{u2:?}");

    let ids = d.stored_ids().unwrap();
    assert_eq!(ids, [SnapshotId(1), SnapshotId(2), SnapshotId(3)]);
    for id in [3, 2, 1] {
        d.remove(SnapshotId(id)).unwrap();
        d.remove(SnapshotId(id)).unwrap(); // idempotent
    }
    assert!(d.stored_ids().unwrap().is_empty());
    assert!(d.mounts(target(1, Kind::Committed, &[])).is_err());
}

#[test]
fn status_and_bad_options() {
    let scratch = ScratchDir::new("vfs-status");
    let d = open(scratch.path());
    let status: BTreeMap<_, _> = d.status().into_iter().collect();
    assert_eq!(
        status["backing filesystem"], "ext4",
        "/tmp is ext4 on this host"
    );
    assert!(status["copy"].contains("full data copy"), "{status:?}");
    let options: BTreeMap<String, String> = [("vfs.nope".to_string(), "1".to_string())].into();
    let err = VfsDriver::open(&DriverConfig {
        home: scratch.path(),
        options: &options,
    })
    .unwrap_err();
    assert!(err.to_string().contains("vfs.nope"), "{err}");
}

#[test]
fn reflink_is_used_on_xfs() {
    let test = "reflink_is_used_on_xfs";
    if !require_root(test) {
        return;
    }
    let xfs = match LoopFs::new("xfs", 1 << 30, &["-m", "reflink=1"]) {
        Ok(fs) => fs,
        Err(e) => return skip(test, &format!("cannot make an xfs loop filesystem: {e}")),
    };
    let d = open(&xfs.path().join("vfs"));
    let status: BTreeMap<_, _> = d.status().into_iter().collect();
    assert_eq!(status["backing filesystem"], "xfs");
    assert!(status["copy"].starts_with("reflink"), "{status:?}");
}

/// A chain of directories below `dir` one deeper than this process may
/// hold descriptors open, as a layer (`a/a/a/...`) or a container makes.
fn deeper_than_the_fd_limit(dir: &Path) {
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    use std::os::fd::AsFd;
    let (soft, _) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    let depth = soft.min(1 << 20) as usize + 100;
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let mut cur = nix::fcntl::open(dir, flags, Mode::empty()).unwrap();
    for _ in 0..depth {
        nix::sys::stat::mkdirat(cur.as_fd(), "a", Mode::from_bits_truncate(0o755)).unwrap();
        cur = nix::fcntl::openat(cur.as_fd(), "a", flags, Mode::empty()).unwrap();
    }
}

#[test]
fn remove_takes_trees_deeper_than_the_fd_limit() {
    if !require_root("remove_takes_trees_deeper_than_the_fd_limit") {
        return;
    }
    // remove_dir_all holds a descriptor per level: it failed with EMFILE
    // and the snapshot (and every byte in it) stayed on disk for good.
    let scratch = ScratchDir::new("vfs-deep-remove");
    let d = open(&scratch.path().join("home"));
    d.create(target(1, Kind::Active, &[]), &CreateOptions::default())
        .unwrap();
    let dir = d.snapshot_dir(SnapshotId(1));
    fs::write(dir.join("data"), vec![1u8; 1 << 20]).unwrap();
    deeper_than_the_fd_limit(&dir);
    d.remove(SnapshotId(1)).expect("remove a deep snapshot");
    assert!(!dir.exists(), "{} is left", dir.display());
}
