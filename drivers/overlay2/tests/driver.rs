//! The overlay2 driver used directly: whiteouts in overlayfs' form, a
//! 500-layer chain, host checks, stored ids and idempotent remove. Needs root.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use strata_driver_api::mount::{mount_all, mount_fs, unmount};
use strata_driver_api::testing::{require_root, ScratchDir};
use strata_driver_api::{
    CreateOptions, Driver, DriverConfig, Error, Kind, Mount, SnapshotId, Target,
};
use strata_overlay2::{link_name, Overlay2Driver};

fn target(id: u64, kind: Kind, parents: &[SnapshotId]) -> Target<'_> {
    Target {
        id: SnapshotId(id),
        kind,
        parents,
    }
}

fn open(home: &Path) -> strata_driver_api::Result<Overlay2Driver> {
    fs::create_dir_all(home).unwrap();
    let options = BTreeMap::new();
    Overlay2Driver::open(&DriverConfig {
        home,
        options: &options,
    })
}

fn mount_at(mounts: &[Mount], target: PathBuf) -> PathBuf {
    fs::create_dir_all(&target).unwrap();
    mount_all(mounts, &target).unwrap_or_else(|e| panic!("mount {mounts:?}: {e}"));
    target
}

fn ids(parents: std::ops::Range<u64>) -> Vec<SnapshotId> {
    parents.rev().map(SnapshotId).collect()
}

#[test]
fn deletions_become_overlay_whiteouts() {
    if !require_root("deletions_become_overlay_whiteouts") {
        return;
    }
    let scratch = ScratchDir::new("overlay2-whiteouts");
    let d = open(&scratch.path().join("home")).expect("open");
    assert!(d.overlay_whiteouts());
    let none = CreateOptions::default();
    d.create(target(1, Kind::Active, &[]), &none).unwrap();
    let base = d.layer_dir(SnapshotId(1));
    fs::write(base.join("file"), b"lower").unwrap();
    fs::create_dir_all(base.join("dir/sub")).unwrap();
    fs::write(base.join("dir/sub/x"), b"x").unwrap();
    d.commit(target(1, Kind::Active, &[])).unwrap();

    let p = [SnapshotId(1)];
    d.create(target(2, Kind::Active, &p), &none).unwrap();
    let m = d.mounts(target(2, Kind::Active, &p)).unwrap();
    assert_eq!(m[0].fstype, "overlay");
    let lower = format!("lowerdir={}", scratch.path().join("home/l/1").display());
    assert!(m[0].options.contains(&lower), "{m:?}");
    assert!(m[0].options.iter().any(|o| o == "index=off"), "{m:?}");
    let mnt = mount_at(&m, scratch.path().join("m2"));
    fs::remove_file(mnt.join("file")).unwrap();
    fs::remove_dir_all(mnt.join("dir")).unwrap();
    fs::create_dir(mnt.join("dir")).unwrap();
    fs::write(mnt.join("dir/new"), b"n").unwrap();
    unmount(&mnt).unwrap();

    let upper = d.layer_dir(SnapshotId(2));
    let wh = fs::symlink_metadata(upper.join("file")).unwrap();
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "no 0/0 whiteout"
    );
    let opaque = xattr(&upper.join("dir"), "trusted.overlay.opaque");
    assert_eq!(opaque.as_deref(), Some(&b"y"[..]), "dir is not opaque");
    assert!(!upper.join("dir/sub").exists());
    // The lower layer is untouched and usage counts the upper dir only.
    assert_eq!(fs::read(base.join("file")).unwrap(), b"lower");
    let u = d.usage(target(2, Kind::Active, &p)).unwrap();
    assert_eq!(u.inodes, 4, "{u:?}"); // fs, file (whiteout), dir, dir/new
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    xattr::get(path, name).expect("getxattr")
}

#[test]
fn chain_of_500_layers_mounts() {
    if !require_root("chain_of_500_layers_mounts") {
        return;
    }
    let scratch = ScratchDir::new("overlay2-500");
    let d = open(&scratch.path().join("home")).expect("open");
    let none = CreateOptions::default();
    for i in 1..=500u64 {
        let parents = ids(1..i);
        d.create(target(i, Kind::Active, &parents), &none).unwrap();
        fs::write(
            d.layer_dir(SnapshotId(i)).join(format!("f{i}")),
            i.to_string(),
        )
        .unwrap();
        fs::write(d.layer_dir(SnapshotId(i)).join("top"), i.to_string()).unwrap();
        d.commit(target(i, Kind::Active, &parents)).unwrap();
    }
    let parents = ids(1..501);
    assert_eq!(parents.len(), 500);

    d.create(target(501, Kind::Active, &parents), &none)
        .unwrap();
    let m = d.mounts(target(501, Kind::Active, &parents)).unwrap();
    let bytes: usize = m[0].options.iter().map(|o| o.len() + 1).sum();
    assert!(
        bytes > 4096,
        "lowerdir list ({bytes} bytes) should exceed a page here"
    );
    let mnt = mount_at(&m, scratch.path().join("rw"));
    assert_eq!(fs::read_to_string(mnt.join("top")).unwrap(), "500");
    assert_eq!(fs::read_to_string(mnt.join("f1")).unwrap(), "1");
    fs::write(mnt.join("f1"), b"changed").unwrap();
    unmount(&mnt).unwrap();
    assert_eq!(
        fs::read(d.layer_dir(SnapshotId(501)).join("f1")).unwrap(),
        b"changed"
    );

    d.create(target(502, Kind::View, &parents), &none).unwrap();
    let m = d.mounts(target(502, Kind::View, &parents)).unwrap();
    assert!(m[0].is_read_only());
    let mnt = mount_at(&m, scratch.path().join("ro"));
    assert_eq!(fs::read_to_string(mnt.join("f250")).unwrap(), "250");
    assert!(fs::write(mnt.join("x"), b"x").is_err());
    unmount(&mnt).unwrap();

    // A committed layer on 500 parents would stack 501: a clear error.
    let err = d
        .mounts(target(500, Kind::Committed, &ids(1..500)))
        .map(|_| ());
    assert!(err.is_ok(), "500 layers must still mount: {err:?}");
    let err = d
        .mounts(target(501, Kind::Committed, &parents))
        .unwrap_err();
    assert!(err.to_string().contains("at most 500"), "{err}");
}

#[test]
fn stored_ids_links_and_idempotent_remove() {
    if !require_root("stored_ids_links_and_idempotent_remove") {
        return;
    }
    let scratch = ScratchDir::new("overlay2-ids");
    let home = scratch.path().join("home");
    let d = open(&home).expect("open");
    let none = CreateOptions::default();
    d.create(target(40, Kind::Active, &[]), &none).unwrap();
    d.commit(target(40, Kind::Active, &[])).unwrap();
    let p = [SnapshotId(40)];
    d.create(target(41, Kind::View, &p), &none).unwrap();
    let link = home.join("l").join(link_name(SnapshotId(40)));
    assert_eq!(
        fs::read_link(&link).unwrap(),
        Path::new("../snapshots/40/fs")
    );
    // One parent: read-only bind of the parent's layer; committed: own layer.
    let view = d.mounts(target(41, Kind::View, &p)).unwrap();
    assert_eq!(view[0].fstype, "bind");
    assert_eq!(
        view[0].source,
        d.layer_dir(SnapshotId(40)).display().to_string()
    );
    assert_eq!(view[0].options, ["rbind", "ro"]);
    let committed = d.mounts(target(40, Kind::Committed, &[])).unwrap();
    assert_eq!(committed[0].options, ["rbind", "ro"]);
    let active = d.mounts(target(41, Kind::Active, &[])).unwrap();
    assert_eq!(active[0].options, ["rbind", "rw"]);

    assert_eq!(d.stored_ids().unwrap(), [SnapshotId(40), SnapshotId(41)]);
    // A link left without its directory still shows up, and remove clears it.
    fs::remove_dir_all(home.join("snapshots/41")).unwrap();
    assert_eq!(d.stored_ids().unwrap(), [SnapshotId(40), SnapshotId(41)]);
    for id in [41, 40] {
        d.remove(SnapshotId(id)).unwrap();
        d.remove(SnapshotId(id)).unwrap();
    }
    assert!(d.stored_ids().unwrap().is_empty());
    assert!(fs::read_dir(home.join("l")).unwrap().next().is_none());
    let left: Vec<_> = fs::read_dir(&home)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".probe"))
        .collect();
    assert!(left.is_empty(), "probe directory left behind: {left:?}");
}

#[test]
fn unsuitable_homes_are_unsupported() {
    if !require_root("unsuitable_homes_are_unsupported") {
        return;
    }
    let scratch = ScratchDir::new("overlay2-unsupported");
    let err = open(&scratch.path().join("a,b")).unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");

    // A home on an overlay mount cannot hold upper directories.
    let (lower, upper, work, merged) = (
        scratch.path().join("lower"),
        scratch.path().join("upper"),
        scratch.path().join("work"),
        scratch.path().join("merged"),
    );
    for dir in [&lower, &upper, &work, &merged] {
        fs::create_dir_all(dir).unwrap();
    }
    let options = [
        format!("lowerdir={}", lower.display()),
        format!("upperdir={}", upper.display()),
        format!("workdir={}", work.display()),
    ];
    mount_fs(Path::new("overlay"), &merged, "overlay", &options).expect("outer overlay");
    let result = open(&merged.join("home"));
    unmount(&merged).unwrap();
    let err = result.expect_err("overlay2 opened on an overlay home");
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    assert!(
        err.to_string().contains("cannot hold overlay upper"),
        "{err}"
    );
}

#[test]
fn status_names_backing_and_options() {
    if !require_root("status_names_backing_and_options") {
        return;
    }
    let scratch = ScratchDir::new("overlay2-status");
    let d = open(scratch.path()).expect("open");
    let status: BTreeMap<_, _> = d.status().into_iter().collect();
    assert_eq!(
        status["backing filesystem"], "ext4",
        "/tmp is ext4 on this host"
    );
    assert!(status["mount options"].contains("index=off"), "{status:?}");
    assert!(status["native diff"].starts_with("yes"), "{status:?}");
    // Classic mount(2) capacity: about 4 KiB over the per-layer link path.
    let per_layer = scratch.path().as_os_str().len() + "/l/".len() + 5;
    let n = d.classic_mount_capacity();
    assert!(n < 4096 / per_layer && n > 4096 / per_layer - 10, "{n}");
    println!("{status:?}");
}
