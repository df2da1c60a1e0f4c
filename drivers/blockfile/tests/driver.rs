//! Host tests of what is particular to blockfile: O(1) reflink prepare,
//! FIEMAP usage, growing images, backing choice and cleanup of loop devices.
//! Run as root: `cargo test -p strata-blockfile --test driver -- --nocapture`.

mod common;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::Mounted;
use strata_blockfile::{fiemap, supports_reflink, BlockfileDriver};
use strata_driver_api::mount::loops_backed_by;
use strata_driver_api::testing::ScratchDir;
use strata_driver_api::{CreateOptions, Driver, Error, Kind, SnapshotId, Target};

const MIB: u64 = 1 << 20;

fn target(id: u64, kind: Kind, parents: &[SnapshotId]) -> Target<'_> {
    Target {
        id: SnapshotId(id),
        kind,
        parents,
    }
}

/// Creates active `id`, lets `fill` write into its mounted tree, commits it.
fn layer(
    d: &BlockfileDriver,
    scratch: &ScratchDir,
    id: u64,
    parents: &[SnapshotId],
    fill: impl FnOnce(&Path),
) {
    let t = target(id, Kind::Active, parents);
    d.create(t, &CreateOptions::default()).expect("create");
    {
        let m = Mounted::new(&d.mounts(t).expect("mounts"), scratch, &format!("m{id}"));
        fill(m.path());
    }
    d.commit(target(id, Kind::Committed, parents))
        .expect("commit");
}

/// Times creating active `id` on top of committed `parent`.
fn time_prepare(d: &BlockfileDriver, id: u64, parent: &[SnapshotId]) -> Duration {
    let start = Instant::now();
    d.create(target(id, Kind::Active, parent), &CreateOptions::default())
        .expect("prepare");
    start.elapsed()
}

/// Bytes mapped in `path`, and how many of them FIEMAP reports unshared.
fn mapped(path: &Path) -> (u64, u64) {
    let extents = fiemap(&File::open(path).expect("open image")).expect("fiemap");
    let total = extents.iter().map(|e| e.length).sum();
    let unshared = extents.iter().filter(|e| !e.shared).map(|e| e.length).sum();
    (total, unshared)
}

#[test]
fn prepare_time_does_not_depend_on_image_size() {
    if !common::prerequisites("prepare_time_does_not_depend_on_image_size") {
        return;
    }
    let fs = common::loop_fs("xfs", 4 << 30);
    let scratch = ScratchDir::new("blockfile-prepare");
    let mut times = Vec::new();
    for (name, size) in [("small", "10M"), ("big", "1G")] {
        let d = common::open_driver(fs.path(), name, &[("size", size)]);
        let start = Instant::now();
        layer(&d, &scratch, 1, &[], |root| {
            std::fs::write(root.join("data"), vec![7u8; 4 << 20]).expect("write");
        });
        println!(
            "first base layer on {size} (mkfs scratch, clone, mount, 4 MiB write, commit): {:?}",
            start.elapsed()
        );
        let parent = [SnapshotId(1)];
        let elapsed = time_prepare(&d, 2, &parent);
        let (total, unshared) = mapped(&d.image_path(SnapshotId(2)));
        let (parent_total, _) = mapped(&d.image_path(SnapshotId(1)));
        println!(
            "prepare on a {size} image: {elapsed:?}; clone maps {} KiB, {} KiB unshared",
            total / 1024,
            unshared / 1024
        );
        assert_eq!(unshared, 0, "{size}: the clone must share every extent");
        assert_eq!(
            total, parent_total,
            "{size}: the clone maps what its parent maps"
        );
        let usage = d.usage(target(2, Kind::Active, &parent)).expect("usage");
        assert_eq!(usage.size, 0, "{size}: a fresh clone owns nothing");
        times.push(elapsed);
    }
    let (small, big) = (times[0], times[1]);
    assert!(
        big < small * 10 + Duration::from_millis(50),
        "prepare on 1G took {big:?}, on 10M {small:?}: not a reflink"
    );
}

#[test]
fn small_write_into_big_lower_file_adds_few_unshared_blocks() {
    // xfs clears up to 2 MiB of its log ahead of the head on every
    // read-write mount (xlog_clear_stale_blocks: 8 iclogs of 256 KiB), so
    // a clone it mounted owns that much more than ext4's.
    for (image_fs, mount_cost) in [("ext4", 0), ("xfs", 2 * MIB)] {
        small_write_adds_few_unshared_blocks(image_fs, mount_cost);
    }
}

fn small_write_adds_few_unshared_blocks(image_fs: &str, mount_cost: u64) {
    let test = "small_write_into_big_lower_file_adds_few_unshared_blocks";
    if !common::prerequisites(test) {
        return;
    }
    let fs = common::loop_fs("xfs", 4 << 30);
    let scratch = ScratchDir::new("blockfile-usage");
    let d = common::open_driver(fs.path(), "home", &[("size", "1G"), ("fs", image_fs)]);
    let big = 128 * MIB;
    layer(&d, &scratch, 1, &[], |root| {
        let mut f = File::create(root.join("big")).expect("create");
        let chunk: Vec<u8> = (0..MIB).map(|i| (i % 253) as u8).collect();
        for _ in 0..big / MIB {
            f.write_all(&chunk).expect("write");
        }
        f.sync_all().expect("fsync");
    });
    let parent = [SnapshotId(1)];
    let parent_usage = d.usage(target(1, Kind::Committed, &[])).expect("usage");
    let child = target(2, Kind::Active, &parent);
    d.create(child, &CreateOptions::default()).expect("prepare");
    {
        let m = Mounted::new(&d.mounts(child).expect("mounts"), &scratch, "child");
        let f = OpenOptions::new()
            .write(true)
            .open(m.path().join("big"))
            .expect("open big");
        f.write_all_at(&[0xAB; 4096], big / 2).expect("write 4 KiB");
        f.sync_all().expect("fsync");
    }
    let usage = d.usage(child).expect("usage").size;
    let parent_after = d.usage(target(1, Kind::Committed, &[])).expect("usage");
    assert_eq!(
        parent_after, parent_usage,
        "a child's clone must not change what the parent owns"
    );
    println!(
        "{image_fs}: parent with a {} MiB file owns {} KiB; a 4 KiB write in the child owns {} KiB",
        big / MIB,
        parent_usage.size / 1024,
        usage / 1024
    );
    assert!(parent_usage.size >= big, "parent usage {parent_usage:?}");
    assert!(usage >= 4096, "the written block must count: {usage}");
    assert!(
        usage <= 512 * 1024 + mount_cost,
        "{image_fs}: 4 KiB write unshared {usage} bytes"
    );
}

#[test]
fn remove_leaves_no_loop_device_or_image() {
    if !common::prerequisites("remove_leaves_no_loop_device_or_image") {
        return;
    }
    let fs = common::loop_fs("xfs", 2 << 30);
    let scratch = ScratchDir::new("blockfile-remove");
    let d = common::open_driver(fs.path(), "home", &[("size", "64M")]);
    layer(&d, &scratch, 1, &[], |root| {
        std::fs::write(root.join("f"), "base").expect("write");
    });
    let parent = [SnapshotId(1)];
    let view = target(2, Kind::View, &parent);
    d.create(view, &CreateOptions::default()).expect("view");
    let img = d.image_path(SnapshotId(2));
    let m = Mounted::new(&d.mounts(view).expect("mounts"), &scratch, "view");
    assert_eq!(loops_backed_by(&img).len(), 1, "mounted view has one loop");
    match d.remove(SnapshotId(2)) {
        Err(Error::FailedPrecondition(msg)) => println!("remove while mounted: {msg}"),
        other => panic!("remove of a mounted image must refuse, got {other:?}"),
    }
    drop(m);
    assert_eq!(loops_backed_by(&img), Vec::<std::path::PathBuf>::new());
    d.remove(SnapshotId(2)).expect("remove");
    d.remove(SnapshotId(2)).expect("remove again (idempotent)");
    d.remove(SnapshotId(1)).expect("remove parent");
    assert!(!img.exists() && !d.image_path(SnapshotId(1)).exists());
    assert_eq!(d.stored_ids().expect("ids"), Vec::<SnapshotId>::new());
    let losetup = std::process::Command::new("losetup")
        .arg("-a")
        .output()
        .expect("losetup -a");
    let listing = String::from_utf8_lossy(&losetup.stdout);
    assert!(
        !listing.contains(&*d.store().join("images").to_string_lossy()),
        "loop device left: {listing}"
    );
}

#[test]
fn per_snapshot_size_grows_image_and_filesystem() {
    if !common::prerequisites("per_snapshot_size_grows_image_and_filesystem") {
        return;
    }
    let fs = common::loop_fs("xfs", 4 << 30);
    let scratch = ScratchDir::new("blockfile-grow");
    // (fs, default size, grown size, a base size below the default or equal for xfs' 300M minimum)
    let cases = [
        ("ext4", "64M", 256 * MIB, 32 * MIB),
        ("xfs", "320M", 640 * MIB, 320 * MIB),
    ];
    for (fstype, base, grown, smaller) in cases {
        let d = common::open_driver(fs.path(), fstype, &[("fs", fstype), ("size", base)]);
        layer(&d, &scratch, 1, &[], |root| {
            std::fs::write(root.join("kept"), fstype).expect("write");
        });
        let parent = [SnapshotId(1)];
        let t = target(2, Kind::Active, &parent);
        let opts = CreateOptions {
            size: Some(grown),
            ..CreateOptions::default()
        };
        d.create(t, &opts).expect("create with size");
        let img = d.image_path(SnapshotId(2));
        assert_eq!(std::fs::metadata(&img).expect("stat").len(), grown);
        let m = Mounted::new(
            &d.mounts(t).expect("mounts"),
            &scratch,
            &format!("g{fstype}"),
        );
        let st = nix::sys::statvfs::statvfs(m.path()).expect("statvfs");
        let fs_bytes = st.blocks() as u64 * st.fragment_size() as u64;
        println!(
            "{fstype}: grown image {} MiB, filesystem {} MiB",
            grown / MIB,
            fs_bytes / MIB
        );
        assert!(
            fs_bytes > grown * 3 / 4,
            "{fstype} filesystem not grown: {fs_bytes}"
        );
        assert_eq!(
            std::fs::read_to_string(m.path().join("kept")).expect("read"),
            fstype
        );
        drop(m);
        let shrink = CreateOptions {
            size: Some(MIB),
            ..CreateOptions::default()
        };
        let small = d.create(target(3, Kind::Active, &parent), &shrink);
        assert!(matches!(small, Err(Error::InvalidArgument(_))), "{small:?}");
        d.remove(SnapshotId(3)).expect("remove failed create");
        for (id, size) in [(4, grown), (5, smaller)] {
            let base = target(id, Kind::Active, &[]);
            let opts = CreateOptions {
                size: Some(size),
                ..CreateOptions::default()
            };
            d.create(base, &opts).expect("base with size");
            let m = Mounted::new(
                &d.mounts(base).expect("mounts"),
                &scratch,
                &format!("b{id}"),
            );
            let names: Vec<_> = std::fs::read_dir(m.path()).expect("ls").collect();
            assert!(
                names.is_empty(),
                "{fstype} base {size}: not empty: {names:?}"
            );
            let st = nix::sys::statvfs::statvfs(m.path()).expect("statvfs");
            let fs_bytes = st.blocks() as u64 * st.fragment_size() as u64;
            assert!(
                fs_bytes > size * 3 / 4 && fs_bytes <= size,
                "{fstype}: {fs_bytes} for {size}"
            );
        }
        let tmp = d.store().join("tmp");
        let left: Vec<_> = std::fs::read_dir(&tmp).expect("list tmp").collect();
        assert!(left.is_empty(), "private resize mounts left: {left:?}");
    }
}

#[test]
fn home_without_reflink_gets_a_loop_xfs_backing() {
    if !common::prerequisites("home_without_reflink_gets_a_loop_xfs_backing") {
        return;
    }
    let ext4 = common::loop_fs("ext4", 2 << 30);
    let xfs = common::loop_fs("xfs", 1 << 30);
    assert!(!supports_reflink(ext4.path()), "ext4 cannot reflink");
    assert!(supports_reflink(xfs.path()), "xfs reflink=1 can");
    let scratch = ScratchDir::new("blockfile-backing");
    let opts = [("size", "64M"), ("backing_size", "1G")];
    let d = common::open_driver(ext4.path(), "home", &opts);
    let store = ext4.path().join("home/store");
    assert_eq!(d.store(), store);
    assert!(strata_driver_api::mount::is_mountpoint(&store).expect("mountinfo"));
    let status = d.status();
    println!("status: {status:?}");
    assert!(status
        .iter()
        .any(|(k, v)| k == "backing" && v.contains("loop-mounted xfs")));
    layer(&d, &scratch, 1, &[], |root| {
        std::fs::write(root.join("f"), "kept").expect("write");
    });
    d.release().expect("release");
    assert!(!strata_driver_api::mount::is_mountpoint(&store).expect("mountinfo"));
    assert!(loops_backed_by(&ext4.path().join("home/backing.img")).is_empty());

    let d = common::open_driver(ext4.path(), "home", &opts);
    assert_eq!(d.stored_ids().expect("ids"), vec![SnapshotId(1)]);
    let parent = [SnapshotId(1)];
    let t = target(2, Kind::View, &parent);
    d.create(t, &CreateOptions::default())
        .expect("view after reopen");
    let m = Mounted::new(&d.mounts(t).expect("mounts"), &scratch, "view");
    assert_eq!(
        std::fs::read_to_string(m.path().join("f")).expect("read"),
        "kept"
    );
    let err = d
        .release()
        .expect_err("release while a view is mounted")
        .to_string();
    assert!(
        err.contains("backing.img") && err.contains("images/2.img"),
        "the error names the backing and the view's image holding it: {err}"
    );
    assert!(
        strata_driver_api::mount::is_mountpoint(&store).expect("mountinfo"),
        "a busy backing must stay mounted"
    );
    assert_eq!(
        loops_backed_by(&ext4.path().join("home/backing.img")).len(),
        1,
        "a busy backing stays attached"
    );
    drop(m);
    d.release().expect("release");
    assert!(!strata_driver_api::mount::is_mountpoint(&store).expect("mountinfo"));
}

#[test]
fn direct_store_without_reflink_copies_and_says_so() {
    if !common::prerequisites("direct_store_without_reflink_copies_and_says_so") {
        return;
    }
    let ext4 = common::loop_fs("ext4", 1 << 30);
    let scratch = ScratchDir::new("blockfile-copy");
    let d = common::open_driver(
        ext4.path(),
        "home",
        &[("size", "32M"), ("backing", "direct")],
    );
    layer(&d, &scratch, 1, &[], |root| {
        std::fs::write(root.join("f"), "copied").expect("write");
    });
    let parent = [SnapshotId(1)];
    let t = target(2, Kind::Active, &parent);
    d.create(t, &CreateOptions::default())
        .expect("prepare by copy");
    let status = d.status();
    println!("status: {status:?}");
    assert!(status
        .iter()
        .any(|(k, v)| k == "clone" && v.contains("sparse copy")));
    let m = Mounted::new(&d.mounts(t).expect("mounts"), &scratch, "copy");
    assert_eq!(
        std::fs::read_to_string(m.path().join("f")).expect("read"),
        "copied"
    );
    drop(m);
    let (total, _) = mapped(&d.image_path(SnapshotId(2)));
    assert!(
        total < 32 * MIB,
        "copy must stay sparse: {total} bytes mapped"
    );
}

/// Usage counts the inodes a snapshot's image holds beyond its parent's,
/// from statfs while it is mounted and from the superblock once it is not,
/// for both image filesystems.
#[test]
fn inodes_come_from_statfs_or_the_superblock() {
    let test = "inodes_come_from_statfs_or_the_superblock";
    if !common::prerequisites(test) {
        return;
    }
    let fs = common::loop_fs("xfs", 4 << 30);
    for image_fs in ["ext4", "xfs"] {
        let scratch = ScratchDir::new(&format!("blockfile-inodes-{image_fs}"));
        let d = common::open_driver(fs.path(), image_fs, &[("size", "512M"), ("fs", image_fs)]);
        layer(&d, &scratch, 1, &[], |root| {
            for f in 0..100 {
                std::fs::write(root.join(format!("f{f}")), b"base").expect("write");
            }
        });
        let base = d.usage(target(1, Kind::Committed, &[])).expect("usage");
        assert_eq!(base.inodes, 100, "{image_fs} base: {base:?}");
        let parent = [SnapshotId(1)];
        let child = target(2, Kind::Active, &parent);
        d.create(child, &CreateOptions::default()).expect("prepare");
        {
            let m = Mounted::new(&d.mounts(child).expect("mounts"), &scratch, "child");
            for f in 0..10 {
                std::fs::write(m.path().join(format!("new{f}")), b"x").expect("write");
            }
            let mounted = d.usage(child).expect("usage while mounted");
            assert_eq!(mounted.inodes, 10, "{image_fs} mounted child: {mounted:?}");
        }
        let unmounted = d.usage(child).expect("usage");
        assert_eq!(
            unmounted.inodes, 10,
            "{image_fs} unmounted child: {unmounted:?}"
        );
        d.remove(SnapshotId(2)).expect("remove child");
        d.remove(SnapshotId(1)).expect("remove base");
        d.release().expect("release");
    }
}
