//! btrfs-specific behaviour: copy-on-write at block level seen in btrfs' own
//! accounting, size limits, cleanup of subvolumes and qgroups, reopening.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use strata_btrfs::{pending, sys, BtrfsDriver, QuotaMode};
use strata_driver_api::mount::{mount_all, run, unmount};
use strata_driver_api::testing::{require_program, require_root, ScratchDir};
use strata_driver_api::{CreateOptions, Driver, DriverConfig, Kind, SnapshotId, Target};

struct Setup {
    driver: BtrfsDriver,
    scratch: ScratchDir,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = self.driver.release();
    }
}

fn setup(test: &str, opts: &[(&str, &str)]) -> Option<Setup> {
    if !require_root(test) || !require_program(test, "mkfs.btrfs") {
        return None;
    }
    let scratch = ScratchDir::new(&format!("btrfs-{test}"));
    let home = scratch.path().join("home");
    std::fs::create_dir(&home).expect("mkdir home");
    let mut options: BTreeMap<String, String> = opts
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    options
        .entry("btrfs.size".into())
        .or_insert_with(|| "2G".into());
    let driver = BtrfsDriver::open(&DriverConfig {
        home: &home,
        options: &options,
    })
    .expect("open btrfs driver");
    Some(Setup { driver, scratch })
}

fn target(id: u64, kind: Kind, parents: &[SnapshotId]) -> Target<'_> {
    Target {
        id: SnapshotId(id),
        kind,
        parents,
    }
}

/// Mounts snapshot `t` through its mount specs at a fresh directory.
fn mount(s: &Setup, t: Target<'_>, name: &str) -> PathBuf {
    let dir = s.scratch.path().join(name);
    std::fs::create_dir_all(&dir).expect("mkdir mount point");
    mount_all(&s.driver.mounts(t).expect("mounts"), &dir).expect("mount");
    dir
}

fn pattern_chunk(i: usize) -> Vec<u8> {
    let mut chunk = vec![(i % 251) as u8; 1 << 20];
    chunk[..8].copy_from_slice(&(i as u64).to_le_bytes());
    chunk
}

fn write_pattern(path: &Path, size: usize) {
    let mut f = File::create(path).expect("create");
    for i in 0..size >> 20 {
        f.write_all(&pattern_chunk(i)).expect("write");
    }
    f.sync_all().expect("fsync");
}

fn pattern_intact(path: &Path, size: usize) -> bool {
    let mut f = File::open(path).expect("open");
    let mut buf = vec![0u8; 1 << 20];
    for i in 0..size >> 20 {
        f.read_exact(&mut buf).expect("read");
        if buf != pattern_chunk(i) {
            return false;
        }
    }
    f.read(&mut buf).expect("read") == 0
}

#[test]
fn small_write_into_big_lower_file_is_not_a_copy_up_simple_quotas() {
    small_write_into_big_lower_file("cow_simple", "on", QuotaMode::Simple);
}

#[test]
fn small_write_into_big_lower_file_is_not_a_copy_up_qgroups() {
    small_write_into_big_lower_file("cow_qgroups", "qgroups", QuotaMode::Full);
}

fn small_write_into_big_lower_file(test: &str, quota: &str, mode: QuotaMode) {
    let Some(s) = setup(test, &[("btrfs.quota", quota)]) else {
        return;
    };
    assert_eq!(s.driver.quota_mode(), mode);
    let none = CreateOptions::default();
    let base = [SnapshotId(1)];
    s.driver
        .create(target(1, Kind::Active, &[]), &none)
        .expect("create base");
    let lower = mount(&s, target(1, Kind::Active, &[]), "base");
    write_pattern(&lower.join("big"), 256 << 20);
    unmount(&lower).expect("unmount base");
    s.driver
        .commit(target(1, Kind::Committed, &[]))
        .expect("commit");

    let parent_file = s.driver.subvolume_path(SnapshotId(1)).join("big");
    assert!(pattern_intact(&parent_file, 256 << 20));
    let parent_before = s
        .driver
        .qgroup_info(SnapshotId(1))
        .expect("qgroup")
        .expect("numbers");

    s.driver
        .create(target(2, Kind::Active, &base), &none)
        .expect("create child");
    let child_before = s
        .driver
        .qgroup_info(SnapshotId(2))
        .expect("qgroup")
        .expect("numbers");
    let upper = mount(&s, target(2, Kind::Active, &base), "child");
    let f = OpenOptions::new()
        .write(true)
        .open(upper.join("big"))
        .expect("open big");
    f.write_all_at(&[0xAB; 4096], 100 << 20)
        .expect("write 4 KiB");
    f.sync_all().expect("fsync");
    drop(f);
    unmount(&upper).expect("unmount child");

    let child_after = s
        .driver
        .qgroup_info(SnapshotId(2))
        .expect("qgroup")
        .expect("numbers");
    let parent_after = s
        .driver
        .qgroup_info(SnapshotId(1))
        .expect("qgroup")
        .expect("numbers");
    let grew = child_after.exclusive - child_before.exclusive;
    eprintln!(
        "mode {:?}: child exclusive {} -> {} (+{grew}); parent {:?} -> {:?}",
        s.driver.quota_mode(),
        child_before.exclusive,
        child_after.exclusive,
        parent_before,
        parent_after
    );
    assert!(grew >= 4096, "the 4 KiB write must be charged to the child");
    assert!(
        grew < 1 << 20,
        "child grew by {grew} bytes for a 4 KiB write: a copy-up"
    );
    assert_eq!(parent_after.referenced, parent_before.referenced);
    assert!(
        pattern_intact(&parent_file, 256 << 20),
        "parent data changed"
    );
    let usage = s
        .driver
        .usage(target(2, Kind::Active, &base))
        .expect("usage");
    assert_eq!(usage.size, child_after.exclusive);
}

#[test]
fn size_limit_fails_writes_with_edquot_simple_quotas() {
    size_limit_fails_writes_with_edquot("size_simple", "on");
}

#[test]
fn size_limit_fails_writes_with_edquot_qgroups() {
    size_limit_fails_writes_with_edquot("size_qgroups", "qgroups");
}

fn size_limit_fails_writes_with_edquot(test: &str, quota: &str) {
    let Some(s) = setup(test, &[("btrfs.quota", quota)]) else {
        return;
    };
    let limited = CreateOptions {
        size: Some(16 << 20),
        ..CreateOptions::default()
    };
    s.driver
        .create(target(1, Kind::Active, &[]), &limited)
        .expect("create limited");
    let dir = mount(&s, target(1, Kind::Active, &[]), "limited");
    let mut f = File::create(dir.join("fill")).expect("create");
    let chunk = vec![1u8; 1 << 20];
    let mut err = None;
    for _ in 0..64 {
        if let Err(e) = f.write_all(&chunk).and_then(|()| f.sync_data()) {
            err = Some(e);
            break;
        }
    }
    drop(f);
    unmount(&dir).expect("unmount");
    let err = err.expect("writing 64 MiB into a 16 MiB snapshot must fail");
    assert_eq!(err.raw_os_error(), Some(libc::EDQUOT), "{err}");

    s.driver
        .create(target(2, Kind::Active, &[]), &CreateOptions::default())
        .expect("create unlimited");
    let dir = mount(&s, target(2, Kind::Active, &[]), "free");
    write_pattern(&dir.join("fill"), 32 << 20);
    unmount(&dir).expect("unmount");
}

fn our_subvolumes(s: &Setup) -> Vec<String> {
    let out = run(Command::new("btrfs")
        .args(["subvolume", "list", "-a"])
        .arg(s.driver.fs_root()))
    .expect("btrfs subvolume list");
    out.lines().map(str::to_owned).collect()
}

fn qgroups(s: &Setup) -> Vec<u64> {
    qgroups_of(s.driver.fs_root())
}

fn qgroups_of(fs_root: &Path) -> Vec<u64> {
    let dir = File::open(fs_root).expect("open fs root");
    sys::level0_qgroups(&dir)
        .expect("list qgroups")
        .into_iter()
        .filter(|q| *q != 5)
        .collect()
}

#[test]
fn removing_everything_leaves_no_subvolume_or_qgroup_simple_quotas() {
    removing_everything_leaves_nothing("remove_all_simple", "on");
}

#[test]
fn removing_everything_leaves_no_subvolume_or_qgroup_qgroups() {
    removing_everything_leaves_nothing("remove_all_qgroups", "qgroups");
}

/// Strata's own cleanup (recorded ids, background thread), as on kernels
/// before 6.10.
#[test]
fn removing_everything_leaves_no_subvolume_or_qgroup_strata_cleanup() {
    removing_everything_leaves_nothing_with("remove_all_strata", "on", "strata");
}

fn removing_everything_leaves_nothing(test: &str, quota: &str) {
    removing_everything_leaves_nothing_with(test, quota, "auto");
}

fn removing_everything_leaves_nothing_with(test: &str, quota: &str, cleanup: &str) {
    let Some(s) = setup(
        test,
        &[("btrfs.quota", quota), ("btrfs.qgroup_cleanup", cleanup)],
    ) else {
        return;
    };
    let none = CreateOptions::default();
    let base = [SnapshotId(1)];
    s.driver
        .create(target(1, Kind::Active, &[]), &none)
        .expect("base");
    std::fs::write(s.driver.subvolume_path(SnapshotId(1)).join("f"), b"x").expect("write");
    s.driver
        .commit(target(1, Kind::Committed, &[]))
        .expect("commit");
    s.driver
        .create(target(2, Kind::Active, &base), &none)
        .expect("container");
    s.driver
        .create(
            target(3, Kind::View, &base),
            &CreateOptions {
                size: Some(1 << 30),
                ..CreateOptions::default()
            },
        )
        .expect("view");
    // The container makes nested subvolumes inside itself.
    let inner = mount(&s, target(2, Kind::Active, &base), "c");
    run(Command::new("btrfs")
        .args(["subvolume", "create"])
        .arg(inner.join("nested")))
    .expect("nested");
    run(Command::new("btrfs")
        .args(["subvolume", "create"])
        .arg(inner.join("nested/deeper")))
    .expect("deeper");
    unmount(&inner).expect("unmount");
    assert_eq!(our_subvolumes(&s).len(), 5, "{:?}", our_subvolumes(&s));
    assert_eq!(qgroups(&s).len(), 5, "{:?}", qgroups(&s));
    assert_eq!(
        s.driver.stored_ids().expect("ids"),
        vec![SnapshotId(1), SnapshotId(2), SnapshotId(3)]
    );

    for id in [3, 2, 1, 2] {
        s.driver.remove(SnapshotId(id)).expect("remove");
    }
    assert_eq!(our_subvolumes(&s), Vec::<String>::new());
    // The qgroups go in the background once btrfs' cleaner lets them.
    let left = s
        .driver
        .finish_pending(Instant::now() + Duration::from_secs(60))
        .expect("finish pending qgroups");
    assert_eq!(left, Vec::<u64>::new(), "qgroups still pending");
    assert_eq!(qgroups(&s), Vec::<u64>::new());
    assert!(s.driver.stored_ids().expect("ids").is_empty());
}

/// With the kernel removing qgroups, remove records nothing. A qgroup the
/// kernel cannot remove (simple quotas still charge a dropped subvolume for
/// an extent reflinked into another) is found by the scan, and destroyed by
/// `finish_pending` once nothing holds the extent; a live subvolume's
/// qgroup stays.
#[test]
fn kernel_cleanup_records_nothing_and_the_scan_finds_what_is_left() {
    let Some(s) = setup(
        "kernel_cleanup",
        &[
            ("btrfs.quota", "simple"),
            ("btrfs.qgroup_cleanup", "kernel"),
        ],
    ) else {
        return;
    };
    let none = CreateOptions::default();
    for id in [1, 2] {
        s.driver
            .create(target(id, Kind::Active, &[]), &none)
            .expect("create");
    }
    let gone = s.driver.subvolume_id(SnapshotId(1)).expect("id of 1");
    let live = s.driver.subvolume_id(SnapshotId(2)).expect("id of 2");
    let original = s.driver.subvolume_path(SnapshotId(1)).join("f");
    let copy = s.driver.subvolume_path(SnapshotId(2)).join("f");
    write_pattern(&original, 1 << 20);
    run(Command::new("cp")
        .arg("--reflink=always")
        .arg(&original)
        .arg(&copy))
    .expect("reflink into the other subvolume");
    s.driver.remove(SnapshotId(1)).expect("remove");
    let home = s.scratch.path().join("home");
    assert!(
        !home.join(pending::PENDING_FILE).exists(),
        "remove recorded ids though the kernel cleans up"
    );
    // Once the cleaner has dropped the tree, waiting cannot help the charged
    // qgroup: the call returns long before its deadline.
    let started = Instant::now();
    let held = s
        .driver
        .finish_pending(started + Duration::from_secs(120))
        .expect("finish while the extent is shared");
    assert_eq!(held, vec![gone], "the charged qgroup should stay");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "waited {:?} for a qgroup no wait can free",
        started.elapsed()
    );
    let pending = s.driver.pending_qgroups().expect("pending");
    assert_eq!(pending, vec![gone], "the scan: {pending:?}");
    std::fs::remove_file(&copy).expect("drop the last reference");
    let left = s
        .driver
        .finish_pending(Instant::now() + Duration::from_secs(60))
        .expect("finish");
    assert_eq!(left, Vec::<u64>::new(), "qgroups still pending");
    assert_eq!(qgroups(&s), vec![live]);
}

/// What a SIGKILL inside `remove` leaves (ids recorded; one subvolume
/// deleted, the other not yet) is finished by the next open's background
/// thread: the deleted one's qgroup goes, the live one's stays.
#[test]
fn pending_qgroups_survive_a_crash_and_the_next_open_reclaims_them() {
    let test = "pending_qgroups_after_crash";
    if !require_root(test) || !require_program(test, "mkfs.btrfs") {
        return;
    }
    let scratch = ScratchDir::new("btrfs-pending-crash");
    let home = scratch.path().join("home");
    std::fs::create_dir(&home).expect("mkdir home");
    let options: BTreeMap<String, String> = [
        ("btrfs.size", "2G"),
        ("btrfs.quota", "qgroups"),
        ("btrfs.qgroup_cleanup", "strata"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let open = || {
        BtrfsDriver::open(&DriverConfig {
            home: &home,
            options: &options,
        })
        .expect("open btrfs driver")
    };
    let first = open();
    let none = CreateOptions::default();
    let base = [SnapshotId(1)];
    first
        .create(target(1, Kind::Active, &[]), &none)
        .expect("base");
    std::fs::write(first.subvolume_path(SnapshotId(1)).join("f"), b"x").expect("write");
    first
        .commit(target(1, Kind::Committed, &[]))
        .expect("commit");
    for id in [2, 3] {
        first
            .create(target(id, Kind::Active, &base), &none)
            .expect("create");
    }
    let gone = first.subvolume_id(SnapshotId(2)).expect("id of 2");
    let live = first.subvolume_id(SnapshotId(3)).expect("id of 3");
    let gone_path = first.subvolume_path(SnapshotId(2));
    let fs_root = first.fs_root().to_owned();
    // The process dies: its thread stops, the backing stays mounted.
    drop(first);
    std::fs::write(
        home.join(pending::PENDING_FILE),
        format!("{gone}\n{live}\n"),
    )
    .expect("write pending ids");
    run(Command::new("btrfs")
        .args(["subvolume", "delete"])
        .arg(&gone_path))
    .expect("delete subvolume 2");

    let second = open();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pending = second.pending_qgroups().expect("pending ids");
        if pending.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reopened driver left {pending:?} pending"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let left = qgroups_of(&fs_root);
    assert!(!left.contains(&gone), "qgroup 0/{gone} kept: {left:?}");
    assert!(
        left.contains(&live),
        "qgroup 0/{live} of a live subvolume destroyed"
    );
    assert_eq!(
        second.stored_ids().expect("ids"),
        vec![SnapshotId(1), SnapshotId(3)]
    );
    second.release().expect("release");
}

#[test]
fn reopen_remounts_the_loop_file() {
    let Some(s) = setup("reopen", &[]) else {
        return;
    };
    s.driver
        .create(target(7, Kind::Active, &[]), &CreateOptions::default())
        .expect("create");
    s.driver.release().expect("close");
    let root = s.driver.fs_root().to_owned();
    assert!(!sys::is_btrfs(&root).expect("statfs"), "close must unmount");
    let home = s.scratch.path().join("home");
    let options = BTreeMap::new();
    let again = BtrfsDriver::open(&DriverConfig {
        home: &home,
        options: &options,
    })
    .expect("reopen");
    assert_eq!(again.stored_ids().expect("ids"), vec![SnapshotId(7)]);
    assert!(again
        .status()
        .iter()
        .any(|(k, v)| k == "backing" && v.contains("btrfs.img")));
    again.release().expect("close again");
}

#[test]
fn quotas_off_falls_back_to_a_walk() {
    let Some(s) = setup("quota_off", &[("btrfs.quota", "off")]) else {
        return;
    };
    assert_eq!(s.driver.quota_mode(), QuotaMode::Off);
    let t = target(1, Kind::Active, &[]);
    s.driver
        .create(t, &CreateOptions::default())
        .expect("create");
    std::fs::write(
        s.driver.subvolume_path(SnapshotId(1)).join("f"),
        vec![1u8; 1 << 20],
    )
    .expect("write");
    let usage = s.driver.usage(t).expect("usage");
    assert!(usage.size >= 1 << 20 && usage.inodes == 2, "{usage:?}");
    assert!(s
        .driver
        .create(
            target(2, Kind::Active, &[]),
            &CreateOptions {
                size: Some(1 << 20),
                ..CreateOptions::default()
            }
        )
        .is_err());
    assert!(s.driver.status().iter().any(|(_, v)| v.contains("walk")));
}

#[test]
fn home_on_btrfs_is_used_directly() {
    if !require_root("home_on_btrfs") || !require_program("home_on_btrfs", "mkfs.btrfs") {
        return;
    }
    let fs = strata_driver_api::testing::LoopFs::new("btrfs", 256 << 20, &[]).expect("loop btrfs");
    let home = fs.path().join("strata");
    std::fs::create_dir(&home).expect("mkdir");
    assert!(strata_btrfs::home_is_btrfs(&home));
    assert!(strata_btrfs::supported(&home).is_ok());
    let options = BTreeMap::new();
    let driver = BtrfsDriver::open(&DriverConfig {
        home: &home,
        options: &options,
    })
    .expect("open");
    assert!(!home.join("btrfs.img").exists());
    let t = target(1, Kind::Active, &[]);
    driver.create(t, &CreateOptions::default()).expect("create");
    let m = driver.mounts(t).expect("mounts");
    assert_eq!(m[0].fstype, "btrfs");
    driver.remove(SnapshotId(1)).expect("remove");
    driver.release().expect("close");
}

/// Prints how long usage of a container with 10,000 files takes from the
/// qgroup and from a full walk. Run with `--ignored --nocapture`.
#[test]
#[ignore]
fn usage_of_10k_files_qgroup_vs_walk_simple_quotas() {
    usage_of_10k_files("usage_10k_simple", "on");
}

#[test]
#[ignore]
fn usage_of_10k_files_qgroup_vs_walk_qgroups() {
    usage_of_10k_files("usage_10k_qgroups", "qgroups");
}

fn usage_of_10k_files(test: &str, quota: &str) {
    let Some(s) = setup(test, &[("btrfs.quota", quota)]) else {
        return;
    };
    let t = target(1, Kind::Active, &[]);
    s.driver
        .create(t, &CreateOptions::default())
        .expect("create");
    let root = s.driver.subvolume_path(SnapshotId(1));
    for d in 0..100 {
        let dir = root.join(format!("d{d}"));
        std::fs::create_dir(&dir).expect("mkdir");
        for f in 0..100 {
            std::fs::write(dir.join(format!("f{f}")), [d as u8; 4096]).expect("write");
        }
    }
    let start = Instant::now();
    let first = s.driver.usage(t).expect("usage").size;
    let first_time = start.elapsed();
    let n = 20;
    let start = Instant::now();
    let mut q = 0;
    for _ in 0..n {
        q = s.driver.usage(t).expect("usage").size;
    }
    let per_q = start.elapsed() / n;
    let start = Instant::now();
    let mut w = 0;
    for _ in 0..n {
        w = strata_driver_api::du::disk_usage(&root).expect("walk").size;
    }
    let per_w = start.elapsed() / n;
    // Drop caches once for a cold walk figure.
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
    let start = Instant::now();
    let _ = strata_driver_api::du::disk_usage(&root).expect("walk");
    let cold = start.elapsed();
    eprintln!(
        "10,000 files, mode {:?}: first usage after the writes {first} bytes in {first_time:?} \
         (includes the transaction commit); then {q} bytes in {per_q:?} per call; \
         walk {w} bytes in {per_w:?} warm, {cold:?} cold",
        s.driver.quota_mode()
    );
}

/// Usage counts the inodes a snapshot created or changed (all of them for a
/// base), without walking its tree: the child of a 2,000-file base that
/// adds 10 files and rewrites one reports those 11 and the root directory
/// they changed, not the base's 2,000.
#[test]
fn inodes_count_what_a_snapshot_changed() {
    let Some(s) = setup("inodes_changed", &[]) else {
        return;
    };
    let base = target(1, Kind::Active, &[]);
    s.driver
        .create(base, &CreateOptions::default())
        .expect("create base");
    let root = s.driver.subvolume_path(SnapshotId(1));
    for f in 0..2000 {
        std::fs::write(root.join(format!("f{f}")), [1u8; 100]).expect("write");
    }
    s.driver.commit(base).expect("commit base");
    let base = target(1, Kind::Committed, &[]);
    let base_inodes = s.driver.usage(base).expect("base usage").inodes;
    assert!((2001..=2003).contains(&base_inodes), "base: {base_inodes}");

    let parents = [SnapshotId(1)];
    let child = target(2, Kind::Active, &parents);
    s.driver
        .create(child, &CreateOptions::default())
        .expect("create child");
    let dir = mount(&s, child, "child");
    assert_eq!(s.driver.usage(child).expect("usage").inodes, 0);
    for f in 0..10 {
        std::fs::write(dir.join(format!("new{f}")), b"x").expect("write new");
    }
    std::fs::write(dir.join("f7"), b"rewritten").expect("rewrite");
    let start = Instant::now();
    let inodes = s.driver.usage(child).expect("child usage").inodes;
    let took = start.elapsed();
    assert!((11..=12).contains(&inodes), "child: {inodes}");
    eprintln!("btrfs inodes: base {base_inodes}, child {inodes} in {took:?}");
    strata_driver_api::mount::unmount(&dir).expect("unmount");
}
