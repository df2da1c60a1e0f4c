//! Commit makes a layer durable: a file written without fsync is, after the
//! driver's commit, no longer held only in the page cache (no
//! delayed-allocation extents left in the layer's own storage). Without
//! this a power loss can leave a committed layer with empty files while its
//! record says committed (containerd issue 5854). Each case first checks
//! that the write does sit in the page cache, so it can fail. Block drivers
//! are durable by the unmount before commit (blockfile's case shows it;
//! devmapper's thin devices flush to the pool the same way). A layer's
//! kept tar is on disk before its image is recorded, too.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use strata_driver_api::mount::{mount_all, unmount};
use strata_driver_api::testing::{
    require_program, require_root, unwritten_bytes, LoopFs, ScratchDir,
};
use strata_driver_api::{CreateOptions, Driver, DriverConfig, Kind, SnapshotId, Target};

const ID: SnapshotId = SnapshotId(1);

fn active() -> Target<'static> {
    Target {
        id: ID,
        kind: Kind::Active,
        parents: &[],
    }
}

fn committed() -> Target<'static> {
    Target {
        id: ID,
        kind: Kind::Committed,
        parents: &[],
    }
}

fn open<D>(open: fn(&DriverConfig<'_>) -> strata_driver_api::Result<D>, home: &Path) -> D {
    std::fs::create_dir_all(home).expect("mkdir home");
    let options = BTreeMap::new();
    open(&DriverConfig {
        home,
        options: &options,
    })
    .expect("open driver")
}

/// Writes 4 MiB into `file` without fsync, checks it is unwritten, commits
/// through `driver`, and checks `storage` (the file itself, or the layer's
/// image) has nothing unwritten left.
fn written_then_committed(driver: &dyn Driver, file: &Path, storage: &Path) {
    std::fs::write(file, vec![7u8; 4 << 20]).expect("write");
    let before = unwritten_bytes(storage).expect("fiemap");
    assert!(
        before > 0,
        "precondition: the write should be in the page cache"
    );
    driver.commit(committed()).expect("commit");
    let after = unwritten_bytes(storage).expect("fiemap");
    assert_eq!(after, 0, "{after} bytes of the committed layer not on disk");
}

/// A file driver's case: the file lives in the snapshot's directory.
fn file_driver<D: Driver>(
    test: &str,
    opener: fn(&DriverConfig<'_>) -> strata_driver_api::Result<D>,
    dir: fn(&D) -> PathBuf,
) {
    if !require_root(test) {
        return;
    }
    let scratch = ScratchDir::new(test);
    let driver = open(opener, &scratch.path().join("home"));
    driver
        .create(active(), &CreateOptions::default())
        .expect("create");
    let file = dir(&driver).join("blob");
    written_then_committed(&driver, &file, &file);
}

#[cfg(feature = "vfs")]
#[test]
fn vfs_commit_writes_the_layer_to_disk() {
    file_driver("vfs_commit_durable", strata_vfs::VfsDriver::open, |d| {
        d.snapshot_dir(ID)
    });
}

#[cfg(feature = "overlay2")]
#[test]
fn overlay2_commit_writes_the_layer_to_disk() {
    file_driver(
        "overlay2_commit_durable",
        strata_overlay2::Overlay2Driver::open,
        |d| d.layer_dir(ID),
    );
}

#[cfg(feature = "btrfs")]
#[test]
fn btrfs_commit_writes_the_layer_to_disk() {
    if !require_program("btrfs_commit_durable", "mkfs.btrfs") {
        return;
    }
    file_driver(
        "btrfs_commit_durable",
        strata_btrfs::BtrfsDriver::open,
        |d| d.subvolume_path(ID),
    );
}

/// Block drivers need no flush at commit: unmounting the image's
/// filesystem (containerd unmounts before Commit) flushes it, and the loop
/// device turns that flush into an fsync of the image file. This checks
/// that nothing of the image is left in the page cache then.
#[cfg(feature = "blockfile")]
#[test]
fn blockfile_image_is_on_disk_once_unmounted() {
    let test = "blockfile_commit_durable";
    if !require_root(test) || !require_program(test, "mkfs.xfs") {
        return;
    }
    let fs = LoopFs::new("xfs", 8 << 30, &["-m", "reflink=1"]).expect("xfs loop filesystem");
    let driver = open(
        strata_blockfile::BlockfileDriver::open,
        &fs.path().join("home"),
    );
    driver
        .create(active(), &CreateOptions::default())
        .expect("create");
    let mnt = fs.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mkdir mnt");
    mount_all(&driver.mounts(active()).expect("mounts"), &mnt).expect("mount");
    let file = mnt.join("blob");
    std::fs::write(&file, vec![7u8; 4 << 20]).expect("write");
    assert!(
        unwritten_bytes(&file).expect("fiemap") > 0,
        "precondition: the write should be in the page cache"
    );
    unmount(&mnt).expect("unmount");
    driver.commit(committed()).expect("commit");
    let image = driver.image_path(ID);
    let after = unwritten_bytes(&image).expect("fiemap");
    assert_eq!(after, 0, "{after} bytes of the committed image not on disk");
}

/// A layer's kept tar (what `save` writes, byte for byte) is on disk
/// before the image naming it is recorded: after a power loss the record
/// stays, and a kept tar left empty or torn in the page cache made every
/// later `save` of the image fail its diff id check. Blockfile on ext4
/// keeps its images in a loop-mounted xfs, so the layer's sync does not
/// reach the root's filesystem: only the tar's own sync can.
#[cfg(feature = "blockfile")]
#[test]
fn kept_layer_tar_is_on_disk_once_its_image_is_recorded() {
    let test = "kept_tar_durable";
    if !require_root(test) || !require_program(test, "mkfs.xfs") {
        return;
    }
    let fs = LoopFs::new("ext4", 8 << 30, &[]).expect("ext4 loop filesystem");
    let root = fs.path().join("store");
    common::strata_ok(&root, &["--driver", "blockfile", "init"]);
    let tar = fs.path().join("layer.tar");
    std::fs::write(
        &tar,
        common::RawTar::new()
            .file("blob", &vec![7u8; 4 << 20])
            .finish(),
    )
    .expect("write tar");
    std::fs::File::open(&tar)
        .and_then(|f| f.sync_all())
        .expect("sync tar");
    common::strata_ok(&root, &["import", tar.to_str().unwrap(), "durable"]);
    let kept: Vec<PathBuf> = std::fs::read_dir(root.join("layer-tars"))
        .expect("list kept tars")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(kept.len(), 1, "one kept tar: {kept:?}");
    let after = unwritten_bytes(&kept[0]).expect("fiemap");
    common::strata_ok(&root, &["rmi", "durable"]);
    common::strata_ok(&root, &["release"]);
    assert_eq!(after, 0, "{after} bytes of the kept tar not on disk");
}
