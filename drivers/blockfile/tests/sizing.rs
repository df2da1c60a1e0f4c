//! Image sizes that never surprise: a fresh container on default options
//! holds files past 1 GiB, and the `min_free` hint grows an image whose
//! parent leaves too little room, while an enforced size still wins.
//! Run as root: `cargo test -p strata-blockfile --test sizing -- --nocapture`.

mod common;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use common::Mounted;
use strata_blockfile::BlockfileDriver;
use strata_driver_api::testing::ScratchDir;
use strata_driver_api::{CreateOptions, Driver, Kind, SnapshotId, Target};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn target(id: u64, kind: Kind, parents: &[SnapshotId]) -> Target<'_> {
    Target {
        id: SnapshotId(id),
        kind,
        parents,
    }
}

/// Apparent size of snapshot `id`'s image file.
fn image_len(d: &BlockfileDriver, id: u64) -> u64 {
    let path = d.image_path(SnapshotId(id));
    std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .len()
}

/// (size, available) bytes of the filesystem mounted at `path`.
fn fs_space(path: &Path) -> (u64, u64) {
    let st = nix::sys::statvfs::statvfs(path).expect("statvfs");
    let frag = st.fragment_size();
    (st.blocks() * frag, st.blocks_available() * frag)
}

/// Writes `len` bytes of a pattern at `offset` of `path` in 1 MiB chunks,
/// then fsyncs.
fn write_at(path: &Path, offset: u64, len: u64) -> std::io::Result<()> {
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    let chunk: Vec<u8> = (0..MIB).map(|i| (i % 251) as u8).collect();
    let mut done = 0;
    while done < len {
        let n = (len - done).min(MIB);
        f.write_all_at(&chunk[..n as usize], offset + done)?;
        done += n;
    }
    f.sync_all()
}

#[test]
fn fresh_container_on_defaults_writes_past_one_gibibyte() {
    let test = "fresh_container_on_defaults_writes_past_one_gibibyte";
    if !common::prerequisites(test) {
        return;
    }
    // The image is sparse: a 2 GiB backing holds a 10 GiB image with a few
    // MiB written past its first GiB.
    let fs = common::loop_fs("xfs", 2 * GIB);
    let scratch = ScratchDir::new("blockfile-default-size");
    let d = common::open_driver(fs.path(), "home", &[]);
    let t = target(1, Kind::Active, &[]);
    d.create(t, &CreateOptions::default()).expect("create");
    assert!(
        image_len(&d, 1) >= 10 * GIB,
        "default image {}",
        image_len(&d, 1)
    );
    {
        let m = Mounted::new(&d.mounts(t).expect("mounts"), &scratch, "c");
        let (size, avail) = fs_space(m.path());
        println!(
            "default image: {} MiB filesystem, {} MiB free",
            size / MIB,
            avail / MIB
        );
        assert!(
            avail > 9 * GIB,
            "only {avail} bytes free in a default image"
        );
        let file = m.path().join("big");
        write_at(&file, 3 * GIB / 2, 4 * MIB).expect("write 4 MiB at 1.5 GiB");
        let len = std::fs::metadata(&file).expect("stat").len();
        assert_eq!(len, 3 * GIB / 2 + 4 * MIB);
    }
    d.remove(SnapshotId(1)).expect("remove");
}

#[test]
fn min_free_grows_the_image_and_a_size_limit_wins() {
    let test = "min_free_grows_the_image_and_a_size_limit_wins";
    if !common::prerequisites(test) {
        return;
    }
    let fs = common::loop_fs("xfs", 2 * GIB);
    let scratch = ScratchDir::new("blockfile-min-free");
    // 64 MiB is below xfs' minimum: these images are ext4 (offline resize).
    let d = common::open_driver(fs.path(), "home", &[("size", "64M")]);
    let base = target(1, Kind::Active, &[]);
    d.create(base, &CreateOptions::default()).expect("base");
    {
        let m = Mounted::new(&d.mounts(base).expect("mounts"), &scratch, "base");
        std::fs::write(m.path().join("hello"), b"from the base\n").expect("write");
    }
    d.commit(target(1, Kind::Committed, &[])).expect("commit");
    assert_eq!(image_len(&d, 1), 64 * MIB);

    let parents = [SnapshotId(1)];
    let wanted = 100 * MIB;
    let hint = CreateOptions {
        min_free: Some(wanted),
        ..CreateOptions::default()
    };
    let child = target(2, Kind::Active, &parents);
    d.create(child, &hint).expect("child with min_free");
    let grown = image_len(&d, 2);
    println!(
        "a 64 MiB parent's child asked for 100 MiB free: {} MiB",
        grown / MIB
    );
    assert!(grown > 64 * MIB, "image {grown} did not grow");
    {
        let m = Mounted::new(&d.mounts(child).expect("mounts"), &scratch, "child");
        let (_, avail) = fs_space(m.path());
        assert!(avail >= wanted, "{avail} bytes free, {wanted} asked");
        assert_eq!(
            std::fs::read(m.path().join("hello")).expect("parent's file"),
            b"from the base\n"
        );
        write_at(&m.path().join("layer"), 0, wanted).expect("write 100 MiB");
    }

    // Without the hint a child keeps its parent's size, and the same write
    // runs out of space: the hint made the room.
    let sibling = target(3, Kind::Active, &parents);
    d.create(sibling, &CreateOptions::default())
        .expect("sibling");
    assert_eq!(image_len(&d, 3), 64 * MIB);
    {
        let m = Mounted::new(&d.mounts(sibling).expect("mounts"), &scratch, "sibling");
        let err = write_at(&m.path().join("layer"), 0, wanted).expect_err("no room");
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    }

    // A base image asked for room grows from the scratch image too; an
    // enforced size is a limit the hint never raises.
    d.create(target(4, Kind::Active, &[]), &hint)
        .expect("base with min_free");
    assert!(image_len(&d, 4) > 64 * MIB, "{}", image_len(&d, 4));
    {
        let t = target(4, Kind::Active, &[]);
        let m = Mounted::new(&d.mounts(t).expect("mounts"), &scratch, "base4");
        let (_, avail) = fs_space(m.path());
        assert!(avail >= wanted, "{avail} bytes free, {wanted} asked");
    }
    let limited = CreateOptions {
        size: Some(96 * MIB),
        min_free: Some(wanted),
    };
    d.create(target(5, Kind::Active, &parents), &limited)
        .expect("child with a size limit");
    assert_eq!(image_len(&d, 5), 96 * MIB);
    for id in [5, 4, 3, 2, 1] {
        d.remove(SnapshotId(id)).expect("remove");
    }
}

#[test]
fn base_usage_survives_new_default_sizes() {
    let test = "base_usage_survives_new_default_sizes";
    if !common::prerequisites(test) {
        return;
    }
    let fs = common::loop_fs("xfs", GIB);
    let scratch = ScratchDir::new("blockfile-new-defaults");
    let base = target(1, Kind::Active, &[]);
    let before = {
        let d = common::open_driver(fs.path(), "home", &[("size", "64M")]);
        d.create(base, &CreateOptions::default()).expect("base");
        {
            let m = Mounted::new(&d.mounts(base).expect("mounts"), &scratch, "base");
            write_at(&m.path().join("data"), 0, MIB).expect("write 1 MiB");
        }
        d.usage(base).expect("usage").size
    };
    // The same store opened with another image size: the base was cloned
    // from the 64 MiB scratch image, and only what it wrote is its own.
    let d = common::open_driver(fs.path(), "home", &[("size", "128M")]);
    let after = d.usage(base).expect("usage").size;
    println!("base usage with the old options {before}, with new ones {after}");
    assert_eq!(after, before);
    assert!(
        after < 8 * MIB,
        "{after}: the scratch image's blocks counted"
    );
    d.remove(SnapshotId(1)).expect("remove");
}
