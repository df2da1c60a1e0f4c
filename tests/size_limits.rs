//! Size limits, per driver: `strata create --size` is enforced (a write past
//! the limit fails) or refused with a clear error, `--size 0` is refused,
//! and containerd's `containerd.io/snapshot/max-size` hint on Prepare is
//! enforced where the driver can and recorded as unenforced elsewhere.

mod common;

use std::io::Write;
use std::path::Path;

use common::*;
use strata::snapshotter::{Snapshotter, SnapshotterExt};
use strata::Store;
use strata_driver_api::testing::{require_program, require_root, skip, LoopFs, ScratchDir};
use strata_driver_api::{Labels, LABEL_MAX_SIZE, LABEL_SIZE_UNENFORCED};

const MIB: u64 = 1 << 20;
/// The limit asked for.
const LIMIT: u64 = 16 * MIB;

/// [`fill_as_root`] on a thread without CAP_SYS_RESOURCE, as a container's
/// processes run: with it, ext4 lets root past project quota limits
/// (overlayfs drops it for its own upper-layer writes, a bind mount does not).
fn fill(dir: &Path) -> (u64, Option<std::io::Error>) {
    std::thread::scope(|s| {
        s.spawn(|| {
            drop_sys_resource();
            fill_as_root(dir)
        })
        .join()
        .expect("fill thread")
    })
}

/// Clears CAP_SYS_RESOURCE from this thread's effective capabilities.
fn drop_sys_resource() {
    const VERSION_3: u32 = 0x2008_0522;
    const CAP_SYS_RESOURCE: u32 = 24;
    let mut header = [VERSION_3, 0u32];
    let mut data = [0u32; 6];
    // SAFETY: capget/capset with a v3 header (version, pid 0 = this thread)
    // and the two-element `struct __user_cap_data_struct` array they use.
    unsafe {
        assert_eq!(
            libc::syscall(libc::SYS_capget, header.as_mut_ptr(), data.as_mut_ptr()),
            0
        );
        data[0] &= !(1 << CAP_SYS_RESOURCE);
        assert_eq!(
            libc::syscall(libc::SYS_capset, header.as_mut_ptr(), data.as_ptr()),
            0
        );
    }
}

/// Writes 1 MiB chunks into `dir/fill` until a write fails or twice the
/// limit is written; returns the bytes written and the error, if any.
fn fill_as_root(dir: &Path) -> (u64, Option<std::io::Error>) {
    let path = dir.join("fill");
    let mut file = std::fs::File::create(&path).expect("create fill file");
    let chunk = vec![0x5au8; MIB as usize];
    let mut written = 0;
    while written < 2 * LIMIT {
        if let Err(e) = file.write_all(&chunk).and_then(|()| file.sync_data()) {
            return (written, Some(e));
        }
        written += MIB;
    }
    (written, None)
}

/// Asserts that `dir` takes a good part of the limit and nothing much past it.
fn assert_enforced(what: &str, dir: &Path) {
    let (written, error) = fill(dir);
    let error = error
        .unwrap_or_else(|| panic!("{what}: {written} bytes written past a {LIMIT}-byte limit"));
    let code = error.raw_os_error();
    assert!(
        code == Some(libc::ENOSPC) || code == Some(libc::EDQUOT),
        "{what}: write failed with {error}, not ENOSPC/EDQUOT"
    );
    assert!(
        written >= LIMIT / 4,
        "{what}: only {written} bytes fit under {LIMIT}"
    );
    eprintln!("{what}: {written} bytes written, then {error}");
}

/// A store for `driver` at `root`, made through the CLI with `options`.
fn init(root: &Path, driver: &str, options: &[&str]) -> bool {
    let mut args = vec!["--driver", driver, "init"];
    for option in options {
        args.extend(["--opt", option]);
    }
    let out = strata(root, &args);
    if !out.status.success() {
        skip(
            &format!("size_limits::{driver}"),
            &String::from_utf8_lossy(&out.stderr),
        );
    }
    out.status.success()
}

/// The image every case creates containers from.
fn import(scratch: &ScratchDir, root: &Path) {
    let tar = scratch.path().join("busybox.tar");
    busybox_rootfs_tar(&tar, "size limits\n");
    strata_ok(root, &["import", tar.to_str().unwrap(), "demo/busybox"]);
}

/// `create --size` on a driver that enforces it, then the max-size hint.
fn enforced(driver: &str, root: &Path, scratch: &ScratchDir) {
    import(scratch, root);
    let err = strata_err(root, &["create", "--size", "0", "demo/busybox"]);
    assert!(err.contains("size limit must be above 0"), "{err}");
    let limit = LIMIT.to_string();
    let id = last_line(&strata_ok(
        root,
        &["create", "--size", &limit, "demo/busybox"],
    ));
    let dir = last_line(&strata_ok(root, &["mount", &id]));
    assert_enforced(&format!("{driver} create --size"), Path::new(&dir));
    strata_ok(root, &["umount", &id]);
    strata_ok(root, &["rm", &id]);

    let store = Store::open(root).expect("open store");
    let key = "default/1/max-size".into();
    let labels = Labels::from([(LABEL_MAX_SIZE.to_owned(), limit)]);
    let mounts = store
        .snapshots()
        .prepare(&key, None, labels)
        .expect("prepare");
    let info = store.snapshots().stat(&key).expect("stat");
    assert!(!info.labels.contains_key(LABEL_SIZE_UNENFORCED), "{info:?}");
    let target = scratch.path().join("hint");
    std::fs::create_dir(&target).unwrap();
    strata_driver_api::mount::mount_all(&mounts, &target).expect("mount");
    assert_enforced(&format!("{driver} {LABEL_MAX_SIZE}"), &target);
    strata_driver_api::mount::unmount(&target).expect("unmount");
    store.snapshots().remove(&key).expect("remove");
    drop(store);
    strata_ok(root, &["release"]);
}

/// `create --size` refused on a driver that cannot enforce it; the hint
/// accepted and labelled.
fn refused(driver: &str, root: &Path, scratch: &ScratchDir) {
    import(scratch, root);
    let err = strata_err(root, &["create", "--size", "2M", "demo/busybox"]);
    assert!(err.contains("cannot enforce a size limit"), "{err}");
    assert!(err.contains(driver), "{err}");
    let ps = strata_ok(root, &["--format", "json", "ps"]);
    assert_eq!(ps.trim(), "[]", "a refused create left a container");
    let err = strata_err(root, &["create", "--size", "0", "demo/busybox"]);
    assert!(err.contains("size limit must be above 0"), "{err}");

    let store = Store::open(root).expect("open store");
    let key = "default/1/max-size".into();
    let labels = Labels::from([(LABEL_MAX_SIZE.to_owned(), LIMIT.to_string())]);
    store
        .snapshots()
        .prepare(&key, None, labels)
        .expect("prepare");
    let info = store.snapshots().stat(&key).expect("stat");
    assert_eq!(
        info.labels.get(LABEL_SIZE_UNENFORCED),
        Some(&LIMIT.to_string()),
        "{info:?}"
    );
    store.snapshots().remove(&key).expect("remove");
}

/// Runs the case for `driver`, its store made with `options` (images
/// smaller than the limit where a snapshot cannot be smaller than its parent).
fn case(driver: &str, options: &[&str], enforces: bool) {
    if !require_root(&format!("size_limits::{driver}")) {
        return;
    }
    let scratch = ScratchDir::new(&format!("size-{driver}"));
    let root = scratch.path().join("store");
    if !init(&root, driver, options) {
        return;
    }
    if enforces {
        enforced(driver, &root, &scratch);
    } else {
        refused(driver, &root, &scratch);
    }
}

#[test]
fn vfs_refuses_sizes() {
    case("vfs", &[], false);
}

#[test]
fn btrfs_enforces_sizes_with_qgroups() {
    case("btrfs", &[], true);
}

#[test]
fn blockfile_enforces_sizes_with_image_sizes() {
    case("blockfile", &["blockfile.size=8M"], true);
}

#[test]
#[ignore = "needs dm-thin: runs in the VM tier"]
fn devmapper_enforces_sizes_with_thin_sizes() {
    case("devmapper", &["dm.basesize=16M"], true);
}

/// overlay2 where the backing filesystem has no project quotas (the
/// scratch directory's own filesystem must not be xfs with prjquota).
#[test]
fn overlay2_without_project_quotas_refuses_sizes() {
    case("overlay2", &[], false);
}

/// overlay2 on a loop xfs mounted with `prjquota`: limits are project
/// quotas, and usage (with inodes) comes from the quota counters.
#[test]
#[ignore = "needs xfs/ext4 project quotas, absent from the host kernel: runs in the VM tier"]
fn overlay2_enforces_sizes_with_xfs_project_quotas() {
    overlay2_project_quotas("xfs", &[]);
}

/// The same on ext4 made with the `project` and `quota` features.
#[test]
#[ignore = "needs xfs/ext4 project quotas, absent from the host kernel: runs in the VM tier"]
fn overlay2_enforces_sizes_with_ext4_project_quotas() {
    overlay2_project_quotas("ext4", &["-O", "quota,project"]);
}

fn overlay2_project_quotas(fstype: &str, mkfs_args: &[&str]) {
    let test = format!("size_limits::overlay2_{fstype}_prjquota");
    if !require_root(&test) || !require_program(&test, &format!("mkfs.{fstype}")) {
        return;
    }
    let options = ["prjquota".to_owned()];
    let backing = match LoopFs::with_mount_options(fstype, 512 * MIB, mkfs_args, &options) {
        Ok(fs) => fs,
        Err(e) => {
            // Debian's kernels have XFS quotas; some others are built without.
            skip(
                &test,
                &format!("no {fstype} mounted with prjquota here: {e}"),
            );
            return;
        }
    };
    let scratch = ScratchDir::new(&format!("size-overlay2-{fstype}"));
    let root = backing.path().join("store");
    assert!(init(&root, "overlay2", &[]));
    let info = strata_ok(&root, &["info"]);
    assert!(info.contains("project quotas"), "{info}");
    enforced(&format!("overlay2 on {fstype}"), &root, &scratch);
    usage_from_quota(&root, fstype);
}

/// A container's usage and inodes, read from its project's counters.
fn usage_from_quota(root: &Path, fstype: &str) {
    let id = last_line(&strata_ok(root, &["create", "demo/busybox"]));
    let dir = last_line(&strata_ok(root, &["mount", &id]));
    for i in 0..10 {
        std::fs::write(format!("{dir}/f{i}"), vec![1u8; 100_000]).unwrap();
    }
    let store = Store::open(root).expect("open store");
    let key = store
        .snapshots()
        .list(&[format!("labels.\"strata.io/container\"=={id}")])
        .expect("list")
        .pop()
        .expect("the container's snapshot")
        .name;
    let usage = store.snapshots().usage(&key).expect("usage");
    assert!(usage.inodes >= 10, "{usage:?}");
    assert!(usage.size >= 1_000_000, "{usage:?}");
    eprintln!("overlay2 on {fstype} prjquota, 10 files of 100 kB: {usage:?}");
    drop(store);
    strata_ok(root, &["umount", &id]);
    strata_ok(root, &["rm", &id]);
    strata_ok(root, &["release"]);
}
