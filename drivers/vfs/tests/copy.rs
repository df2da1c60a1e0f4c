//! Fidelity of `strata_vfs::copy_tree` on ext4 (/tmp) and on a reflink xfs
//! loop filesystem. Needs root (owners, device nodes, trusted.* xattrs).

use std::collections::BTreeMap;
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{symlink, FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::{AtFlags, AT_FDCWD};
use nix::sys::stat::{mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, Gid, Uid};
use strata_driver_api::testing::{require_root, skip, LoopFs, ScratchDir};
use strata_vfs::{copy_tree, copy_tree_with, CopyOptions};

const SPARSE_LEN: u64 = 1 << 30;

fn chown(p: &Path, uid: u32, gid: u32) {
    fchownat(
        AT_FDCWD,
        p,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// mtime far in the past, atime recent and newer (so relatime leaves it).
fn set_times(p: &Path, mtime_sec: i64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    utimensat(
        AT_FDCWD,
        p,
        &TimeSpec::new(now - 60, 123_456_789),
        &TimeSpec::new(mtime_sec, 987_654_321),
        UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// Builds a tree with every kind of file and metadata the copy must keep.
fn build_source(root: &Path) {
    fs::create_dir(root).unwrap();
    let sub = root.join("etc");
    fs::create_dir(&sub).unwrap();
    fs::write(sub.join("passwd"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
    let suid = root.join("suid-bin");
    fs::write(&suid, vec![0x7f; 5000]).unwrap();
    chown(&suid, 1000, 1001);
    chmod(&suid, 0o4755);
    let capped = root.join("ping");
    fs::write(&capped, b"ping").unwrap();
    chown(&capped, 0, 0);
    let st = Command::new("setcap")
        .arg("cap_net_raw+ep")
        .arg(&capped)
        .status();
    assert!(st.map(|s| s.success()).unwrap_or(false), "setcap failed");
    let attrs = root.join("attrs");
    fs::write(&attrs, b"x").unwrap();
    xattr::set(&attrs, "user.colour", b"blue").unwrap();
    xattr::set(&attrs, "trusted.overlay.opaque", b"y").unwrap();
    xattr::set(&attrs, "security.strata", b"label").unwrap();
    // Hard links, one of them in another directory.
    fs::write(root.join("a"), b"shared inode").unwrap();
    fs::hard_link(root.join("a"), root.join("b")).unwrap();
    fs::hard_link(root.join("a"), sub.join("c")).unwrap();
    // Symlinks (one dangling) with their own owner and times.
    symlink("etc/passwd", root.join("link")).unwrap();
    symlink("/nonexistent/target", root.join("dangling")).unwrap();
    chown(&root.join("link"), 42, 43);
    xattr::set(root.join("link"), "trusted.strata", b"on-a-symlink").unwrap();
    // Special files.
    let dev = root.join("dev");
    fs::create_dir(&dev).unwrap();
    mknod(
        &dev.join("null"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        libc::makedev(1, 3),
    )
    .unwrap();
    mknod(
        &dev.join("loop9"),
        SFlag::S_IFBLK,
        Mode::from_bits_truncate(0o660),
        libc::makedev(7, 9),
    )
    .unwrap();
    mknod(
        &dev.join("fifo"),
        SFlag::S_IFIFO,
        Mode::from_bits_truncate(0o644),
        0,
    )
    .unwrap();
    mknod(
        &dev.join("sock"),
        SFlag::S_IFSOCK,
        Mode::from_bits_truncate(0o755),
        0,
    )
    .unwrap();
    fs::hard_link(dev.join("fifo"), dev.join("fifo2")).unwrap();
    // A whiteout in overlay's form (char 0/0).
    mknod(
        &root.join("gone"),
        SFlag::S_IFCHR,
        Mode::empty(),
        libc::makedev(0, 0),
    )
    .unwrap();
    // Sparse: 1 GiB with 4 KiB of data in the middle and 4 KiB at the end.
    let mut f = fs::File::create(root.join("sparse")).unwrap();
    f.set_len(SPARSE_LEN).unwrap();
    f.seek(SeekFrom::Start(SPARSE_LEN / 2)).unwrap();
    f.write_all(&[0xab; 4096]).unwrap();
    f.seek(SeekFrom::Start(SPARSE_LEN - 4096)).unwrap();
    f.write_all(&[0xcd; 4096]).unwrap();
    drop(f);
    // Data that is not a multiple of a block, and an empty file.
    let data: Vec<u8> = (0..3_000_001u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(root.join("big"), &data).unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    // A locked directory with sticky / setgid bits, owned by someone else.
    let locked = root.join("locked");
    fs::create_dir(&locked).unwrap();
    fs::write(locked.join("inside"), b"hidden").unwrap();
    chmod(&locked.join("inside"), 0o000);
    chown(&locked, 1234, 5678);
    chmod(&locked, 0o3000);
    let tmp = root.join("tmp");
    fs::create_dir(&tmp).unwrap();
    chmod(&tmp, 0o1777);
    // Times last, deepest first, since creating entries touches parents.
    for (i, (p, _)) in walk(root).iter().rev().enumerate() {
        set_times(&root.join(p), 1_000_000_000 + i as i64);
    }
    chown(root, 7, 8);
    chmod(root, 0o751);
}

/// Relative paths of every entry with its metadata, parents before
/// children; each directory is stat'ed before it is read (reading moves its
/// atime).
fn walk(root: &Path) -> Vec<(PathBuf, fs::Metadata)> {
    let mut out = vec![(PathBuf::new(), fs::symlink_metadata(root).unwrap())];
    let mut i = 0;
    while i < out.len() {
        let p = root.join(&out[i].0);
        if out[i].1.is_dir() {
            let mut names: Vec<_> = fs::read_dir(&p)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            for n in names {
                let rel = out[i].0.join(n);
                let m = fs::symlink_metadata(root.join(&rel)).unwrap();
                out.push((rel, m));
            }
        }
        i += 1;
    }
    out
}

/// Everything observable about a tree, hard links as groups of names. File
/// contents are read only when `content` is set (reading moves atimes).
fn describe(root: &Path, with_content: bool) -> BTreeMap<PathBuf, String> {
    let mut inodes: BTreeMap<u64, Vec<PathBuf>> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (rel, m) in walk(root) {
        let p = root.join(&rel);
        let mut xattrs: Vec<String> = xattr::list(&p)
            .unwrap()
            .map(|n| {
                let v = xattr::get(&p, &n).unwrap().unwrap_or_default();
                format!("{}={:?}", n.to_string_lossy(), v)
            })
            .collect();
        xattrs.sort();
        let content = if !with_content {
            String::new()
        } else if m.file_type().is_symlink() {
            fs::read_link(&p).unwrap().display().to_string()
        } else if m.is_file() && m.len() < 10 << 20 {
            format!("{:x}", fnv(&fs::read(&p).unwrap()))
        } else {
            String::new()
        };
        if !m.is_dir() {
            inodes.entry(m.ino()).or_default().push(rel.clone());
        }
        let atime = if with_content {
            0
        } else {
            m.atime_nsec() + m.atime() * 1_000_000_000
        };
        let desc = format!(
            "mode={:o} uid={} gid={} rdev={} size={} mtime={}.{} atime={} nlink={} xattrs={:?} content={}",
            m.mode(), m.uid(), m.gid(), m.rdev(), if m.is_dir() { 0 } else { m.len() },
            m.mtime(), m.mtime_nsec(), atime,
            if m.is_dir() { 0 } else { m.nlink() }, xattrs, content
        );
        out.insert(rel, desc);
    }
    for names in inodes.values().filter(|n| n.len() > 1) {
        for n in names {
            let e = out.get_mut(n).unwrap();
            e.push_str(&format!(" links={names:?}"));
        }
    }
    out
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100000001b3)
    })
}

fn assert_same(a: &BTreeMap<PathBuf, String>, b: &BTreeMap<PathBuf, String>) {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, v) in a {
        assert_eq!(v, &b[k], "metadata of {} differs", k.display());
    }
}

fn check_sparse(dst: &Path) {
    let m = fs::metadata(dst.join("sparse")).unwrap();
    assert_eq!(m.len(), SPARSE_LEN);
    assert!(
        m.blocks() * 512 <= 1 << 20,
        "sparse copy allocated {} bytes",
        m.blocks() * 512
    );
    let f = fs::File::open(dst.join("sparse")).unwrap();
    let at = |off: u64| {
        let mut buf = vec![0u8; 4096];
        f.read_exact_at(&mut buf, off).unwrap();
        buf
    };
    assert_eq!(at(0), vec![0; 4096]);
    assert_eq!(at(SPARSE_LEN / 2 - 4096), vec![0; 4096]);
    assert_eq!(at(SPARSE_LEN / 2), vec![0xab; 4096]);
    assert_eq!(at(SPARSE_LEN - 4096), vec![0xcd; 4096]);
}

fn fidelity(base: &Path, options: CopyOptions) -> strata_vfs::CopyStats {
    let (src, dst) = (base.join("src"), base.join("dst"));
    build_source(&src);
    // Settle atimes: the first read after utimensat moves them (relatime).
    describe(&src, true);
    let before = describe(&src, false);
    let stats = copy_tree_with(&src, &dst, options).expect("copy_tree");
    // Metadata (atimes included) as it was before the copy read the source.
    assert_same(&before, &describe(&dst, false));
    // Contents (atimes left out: reading moves them).
    assert_same(&describe(&src, true), &describe(&dst, true));
    check_sparse(&dst);
    assert_eq!(stats.hard_links, 3, "{stats:?}");
    assert_eq!(stats.specials, 5, "{stats:?}");
    assert_eq!(stats.symlinks, 2, "{stats:?}");
    stats
}

/// A reflink-capable xfs loop filesystem, or `None` after a loud skip.
fn xfs(test: &str) -> Option<LoopFs> {
    match LoopFs::new("xfs", 2 << 30, &["-m", "reflink=1"]) {
        Ok(fs) => Some(fs),
        Err(e) => {
            skip(test, &format!("cannot make an xfs loop filesystem: {e}"));
            None
        }
    }
}

#[test]
fn copy_keeps_everything_on_ext4_tmp() {
    if !require_root("copy_keeps_everything_on_ext4_tmp") {
        return;
    }
    let scratch = ScratchDir::new("vfs-copy");
    let stats = fidelity(scratch.path(), CopyOptions::default());
    // /tmp is ext4 here: no reflink, data copied sparsely.
    assert_eq!(stats.reflinked, 0, "{stats:?}");
    assert!(stats.bytes_copied >= 3_000_001 + 8192, "{stats:?}");
}

#[test]
fn copy_reflinks_on_xfs() {
    let test = "copy_reflinks_on_xfs";
    if !require_root(test) {
        return;
    }
    let Some(fs) = xfs(test) else {
        return;
    };
    let stats = fidelity(fs.path(), CopyOptions::default());
    assert_eq!(stats.reflinked, stats.files, "{stats:?}");
    assert_eq!(stats.bytes_copied, 0, "{stats:?}");
    // A reflinked 64 MiB file costs (almost) no space.
    let big = fs.path().join("big64");
    fs::write(&big, vec![0x5a; 64 << 20]).unwrap();
    fs::create_dir(fs.path().join("one")).unwrap();
    fs::rename(&big, fs.path().join("one/big64")).unwrap();
    nix::unistd::sync();
    let free = || nix::sys::statvfs::statvfs(fs.path()).unwrap().blocks_free() * 4096;
    let before = free();
    copy_tree(&fs.path().join("one"), &fs.path().join("two")).unwrap();
    nix::unistd::sync();
    let used = before.saturating_sub(free());
    assert!(used < 8 << 20, "reflinked copy used {used} bytes");
}

#[test]
fn copy_without_reflink_on_xfs_is_sparse() {
    let test = "copy_without_reflink_on_xfs_is_sparse";
    if !require_root(test) {
        return;
    }
    let Some(fs) = xfs(test) else {
        return;
    };
    let stats = fidelity(fs.path(), CopyOptions { reflink: false });
    assert_eq!(stats.reflinked, 0, "{stats:?}");
}

#[test]
fn copy_rejects_a_file_source() {
    let scratch = ScratchDir::new("vfs-copy-file");
    let f = scratch.path().join("f");
    fs::write(&f, b"x").unwrap();
    assert!(copy_tree(&f, &scratch.path().join("d")).is_err());
}
