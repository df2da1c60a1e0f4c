//! Hostile and corrupt layer tars: each is refused with a clear error (or,
//! where container semantics allow it, confined to the root) and nothing
//! outside the root changes. Needs root (chown, mknod); skips otherwise.

mod common;

use std::io::Write;

use common::{RawTar, Sandbox};
use strata::archive::{apply_layer, decompress, ApplyOptions, ArchiveError};

fn is_root() -> bool {
    strata_driver_api::testing::require_root("archive_hostile")
}

/// Applies `tar` in a fresh sandbox, checks the outside is untouched and
/// returns the result plus the sandbox for further checks.
fn run(tar: Vec<u8>, overlay: bool) -> (Result<(), ArchiveError>, Sandbox) {
    let sb = Sandbox::new();
    let before = sb.outside();
    let opts = ApplyOptions {
        overlay_whiteouts: overlay,
        ..ApplyOptions::default()
    };
    let res = apply_layer(&sb.root(), &tar[..], &opts).map(|_| ());
    assert_eq!(before, sb.outside(), "something outside the root changed");
    (res, sb)
}

fn refused(tar: Vec<u8>, expect: &str) {
    for overlay in [false, true] {
        let (res, _sb) = run(tar.clone(), overlay);
        let err = res.expect_err("hostile archive was accepted");
        let msg = err.to_string();
        assert!(
            msg.contains(expect),
            "error {msg:?} does not mention {expect:?}"
        );
    }
}

#[test]
fn dotdot_traversal_is_refused() {
    if !is_root() {
        return;
    }
    refused(
        RawTar::new().file("../canary/file", b"pwned").finish(),
        "`..` component",
    );
    refused(
        RawTar::new().file("a/../../canary/x", b"pwned").finish(),
        "`..` component",
    );
    refused(RawTar::new().dir("..").finish(), "`..` component");
}

#[test]
fn absolute_path_is_refused() {
    if !is_root() {
        return;
    }
    let sb = Sandbox::new();
    let abs = format!("{}/pwned", sb.canary().display());
    refused(RawTar::new().file(&abs, b"pwned").finish(), "absolute path");
}

#[test]
fn relative_symlink_escape_is_refused() {
    if !is_root() {
        return;
    }
    refused(
        RawTar::new().symlink("evil", "../canary").finish(),
        "climbs out of the root",
    );
    refused(
        RawTar::new()
            .dir("a")
            .symlink("a/evil", "../../canary/file")
            .finish(),
        "climbs out",
    );
}

#[test]
fn symlinked_parent_stays_inside_root() {
    if !is_root() {
        return;
    }
    // An absolute symlink is legal in an image; following it must stay in
    // the root, so `evil/pwned` lands in root/<canary path>/pwned.
    let probe = Sandbox::new();
    let canary = probe.canary().display().to_string();
    for overlay in [false, true] {
        let tar = RawTar::new()
            .symlink("evil", &canary)
            .file("evil/pwned", b"pwned")
            .symlink("up", "/")
            .file("up/etc-pwned", b"pwned")
            .finish();
        let (res, sb) = run(tar, overlay);
        res.unwrap();
        // The sandbox has its own canary path; the link targets `probe`'s,
        // which we also check, along with the in-root landing place.
        assert!(!probe.canary().join("pwned").exists());
        let inside = sb.root().join(canary.trim_start_matches('/')).join("pwned");
        assert_eq!(std::fs::read(inside).unwrap(), b"pwned");
        assert!(sb.root().join("etc-pwned").exists());
    }
}

#[test]
fn symlink_then_file_replaces_the_link() {
    if !is_root() {
        return;
    }
    let probe = Sandbox::new();
    let target = probe.canary().join("file").display().to_string();
    let tar = RawTar::new()
        .symlink("x", &target)
        .file("x", b"new")
        .finish();
    let (res, sb) = run(tar, false);
    res.unwrap();
    assert_eq!(
        std::fs::read(probe.canary().join("file")).unwrap(),
        b"precious"
    );
    let m = std::fs::symlink_metadata(sb.root().join("x")).unwrap();
    assert!(m.is_file());
}

#[test]
fn hard_link_escapes_are_refused_or_confined() {
    if !is_root() {
        return;
    }
    refused(
        RawTar::new().hardlink("hl", "../canary/file").finish(),
        "hard link target",
    );
    let probe = Sandbox::new();
    let abs = probe.canary().join("file").display().to_string();
    refused(
        RawTar::new().hardlink("hl", &abs).finish(),
        "hard link target",
    );
    // Through a symlinked parent the target resolves inside the root, where
    // it does not exist.
    let canary = probe.canary().display().to_string();
    let tar = RawTar::new()
        .symlink("evil", &canary)
        .hardlink("hl", "evil/file")
        .finish();
    let (res, _sb) = run(tar, false);
    let msg = res
        .expect_err("hard link through symlink accepted")
        .to_string();
    assert!(msg.contains("evil/file"), "{msg}");
    let nlink = std::os::unix::fs::MetadataExt::nlink(
        &std::fs::metadata(probe.canary().join("file")).unwrap(),
    );
    assert_eq!(nlink, 1);
}

#[test]
fn whiteouts_outside_the_root_are_refused_or_confined() {
    if !is_root() {
        return;
    }
    refused(
        RawTar::new().file(".wh..", b"").finish(),
        "whiteout names no entry",
    );
    refused(
        RawTar::new().file("../.wh.canary", b"").finish(),
        "`..` component",
    );
    let probe = Sandbox::new();
    let canary = probe.canary().display().to_string();
    for overlay in [false, true] {
        let tar = RawTar::new()
            .symlink("evil", &canary)
            .file("evil/.wh.file", b"")
            .file("evil/.wh..wh..opq", b"")
            .finish();
        let (res, _sb) = run(tar, overlay);
        res.unwrap();
        assert_eq!(
            std::fs::read(probe.canary().join("file")).unwrap(),
            b"precious"
        );
    }
}

#[test]
fn huge_header_size_is_truncation() {
    if !is_root() {
        return;
    }
    let tar = RawTar::new()
        .lying_file("big", 1 << 40, b"only a few bytes")
        .finish();
    let (res, sb) = run(tar, false);
    match res {
        Err(ArchiveError::Truncated { path, declared, .. }) => {
            assert_eq!(path, "big");
            assert_eq!(declared, 1 << 40);
        }
        other => panic!("expected truncation, got {other:?}"),
    }
    // Nothing near the declared size was allocated.
    let m = std::fs::metadata(sb.root().join("big"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(m < 1 << 20);
}

#[test]
fn truncated_gzip_is_refused() {
    if !is_root() {
        return;
    }
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let tar = RawTar::new().file("a", &data).file("b", &data).finish();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let cut = gz[..gz.len() * 2 / 3].to_vec();
    let sb = Sandbox::new();
    let before = sb.outside();
    let err = apply_layer(
        &sb.root(),
        decompress(&cut[..]).unwrap(),
        &ApplyOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, ArchiveError::Read(_) | ArchiveError::Truncated { .. }),
        "{err}"
    );
    assert_eq!(before, sb.outside());
}

#[test]
fn garbage_is_a_read_error() {
    if !is_root() {
        return;
    }
    let mut junk = vec![0x41u8; 2048];
    junk[100] = 7;
    let (res, _sb) = run(junk, false);
    assert!(matches!(res, Err(ArchiveError::Read(_))), "{res:?}");
}
