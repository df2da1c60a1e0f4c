//! Hostile and corrupt layer tars: each is refused with a clear error (or,
//! where container semantics allow it, confined to the root) and nothing
//! outside the root changes. Needs root (chown, mknod); skips otherwise.

mod common;

use std::io::Write;

use common::{sparse_tar, RawTar, Sandbox};
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

// ---- size limits (issue 18 points 2, 3 and 8) ----

use std::time::Instant;

use strata::archive::ApplyLimits;

fn limited(max_bytes: u64) -> ApplyOptions {
    ApplyOptions {
        limits: ApplyLimits {
            max_bytes,
            ..ApplyLimits::default()
        },
        ..ApplyOptions::default()
    }
}

/// A ustar header of `kind` named `name` declaring `size` bytes.
fn raw_header(name: &[u8], kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(size);
    h.as_ustar_mut().unwrap().name[..name.len()].copy_from_slice(name);
    h.set_cksum();
    h
}

fn apply_opts(tar: &[u8], opts: &ApplyOptions) -> (Result<(), ArchiveError>, Sandbox) {
    let sb = Sandbox::new();
    let before = sb.outside();
    let res = apply_layer(&sb.root(), tar, opts).map(|_| ());
    assert_eq!(before, sb.outside(), "something outside the root changed");
    (res, sb)
}

#[test]
fn huge_extension_headers_are_refused_before_reading() {
    if !is_root() {
        return;
    }
    // Each declares 256 MiB but carries 10 KB: the guard refuses at the
    // header, so nothing near the declared size is read or allocated.
    for (kind, expect) in [
        (tar::EntryType::GNULongName, "GNU long name"),
        (tar::EntryType::GNULongLink, "GNU long link name"),
        (tar::EntryType::XHeader, "PAX extended header"),
        (tar::EntryType::XGlobalHeader, "PAX global header"),
    ] {
        let mut tar = raw_header(b"././@LongLink", kind, 256 << 20)
            .as_bytes()
            .to_vec();
        tar.extend(std::iter::repeat_n(b'a', 10_000));
        let (res, _sb) = apply_opts(&tar, &ApplyOptions::default());
        let err = res.expect_err("a 256 MiB extension header was accepted");
        assert!(matches!(err, ArchiveError::Limit(_)), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(expect), "{msg}");
        assert!(msg.contains("268435456 bytes is over"), "{msg}");
        assert!(msg.len() < 300, "error message of {} bytes", msg.len());
    }
}

#[test]
fn long_names_under_the_cap_give_short_messages() {
    if !is_root() {
        return;
    }
    // A 200 KB name passes the header cap; the kernel refuses it, and the
    // message shows only its start.
    let name = vec![b'n'; 200_000];
    let mut tar = raw_header(
        b"././@LongLink",
        tar::EntryType::GNULongName,
        name.len() as u64,
    )
    .as_bytes()
    .to_vec();
    tar.extend_from_slice(&name);
    tar.extend(std::iter::repeat_n(0u8, (512 - name.len() % 512) % 512));
    tar.extend_from_slice(RawTar::new().file("x", b"data").finish().as_slice());
    let (res, _sb) = apply_opts(&tar, &ApplyOptions::default());
    let msg = res.expect_err("a 200 KB name was created").to_string();
    assert!(
        msg.len() < 600,
        "error message of {} bytes: {msg}",
        msg.len()
    );
    assert!(msg.contains("(200000 bytes)"), "{msg}");
}

#[test]
fn terminal_escapes_in_names_are_escaped_in_errors() {
    if !is_root() {
        return;
    }
    for tar in [
        RawTar::new().file("\x1b]0;owned\x07/../x", b"").finish(),
        RawTar::new()
            .symlink("l\x1b[2J", "../../\x1b[31mx")
            .finish(),
        RawTar::new().hardlink("h", "/\x1b[2Jetc").finish(),
    ] {
        let (res, _sb) = apply_opts(&tar, &ApplyOptions::default());
        let msg = res.expect_err("hostile name accepted").to_string();
        assert!(!msg.contains('\x1b') && !msg.contains('\x07'), "{msg:?}");
        assert!(msg.contains("\\x1b"), "{msg}");
    }
}

#[test]
fn sparse_entries_become_holes_without_expanding() {
    if !is_root() {
        return;
    }
    use std::os::unix::fs::{FileExt, MetadataExt};
    const REAL: u64 = 16 << 30;
    // 25 segments: 4 in the header, 21 in one extension block.
    let segments: Vec<(u64, Vec<u8>)> = (0..25u64)
        .map(|i| (i * (512 << 20), vec![b'a' + i as u8; 512]))
        .collect();
    let tar = sparse_tar("big", REAL, &segments);
    assert!(tar.len() < 16_000, "{} bytes", tar.len());
    for overlay in [false, true] {
        let opts = ApplyOptions {
            overlay_whiteouts: overlay,
            ..limited(32 << 30)
        };
        let start = Instant::now();
        let (res, sb) = apply_opts(&tar, &opts);
        res.unwrap();
        let took = start.elapsed();
        assert!(took.as_secs() < 5, "a 16 GiB sparse entry took {took:?}");
        let f = std::fs::File::open(sb.root().join("big")).unwrap();
        let m = f.metadata().unwrap();
        assert_eq!(m.len(), REAL);
        assert!(
            m.blocks() * 512 < 4 << 20,
            "{} bytes allocated",
            m.blocks() * 512
        );
        for (off, d) in &segments {
            let mut got = vec![0u8; d.len() + 1];
            f.read_exact_at(&mut got, *off).unwrap();
            assert_eq!(&got[..d.len()], &d[..]);
            assert_eq!(got[d.len()], 0);
        }
    }
    // Over the limit: refused at the header, before the file exists.
    let (res, sb) = apply_opts(&tar, &limited(1 << 30));
    let err = res.expect_err("16 GiB sparse entry under a 1 GiB limit");
    assert!(matches!(err, ArchiveError::Limit(_)), "{err:?}");
    assert!(err.to_string().contains("big"), "{err}");
    assert!(!sb.root().join("big").exists());
}

#[test]
fn malformed_sparse_maps_are_refused() {
    if !is_root() {
        return;
    }
    // Overlapping segments, and segments past the real size.
    for (real, segs) in [
        (
            1 << 20,
            vec![(4096u64, vec![1u8; 512]), (4096, vec![2u8; 512])],
        ),
        (1024, vec![(4096u64, vec![1u8; 512])]),
    ] {
        let (res, _sb) = apply_opts(&sparse_tar("s", real, &segs), &ApplyOptions::default());
        let err = res.expect_err("malformed sparse map accepted");
        assert!(err.to_string().contains("sparse"), "{err}");
    }
}

#[test]
fn expanded_size_is_checked_before_writing() {
    if !is_root() {
        return;
    }
    let tar = RawTar::new()
        .file("small", b"ok")
        .file("big", &vec![7u8; 2 << 20])
        .finish();
    let (res, sb) = apply_opts(&tar, &limited(1 << 20));
    let err = res.expect_err("2 MiB entry under a 1 MiB limit");
    let msg = err.to_string();
    assert!(
        msg.contains("entry big") && msg.contains("1048576"),
        "{msg}"
    );
    assert!(sb.root().join("small").exists());
    assert!(
        !sb.root().join("big").exists(),
        "the refused entry was written"
    );
    // The same layer within its limit applies.
    let (res, _sb) = apply_opts(&tar, &limited(4 << 20));
    res.unwrap();
}

#[test]
fn trailing_data_after_the_archive_is_capped() {
    if !is_root() {
        return;
    }
    let mut tar = RawTar::new().file("a", b"a").finish();
    tar.extend(std::iter::repeat_n(0u8, 64 << 10));
    let (res, _sb) = apply_opts(&tar, &ApplyOptions::default());
    res.expect("64 KiB of padding is normal");
    tar.extend(std::iter::repeat_n(0u8, 2 << 20));
    let (res, _sb) = apply_opts(&tar, &ApplyOptions::default());
    let msg = res.expect_err("2 MiB after the end accepted").to_string();
    assert!(msg.contains("after the end"), "{msg}");
}

#[test]
fn a_pax_size_consumed_by_a_global_header_does_not_blind_the_guard() {
    if !is_root() {
        return;
    }
    // The tar crate hands the global header out as an entry, consuming the
    // PAX size: the file after it has size 0, and the long name after that
    // must still be seen (and refused) as a header.
    let record = b"19 size=1073741824\n";
    let mut tar = raw_header(b"pax", tar::EntryType::XHeader, record.len() as u64)
        .as_bytes()
        .to_vec();
    tar.extend_from_slice(record);
    tar.extend(std::iter::repeat_n(0u8, 512 - record.len()));
    tar.extend_from_slice(raw_header(b"global", tar::EntryType::XGlobalHeader, 0).as_bytes());
    tar.extend_from_slice(raw_header(b"a", tar::EntryType::Regular, 0).as_bytes());
    tar.extend_from_slice(
        raw_header(b"././@LongLink", tar::EntryType::GNULongName, 256 << 20).as_bytes(),
    );
    tar.extend(std::iter::repeat_n(b'a', 10_000));
    let (res, _sb) = apply_opts(&tar, &ApplyOptions::default());
    let msg = res
        .expect_err("long name after a global header accepted")
        .to_string();
    assert!(msg.contains("GNU long name"), "{msg}");
}

#[test]
fn huge_sparse_maps_are_refused() {
    if !is_root() {
        return;
    }
    // 100,000 one-byte segments: a 2.4 MB map, over the 1 MiB header cap.
    let segments: Vec<(u64, Vec<u8>)> = (0..100_000u64).map(|i| (i * 4096, vec![1u8])).collect();
    let tar = sparse_tar("holes", 100_000 * 4096, &segments);
    let (res, sb) = apply_opts(&tar, &ApplyOptions::default());
    let msg = res.expect_err("a 2.4 MB sparse map was read").to_string();
    assert!(msg.contains("sparse map of entry holes"), "{msg}");
    assert!(!sb.root().join("holes").exists());
}

// ---- `strata cp` into a live container ----

use std::io::Read;
use std::path::PathBuf;

use strata::archive::apply_staged_beneath;

/// The tar of `cp`, which a process in the container races: once the tar
/// is read to its end (the entries are applied), every `.strata-cp-*`
/// staging directory in `dir` is renamed away and replaced by a symlink to
/// `target`, as a process watching the directory with inotify can do.
struct SwapStageAtEnd {
    tar: std::io::Cursor<Vec<u8>>,
    dir: PathBuf,
    target: PathBuf,
    swapped: bool,
}

impl Read for SwapStageAtEnd {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.tar.read(buf)?;
        if n == 0 && !buf.is_empty() && !self.swapped {
            self.swapped = true;
            for e in std::fs::read_dir(&self.dir).unwrap() {
                let path = e.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if name.starts_with(".strata-cp-") {
                    std::fs::rename(&path, self.dir.join(format!("moved{name}"))).unwrap();
                    std::os::unix::fs::symlink(&self.target, &path).unwrap();
                }
            }
        }
        Ok(n)
    }
}

#[test]
fn a_swapped_staging_directory_does_not_move_host_files() {
    if !is_root() {
        return;
    }
    // `strata cp ./file ctr:/file`: the staged `file` is renamed onto
    // `/file`. With the staging directory swapped for a symlink to a host
    // directory, the rename took the host's `file` into the container.
    let sb = Sandbox::new();
    let before = sb.outside();
    let tar = RawTar::new().file("file", b"from the host user").finish();
    let reader = SwapStageAtEnd {
        tar: std::io::Cursor::new(tar),
        dir: sb.root(),
        target: sb.canary(),
        swapped: false,
    };
    let res = apply_staged_beneath(
        &sb.root(),
        std::path::Path::new(""),
        std::path::Path::new("file"),
        reader,
        &ApplyOptions::default(),
    );
    assert_eq!(before, sb.outside(), "a host file was moved: {res:?}");
    if res.is_ok() {
        assert_eq!(
            std::fs::read(sb.root().join("file")).unwrap(),
            b"from the host user"
        );
    }
}

#[test]
fn a_file_swapped_for_a_symlink_while_applied_keeps_host_modes() {
    if !is_root() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    // `strata cp - ctr:/dir` into a live container: a process in it swaps
    // each file cp creates for a symlink to a host file. The mode of the
    // entry must never land on what the symlink names.
    let sb = Sandbox::new();
    let secret = sb.canary().join("file");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let tar = {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o4777);
        h.set_size(64 << 10);
        let mut b = tar::Builder::new(Vec::new());
        b.append_data(&mut h, "x", &vec![7u8; 64 << 10][..])
            .unwrap();
        b.into_inner().unwrap()
    };
    let stop = AtomicBool::new(false);
    let root = sb.root();
    std::thread::scope(|s| {
        s.spawn(|| {
            let tmp = root.join(".link");
            while !stop.load(Ordering::Relaxed) {
                let _ = std::os::unix::fs::symlink(&secret, &tmp);
                let _ = std::fs::rename(&tmp, root.join("x"));
            }
        });
        let started = Instant::now();
        for _ in 0..3000 {
            let _ = strata::archive::apply_beneath(
                &root,
                std::path::Path::new(""),
                &tar[..],
                &ApplyOptions::default(),
            );
            let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
            if mode & 0o7777 != 0o600 || started.elapsed().as_secs() > 20 {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o600, "the host file's mode was changed");
}

#[test]
fn whiting_out_a_very_deep_tree_does_not_crash() {
    if !is_root() {
        return;
    }
    // Each entry names at most 4 KB, but a symlink to a deep directory makes
    // the next one start there: 3 hops make an 8000-deep tree from a 40 KB
    // tar. The whiteout of its top removed it by recursion, one frame (and
    // one descriptor) per level: past a few thousand levels, with a high
    // open-file limit, the process overflowed its stack and aborted.
    let deep = "a/".repeat(1998);
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |kind: tar::EntryType, name: String, link: Option<String>| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(0o755);
        h.set_size(0);
        match link {
            Some(l) => b.append_link(&mut h, name, l).unwrap(),
            None => b.append_data(&mut h, name, &[][..]).unwrap(),
        }
    };
    add(tar::EntryType::Directory, format!("x0/{deep}"), None);
    for k in 1..=3 {
        let target = format!("x{}/{}", k - 1, &deep[..deep.len() - 1]);
        add(tar::EntryType::Symlink, format!("x{k}"), Some(target));
        add(tar::EntryType::Directory, format!("x{k}/{deep}"), None);
    }
    add(tar::EntryType::Regular, ".wh.x0".to_owned(), None);
    let tar = b.into_inner().unwrap();
    let sb = Sandbox::new();
    let before = sb.outside();
    let root = sb.root();
    let res = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || apply_layer(&root, &tar[..], &ApplyOptions::default()).map(|_| ()))
        .unwrap()
        .join()
        .expect("apply panicked");
    assert_eq!(before, sb.outside(), "something outside the root changed");
    res.expect("apply of a deep tree and its whiteout");
    assert!(
        !sb.root().join("x0").exists(),
        "the whited-out tree is left"
    );
}
