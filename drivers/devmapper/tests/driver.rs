//! What is particular to devmapper, run for real on dm-thin (through
//! `scripts/vm-test.sh` on hosts without it): copy-up of one pool block,
//! a full pool erroring quickly, crash recovery between kernel steps,
//! growing the loop pool, per-snapshot sizes, and the latency figures.
//! Run with `--nocapture` to see the figures.

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use strata_devmapper::DevmapperDriver;
use strata_driver_api::failpoint::FAILPOINT_ENV;
use strata_driver_api::mount::{mount_all, unmount};
use strata_driver_api::{CreateOptions, Driver, Kind, SnapshotId, Target};

const MIB: u64 = 1 << 20;

fn target(id: u64, kind: Kind, parents: &[SnapshotId]) -> Target<'_> {
    Target {
        id: SnapshotId(id),
        kind,
        parents,
    }
}

/// Mounts snapshot `t` under the store's scratch dir, runs `f`, unmounts.
fn with_mounted<R>(
    d: &DevmapperDriver,
    store: &common::Store,
    t: Target<'_>,
    f: impl FnOnce(&Path) -> R,
) -> R {
    let mnt: PathBuf = store.scratch.path().join(format!("mnt-{}", t.id));
    std::fs::create_dir_all(&mnt).expect("mkdir mnt");
    mount_all(&d.mounts(t).expect("mounts"), &mnt).expect("mount");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            if let Err(e) = unmount(&self.0) {
                eprintln!("unmount {}: {e}", self.0.display());
            }
        }
    }
    let _guard = Unmount(mnt.clone());
    f(&mnt)
}

/// Writes `len` bytes of a non-zero pattern to `path`, fsynced.
fn write_file(path: &Path, len: u64) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    let chunk: Vec<u8> = (0..MIB as usize).map(|i| (i % 251) as u8 + 1).collect();
    let mut left = len;
    while left > 0 {
        let n = left.min(MIB);
        f.write_all(&chunk[..n as usize])?;
        left -= n;
    }
    f.sync_all()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A 4 KiB write into a 256 MiB file of a committed layer maps about one
/// pool block more, not 256 MiB. Also prints prepare/commit/remove latency.
#[test]
fn copy_up_maps_one_block_and_latency() {
    if !common::prerequisites("copy_up_maps_one_block_and_latency") {
        return;
    }
    let store = common::Store::new("dm-copyup");
    let d = common::open(
        store.home(),
        &common::small_pool(&[("dm.basesize", "512M")]),
    )
    .expect("open");
    let block = d.pool_block_bytes();
    let none: &[SnapshotId] = &[];
    d.create(target(1, Kind::Active, none), &CreateOptions::default())
        .expect("create layer");
    with_mounted(&d, &store, target(1, Kind::Active, none), |r| {
        write_file(&r.join("big"), 256 * MIB).expect("write 256 MiB");
    });
    d.commit(target(1, Kind::Committed, none)).expect("commit");
    let parents = [SnapshotId(1)];
    d.create(target(2, Kind::Active, &parents), &CreateOptions::default())
        .expect("create container");
    let before = d.pool_data_blocks().expect("pool status").0;
    with_mounted(&d, &store, target(2, Kind::Active, &parents), |r| {
        let f = OpenOptions::new()
            .write(true)
            .open(r.join("big"))
            .expect("open big");
        f.write_all_at(&[0x5a; 4096], 100 * MIB)
            .expect("write 4 KiB");
        f.sync_all().expect("fsync");
    });
    let after = d.pool_data_blocks().expect("pool status").0;
    let delta = after - before;
    let usage = d.usage(target(2, Kind::Active, &parents)).expect("usage");
    eprintln!(
        "FIGURE copy-up: 4 KiB write into a 256 MiB file mapped {delta} more pool block(s) of {block} bytes ({} KiB); container usage {} bytes",
        delta * block / 1024,
        usage.size
    );
    assert!(delta >= 1, "the write mapped no block at all");
    // One data block, plus the inode's table block and a few journal blocks.
    assert!(
        delta * block <= 2 * MIB,
        "copy-up mapped {delta} blocks of {block} bytes"
    );

    // Latency: prepare (create + mounts), commit, remove, on the 256 MiB layer.
    let (mut prepare, mut commit, mut remove) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..5u64 {
        let id = 10 + i;
        let t0 = Instant::now();
        d.create(
            target(id, Kind::Active, &parents),
            &CreateOptions::default(),
        )
        .expect("create");
        d.mounts(target(id, Kind::Active, &parents))
            .expect("mounts");
        prepare.push(t0.elapsed());
        let t1 = Instant::now();
        d.commit(target(id, Kind::Committed, &parents))
            .expect("commit");
        commit.push(t1.elapsed());
        let t2 = Instant::now();
        d.remove(SnapshotId(id)).expect("remove");
        remove.push(t2.elapsed());
    }
    eprintln!(
        "FIGURE latency (median of 5, on a 256 MiB layer): prepare {:?}, commit {:?}, remove {:?}",
        median(prepare),
        median(commit),
        median(remove)
    );
    // Removing frees the blocks: after removing the container the pool is
    // back where it was before its write.
    d.remove(SnapshotId(2)).expect("remove container");
    let freed = d.pool_data_blocks().expect("pool status").0;
    assert!(
        freed <= before,
        "remove did not free blocks: {freed} > {before}"
    );
    d.release().expect("close");
}

/// A container filling a small pool gets an error within seconds (the
/// pool errors instead of queueing), creation then stops at the free-space
/// floor with a clear message, and after removing the container the store
/// works again with the committed layer intact.
#[test]
fn full_pool_errors_fast_and_store_stays_consistent() {
    if !common::prerequisites("full_pool_errors_fast_and_store_stays_consistent") {
        return;
    }
    let store = common::Store::new("dm-full");
    let opts = common::small_pool(&[("dm.data_size", "96M"), ("dm.basesize", "512M")]);
    let d = common::open(store.home(), &opts).expect("open");
    let none: &[SnapshotId] = &[];
    d.create(target(1, Kind::Active, none), &CreateOptions::default())
        .expect("create layer");
    with_mounted(&d, &store, target(1, Kind::Active, none), |r| {
        write_file(&r.join("keep"), MIB).expect("write");
    });
    d.commit(target(1, Kind::Committed, none)).expect("commit");
    let parents = [SnapshotId(1)];
    d.create(target(2, Kind::Active, &parents), &CreateOptions::default())
        .expect("create container");
    let started = Instant::now();
    let result = with_mounted(&d, &store, target(2, Kind::Active, &parents), |r| {
        write_file(&r.join("fill"), 200 * MIB)
    });
    let took = started.elapsed();
    eprintln!(
        "FIGURE pool full: writing 200 MiB into a 96 MiB pool failed after {took:?}: {result:?}"
    );
    assert!(result.is_err(), "filling the pool did not fail");
    assert!(
        took < Duration::from_secs(120),
        "the full pool took {took:?} to error"
    );

    let e = d
        .create(target(3, Kind::Active, &parents), &CreateOptions::default())
        .expect_err("create on a full pool");
    assert!(
        e.to_string().contains("min_free_space"),
        "unclear error: {e}"
    );
    assert!(!d.stored_ids().expect("ids").contains(&SnapshotId(3)));

    d.remove(SnapshotId(2)).expect("remove the filler");
    d.create(target(4, Kind::Active, &parents), &CreateOptions::default())
        .expect("create after freeing");
    let kept = with_mounted(&d, &store, target(4, Kind::Active, &parents), |r| {
        std::fs::metadata(r.join("keep")).map(|m| m.len())
    });
    assert_eq!(kept.expect("layer file"), MIB);
    d.release().expect("close");
}

/// When the pool's data use passes the threshold, the loop data file grows
/// and the pool is reloaded with the new size.
#[test]
fn loop_pool_grows_past_threshold() {
    if !common::prerequisites("loop_pool_grows_past_threshold") {
        return;
    }
    let store = common::Store::new("dm-grow");
    let opts = common::small_pool(&[
        ("dm.data_size", "96M"),
        ("dm.autoextend_threshold", "50"),
        ("dm.autoextend_percent", "50"),
    ]);
    let d = common::open(store.home(), &opts).expect("open");
    let none: &[SnapshotId] = &[];
    d.create(target(1, Kind::Active, none), &CreateOptions::default())
        .expect("create");
    with_mounted(&d, &store, target(1, Kind::Active, none), |r| {
        write_file(&r.join("half"), 60 * MIB).expect("write");
    });
    let (_, total_before) = d.pool_data_blocks().expect("status");
    d.create(target(2, Kind::Active, none), &CreateOptions::default())
        .expect("create past threshold");
    let (_, total_after) = d.pool_data_blocks().expect("status");
    let file = std::fs::metadata(store.home().join(strata_devmapper::DATA_FILE))
        .expect("data file")
        .len();
    assert!(
        total_after > total_before,
        "pool did not grow: {total_before} -> {total_after} blocks"
    );
    assert_eq!(file, 144 * MIB);
    d.release().expect("close");
}

/// A container asking for more than the base size gets a bigger thin
/// device and a grown filesystem.
#[test]
fn size_option_grows_device_and_filesystem() {
    if !common::prerequisites("size_option_grows_device_and_filesystem") {
        return;
    }
    let store = common::Store::new("dm-size");
    let d = common::open(store.home(), &common::small_pool(&[])).expect("open");
    let none: &[SnapshotId] = &[];
    let opts = CreateOptions {
        size: Some(512 * MIB),
        ..CreateOptions::default()
    };
    d.create(target(1, Kind::Active, none), &opts)
        .expect("create sized");
    let total = with_mounted(&d, &store, target(1, Kind::Active, none), |r| {
        let st = nix::sys::statvfs::statvfs(r).expect("statvfs");
        st.blocks() * st.fragment_size()
    });
    assert!(total > 400 * MIB, "filesystem not grown: {total} bytes");
    d.release().expect("close");
}

/// Child half of the crash test: opens the driver on the given home and
/// runs the step the failpoint interrupts. Does nothing unless the parent
/// test started it.
#[test]
#[ignore = "run by crash_between_kernel_steps_is_repaired"]
fn crash_child() {
    let Ok(home) = std::env::var("STRATA_DM_CHILD_HOME") else {
        return;
    };
    let step = std::env::var("STRATA_DM_CHILD_STEP").expect("step");
    let d = common::open(Path::new(&home), &common::small_pool(&[])).expect("open in child");
    let none: &[SnapshotId] = &[];
    match step.as_str() {
        "create" => d
            .create(target(5, Kind::Active, none), &CreateOptions::default())
            .expect("create"),
        "remove" => d.remove(SnapshotId(1)).expect("remove"),
        other => panic!("unknown step {other}"),
    }
    panic!(
        "failpoint {:?} did not stop the process",
        std::env::var(FAILPOINT_ENV)
    );
}

fn crash_at(home: &Path, step: &str, point: &str) {
    let out = Command::new(std::env::current_exe().expect("test exe"))
        .args([
            "crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("STRATA_DM_CHILD_HOME", home)
        .env("STRATA_DM_CHILD_STEP", step)
        .env(FAILPOINT_ENV, point)
        .output()
        .expect("run child");
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "child did not stop at {point}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A process killed between kernel steps of create (after create_snap,
/// before the transaction id moved on) or remove leaves a store that the
/// next open repairs: the half-made device is rolled back, the half-removed
/// one finished, and the recorded transaction id is not ahead of the kernel's.
#[test]
fn crash_between_kernel_steps_is_repaired() {
    if !common::prerequisites("crash_between_kernel_steps_is_repaired") {
        return;
    }
    let store = common::Store::new("dm-crash");
    let none: &[SnapshotId] = &[];
    {
        let d = common::open(store.home(), &common::small_pool(&[])).expect("open");
        d.create(target(1, Kind::Active, none), &CreateOptions::default())
            .expect("create 1");
        d.commit(target(1, Kind::Committed, none))
            .expect("commit 1");
    }
    crash_at(store.home(), "create", "devmapper.create-after-snap");
    let d =
        common::open(store.home(), &common::small_pool(&[])).expect("reopen after create crash");
    assert_eq!(
        d.stored_ids().expect("ids"),
        vec![SnapshotId(1)],
        "half-made snapshot 5 not rolled back"
    );
    // The thin id is free again: creating the same snapshot works.
    d.create(target(5, Kind::Active, none), &CreateOptions::default())
        .expect("create 5 again");
    d.remove(SnapshotId(5)).expect("remove 5");
    drop(d);

    crash_at(store.home(), "create", "devmapper.activate-after-create");
    let d =
        common::open(store.home(), &common::small_pool(&[])).expect("reopen after activate crash");
    assert!(d.stored_ids().expect("ids").contains(&SnapshotId(5)));
    d.mounts(target(5, Kind::Active, none))
        .expect("mounts after activation crash");
    drop(d);

    crash_at(store.home(), "remove", "devmapper.remove-after-delete");
    let d =
        common::open(store.home(), &common::small_pool(&[])).expect("reopen after remove crash");
    assert_eq!(
        d.stored_ids().expect("ids"),
        vec![SnapshotId(5)],
        "half-removed snapshot 1 not finished"
    );
    let status: std::collections::BTreeMap<String, String> = d.status().into_iter().collect();
    let recorded: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.home().join("pool.json")).expect("pool.json"))
            .expect("json");
    let kernel: u64 = status
        .get("transaction id")
        .and_then(|t| t.parse().ok())
        .expect("transaction id in status");
    let recorded = recorded["transaction_id"].as_u64().expect("recorded id");
    assert!(
        kernel >= recorded,
        "kernel transaction id {kernel} is behind the recorded {recorded}"
    );
    d.release().expect("close");
}

/// `dm.fs=xfs`: snapshots of one base share its uuid, so they mount with
/// `nouuid`; a layer, a sized container on it and a view all mount.
#[test]
fn xfs_snapshots_mount_side_by_side() {
    if !common::prerequisites("xfs_snapshots_mount_side_by_side")
        || !strata_driver_api::testing::require_program(
            "xfs_snapshots_mount_side_by_side",
            "mkfs.xfs",
        )
    {
        return;
    }
    let store = common::Store::new("dm-xfs");
    let d = common::open(
        store.home(),
        &common::small_pool(&[("dm.fs", "xfs"), ("dm.basesize", "320M")]),
    )
    .expect("open");
    let none: &[SnapshotId] = &[];
    d.create(target(1, Kind::Active, none), &CreateOptions::default())
        .expect("create layer");
    with_mounted(&d, &store, target(1, Kind::Active, none), |r| {
        std::fs::write(r.join("hello"), "layer").expect("write");
    });
    d.commit(target(1, Kind::Committed, none)).expect("commit");
    let parents = [SnapshotId(1)];
    let big = CreateOptions {
        size: Some(640 * MIB),
        ..CreateOptions::default()
    };
    d.create(target(2, Kind::Active, &parents), &big)
        .expect("create sized container");
    d.create(target(3, Kind::View, &parents), &CreateOptions::default())
        .expect("create view");
    let mounts = d.mounts(target(2, Kind::Active, &parents)).expect("mounts");
    assert!(
        mounts[0].options.iter().any(|o| o == "nouuid"),
        "{mounts:?}"
    );
    with_mounted(&d, &store, target(2, Kind::Active, &parents), |c| {
        with_mounted(&d, &store, target(3, Kind::View, &parents), |v| {
            assert_eq!(
                std::fs::read_to_string(c.join("hello")).expect("read"),
                "layer"
            );
            assert_eq!(
                std::fs::read_to_string(v.join("hello")).expect("read"),
                "layer"
            );
            assert!(
                std::fs::write(v.join("nope"), "x").is_err(),
                "view is writable"
            );
            let st = nix::sys::statvfs::statvfs(c).expect("statvfs");
            assert!(
                st.blocks() * st.fragment_size() > 500 * MIB,
                "xfs not grown"
            );
        })
    });
    d.release().expect("close");
}

/// Usage counts the inodes a snapshot's filesystem holds beyond its
/// parent's (a base counts its filesystem's reserved inodes too): statfs
/// while mounted, the superblock once unmounted, the count recorded at
/// commit for a committed one.
#[test]
fn inodes_from_statfs_superblock_and_commit() {
    if !common::prerequisites("inodes_from_statfs_superblock_and_commit") {
        return;
    }
    let store = common::Store::new("dm-inodes");
    let d = common::open(store.home(), &common::small_pool(&[])).expect("open");
    let none: &[SnapshotId] = &[];
    d.create(target(1, Kind::Active, none), &CreateOptions::default())
        .expect("create base");
    with_mounted(&d, &store, target(1, Kind::Active, none), |r| {
        for f in 0..100 {
            std::fs::write(r.join(format!("f{f}")), b"base").expect("write");
        }
    });
    d.commit(target(1, Kind::Committed, none)).expect("commit");
    let base = d.usage(target(1, Kind::Committed, none)).expect("usage");
    assert!((100..=116).contains(&base.inodes), "base: {base:?}");
    let parent = [SnapshotId(1)];
    let child = target(2, Kind::Active, &parent);
    d.create(child, &CreateOptions::default())
        .expect("create child");
    with_mounted(&d, &store, child, |r| {
        for f in 0..10 {
            std::fs::write(r.join(format!("new{f}")), b"x").expect("write");
        }
        let mounted = d.usage(child).expect("usage while mounted");
        assert_eq!(mounted.inodes, 10, "mounted child: {mounted:?}");
    });
    let unmounted = d.usage(child).expect("usage");
    assert_eq!(unmounted.inodes, 10, "unmounted child: {unmounted:?}");
    eprintln!(
        "devmapper inodes: base {}, child {}",
        base.inodes, unmounted.inodes
    );
    d.release().expect("release");
}
