//! Apply / diff / write round trips: whiteouts in both forms, apply then
//! write_tree equality, reproducible layer tars, overlay upper dirs giving
//! the same layer as a full-copy walk. Needs root; skips otherwise.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::Path;

use common::{stamp, RawTar};
use nix::sys::stat::{Mode, SFlag};
use sha2::{Digest, Sha256};
use strata::archive::{
    apply_layer, changes, changes_overlay, write_layer, write_tree, ApplyOptions, Change,
    ChangeKind,
};

fn is_root() -> bool {
    strata_driver_api::testing::require_root("archive_roundtrip")
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("strata-test-archive-")
        .tempdir()
        .unwrap()
}

/// A tree with every kind of entry the writer handles.
fn populate(root: &Path) {
    fs::create_dir_all(root.join("etc/conf.d")).unwrap();
    fs::write(root.join("etc/passwd"), b"root:x:0:0\n").unwrap();
    fs::write(root.join("etc/conf.d/a"), b"a").unwrap();
    fs::write(root.join("etc/conf.d/b"), b"b").unwrap();
    fs::hard_link(root.join("etc/passwd"), root.join("etc/passwd.hl")).unwrap();
    symlink("/etc/passwd", root.join("etc/link")).unwrap();
    nix::unistd::mkfifo(&root.join("etc/fifo"), Mode::from_bits_truncate(0o640)).unwrap();
    nix::sys::stat::mknod(
        &root.join("etc/null"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        libc::makedev(1, 3),
    )
    .unwrap();
    std::os::unix::fs::chown(root.join("etc/conf.d/a"), Some(1000), Some(2000)).unwrap();
    fs::set_permissions(
        root.join("etc/conf.d/b"),
        std::os::unix::fs::PermissionsExt::from_mode(0o4755),
    )
    .unwrap();
    xattr_set(&root.join("etc/passwd"), "user.strata", b"v1");
    let long = "d".repeat(120);
    fs::create_dir_all(root.join(&long)).unwrap();
    fs::write(root.join(&long).join("f".repeat(150)), b"long").unwrap();
    // A sparse file: 8 MiB with a little data in the middle.
    let f = fs::File::create(root.join("sparse")).unwrap();
    f.set_len(8 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"middle", 4 << 20).unwrap();
    for p in walk(root) {
        stamp(&p, 1_500_000_000);
    }
}

fn xattr_set(p: &Path, k: &str, v: &[u8]) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(k).unwrap();
    // SAFETY: valid C strings and a live slice, as setxattr(2) requires.
    let r = unsafe { libc::lsetxattr(c.as_ptr(), n.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
    assert_eq!(r, 0, "setxattr {}", std::io::Error::last_os_error());
}

/// Every path under root, children before parents (so stamping parents
/// last keeps their mtime).
fn walk(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(root).unwrap() {
        let p = e.unwrap().path();
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

fn tree_tar(root: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    write_tree(root, &mut out).unwrap();
    out
}

fn sha(b: &[u8]) -> String {
    format!("{:x}", Sha256::digest(b))
}

#[test]
fn apply_then_write_tree_is_identical() {
    if !is_root() {
        return;
    }
    let d = scratch();
    let a = d.path().join("a");
    let b = d.path().join("b");
    fs::create_dir_all(&a).unwrap();
    fs::create_dir_all(&b).unwrap();
    populate(&a);
    let first = tree_tar(&a);
    let stats = apply_layer(&b, &first[..], &ApplyOptions::default()).unwrap();
    assert!(stats.entries > 10);
    let second = tree_tar(&b);
    assert_eq!(
        sha(&first),
        sha(&second),
        "apply -> write_tree is not identical"
    );
    assert_eq!(changes(Some(&a), &b).unwrap(), Vec::<Change>::new());
    // Hard link kept, sparse file kept sparse, device node kept.
    let m1 = fs::metadata(b.join("etc/passwd")).unwrap();
    let m2 = fs::metadata(b.join("etc/passwd.hl")).unwrap();
    assert_eq!(m1.ino(), m2.ino());
    let sp = fs::metadata(b.join("sparse")).unwrap();
    assert_eq!(sp.len(), 8 << 20);
    assert!(
        sp.blocks() * 512 < 1 << 20,
        "sparse file lost its holes: {} blocks",
        sp.blocks()
    );
    assert_eq!(
        fs::symlink_metadata(b.join("etc/null")).unwrap().rdev(),
        libc::makedev(1, 3)
    );
    // Metadata of the tree and the tar agree with the source.
    assert_eq!(
        fs::symlink_metadata(b.join("etc/conf.d/a")).unwrap().uid(),
        1000
    );
    assert_eq!(
        fs::symlink_metadata(b.join("etc/conf.d/b")).unwrap().mode() & 0o7777,
        0o4755
    );
    assert_eq!(
        fs::symlink_metadata(b.join("etc")).unwrap().mtime(),
        1_500_000_000
    );
}

fn whiteout_layer() -> Vec<u8> {
    RawTar::new()
        .dir("etc/")
        .file("etc/.wh.passwd", b"")
        .dir("etc/conf.d/")
        .file("etc/conf.d/.wh..wh..opq", b"")
        .file("etc/conf.d/new", b"new")
        .finish()
}

#[test]
fn whiteouts_as_real_deletions() {
    if !is_root() {
        return;
    }
    let d = scratch();
    populate(d.path());
    apply_layer(d.path(), &whiteout_layer()[..], &ApplyOptions::default()).unwrap();
    assert!(!d.path().join("etc/passwd").exists());
    assert!(d.path().join("etc/passwd.hl").exists());
    let names: Vec<_> = fs::read_dir(d.path().join("etc/conf.d"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("new")]);
}

#[test]
fn whiteouts_in_overlay_form() {
    if !is_root() {
        return;
    }
    let d = scratch();
    let opts = ApplyOptions {
        overlay_whiteouts: true,
        ..ApplyOptions::default()
    };
    apply_layer(d.path(), &whiteout_layer()[..], &opts).unwrap();
    let wh = fs::symlink_metadata(d.path().join("etc/passwd")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &wh.file_type()
    ));
    assert_eq!(wh.rdev(), 0);
    let c =
        std::ffi::CString::new(d.path().join("etc/conf.d").as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new("trusted.overlay.opaque").unwrap();
    let mut buf = [0u8; 8];
    // SAFETY: valid C strings and a writable buffer of the given length.
    let got =
        unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(got, 1);
    assert_eq!(buf[0], b'y');
    assert_eq!(fs::read(d.path().join("etc/conf.d/new")).unwrap(), b"new");
}

/// The same edit, done on a copy of `lower` at `root`.
fn edit(root: &Path) {
    // Not a hard-linked file: overlayfs (without index=on) breaks hard
    // links on copy-up, so such an edit is a different change there.
    fs::write(root.join("etc/conf.d/b"), b"bb").unwrap();
    fs::remove_file(root.join("etc/conf.d/a")).unwrap();
    fs::create_dir(root.join("srv")).unwrap();
    fs::write(root.join("srv/data"), b"data").unwrap();
    fs::set_permissions(
        root.join("etc/conf.d/b"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    for p in ["etc/conf.d/b", "srv/data", "srv", "etc/conf.d", "etc"] {
        stamp(&root.join(p), 1_700_000_000);
    }
}

fn expected_changes() -> Vec<String> {
    [
        "C /etc",
        "C /etc/conf.d",
        "D /etc/conf.d/a",
        "C /etc/conf.d/b",
        "A /srv",
        "A /srv/data",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn layer_of(root: &Path, ch: &[Change]) -> Vec<u8> {
    let mut out = Vec::new();
    write_layer(root, ch, &mut out).unwrap();
    out
}

#[test]
fn same_change_same_diff_id_walk_and_overlay() {
    if !is_root() {
        return;
    }
    let d = scratch();
    let lower = d.path().join("lower");
    fs::create_dir_all(&lower).unwrap();
    populate(&lower);
    let base = tree_tar(&lower);

    // Two full copies (vfs-like), edited identically.
    let mut digests = Vec::new();
    let mut layers = Vec::new();
    for name in ["copy1", "copy2"] {
        let up = d.path().join(name);
        fs::create_dir_all(&up).unwrap();
        apply_layer(&up, &base[..], &ApplyOptions::default()).unwrap();
        edit(&up);
        let ch = changes(Some(&lower), &up).unwrap();
        let lines: Vec<String> = ch.iter().map(|c| c.to_string()).collect();
        assert_eq!(lines, expected_changes());
        let layer = layer_of(&up, &ch);
        digests.push(sha(&layer));
        layers.push(layer);
    }
    assert_eq!(digests[0], digests[1]);

    // overlayfs: upper/work beside the lower, edit through the mount.
    let (upper, work, merged) = (
        d.path().join("upper"),
        d.path().join("work"),
        d.path().join("merged"),
    );
    for p in [&upper, &work, &merged] {
        fs::create_dir_all(p).unwrap();
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    match nix::mount::mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(opts.as_str()),
    ) {
        Ok(()) => {}
        Err(e) => {
            strata_driver_api::testing::skip(
                "archive_roundtrip::same_change_same_diff_id (overlay part)",
                &format!("mount overlay: {e}"),
            );
            return;
        }
    }
    let result = std::panic::catch_unwind(|| {
        edit(&merged);
        let ch = changes_overlay(Some(&lower), &upper).unwrap();
        let lines: Vec<String> = ch.iter().map(|c| c.to_string()).collect();
        assert_eq!(lines, expected_changes());
        sha(&layer_of(&merged, &ch))
    });
    nix::mount::umount(&merged).unwrap();
    assert_eq!(
        result.unwrap(),
        digests[0],
        "overlay layer differs from full-copy layer"
    );

    // Applying the layer onto a fresh copy reproduces the edit.
    let again = d.path().join("again");
    fs::create_dir_all(&again).unwrap();
    apply_layer(&again, &base[..], &ApplyOptions::default()).unwrap();
    apply_layer(&again, &layers[0][..], &ApplyOptions::default()).unwrap();
    assert_eq!(tree_tar(&again), tree_tar(&d.path().join("copy1")));
    assert!(changes(Some(&lower), &again)
        .unwrap()
        .iter()
        .any(|c| c.kind == ChangeKind::Deleted));
}
