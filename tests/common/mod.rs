//! Helpers shared by the archive and image tests: raw tar building (the
//! tar crate's builder refuses the hostile names we need) and tree checks;
//! running the strata binary and building small images locally.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Builds tars entry by entry with raw, unchecked names.
#[derive(Default)]
pub struct RawTar {
    pub buf: Vec<u8>,
}

impl RawTar {
    pub fn new() -> Self {
        Self::default()
    }

    fn header(
        &mut self,
        name: &[u8],
        kind: tar::EntryType,
        size: u64,
        link: &[u8],
        mode: u32,
    ) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        let u = h.as_ustar_mut().unwrap();
        u.name[..name.len()].copy_from_slice(name);
        u.linkname[..link.len()].copy_from_slice(link);
        h.set_cksum();
        h
    }

    fn push(&mut self, h: tar::Header, data: &[u8]) {
        self.buf.extend_from_slice(h.as_bytes());
        self.buf.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.buf.extend(std::iter::repeat_n(0u8, pad));
    }

    pub fn file(mut self, name: &str, data: &[u8]) -> Self {
        let h = self.header(
            name.as_bytes(),
            tar::EntryType::Regular,
            data.len() as u64,
            b"",
            0o644,
        );
        self.push(h, data);
        self
    }

    pub fn dir(mut self, name: &str) -> Self {
        let h = self.header(name.as_bytes(), tar::EntryType::Directory, 0, b"", 0o755);
        self.push(h, b"");
        self
    }

    pub fn symlink(mut self, name: &str, target: &str) -> Self {
        let h = self.header(
            name.as_bytes(),
            tar::EntryType::Symlink,
            0,
            target.as_bytes(),
            0o777,
        );
        self.push(h, b"");
        self
    }

    pub fn hardlink(mut self, name: &str, target: &str) -> Self {
        let h = self.header(
            name.as_bytes(),
            tar::EntryType::Link,
            0,
            target.as_bytes(),
            0o644,
        );
        self.push(h, b"");
        self
    }

    /// A file header that declares `declared` bytes but carries `data`.
    pub fn lying_file(mut self, name: &str, declared: u64, data: &[u8]) -> Self {
        let h = self.header(
            name.as_bytes(),
            tar::EntryType::Regular,
            declared,
            b"",
            0o644,
        );
        self.buf.extend_from_slice(h.as_bytes());
        self.buf.extend_from_slice(data);
        self
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend(std::iter::repeat_n(0u8, 1024));
        self.buf
    }
}

/// A GNU sparse entry: `real` bytes long, data `segments` (offset, bytes),
/// using an extension block when there are more than 4.
pub fn sparse_tar(name: &str, real: u64, segments: &[(u64, Vec<u8>)]) -> Vec<u8> {
    fn octal(field: &mut [u8; 12], v: u64) {
        // Twelve octal digits (no NUL) reach 64 GiB.
        let s = format!("{v:012o}");
        field.copy_from_slice(s.as_bytes());
    }
    let stored: u64 = segments.iter().map(|(_, d)| d.len() as u64).sum();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::GNUSparse);
    h.set_mode(0o644);
    h.set_size(stored);
    h.set_path(name).unwrap();
    let gnu = h.as_gnu_mut().unwrap();
    octal(&mut gnu.realsize, real);
    for (slot, (off, d)) in gnu.sparse.iter_mut().zip(segments) {
        octal(&mut slot.offset, *off);
        octal(&mut slot.numbytes, d.len() as u64);
    }
    let mut ext = Vec::new();
    for chunk in segments.get(4..).unwrap_or(&[]).chunks(21) {
        let mut e = tar::GnuExtSparseHeader::new();
        for (slot, (off, d)) in e.sparse_mut().iter_mut().zip(chunk) {
            octal(&mut slot.offset, *off);
            octal(&mut slot.numbytes, d.len() as u64);
        }
        ext.push(e);
    }
    let n = ext.len();
    for (i, e) in ext.iter_mut().enumerate() {
        e.set_is_extended(i + 1 < n);
    }
    gnu.isextended[0] = u8::from(n > 0);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    for e in &ext {
        out.extend_from_slice(e.as_bytes());
    }
    for (_, d) in segments {
        out.extend_from_slice(d);
    }
    out.extend(std::iter::repeat_n(
        0u8,
        (512 - (stored % 512) as usize) % 512,
    ));
    out.extend(std::iter::repeat_n(0u8, 1024));
    out
}

/// A scratch area: `root/` (the apply target) and `canary/` beside it.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("strata-test-archive-")
            .tempdir()
            .unwrap();
        fs::create_dir(dir.path().join("root")).unwrap();
        fs::create_dir(dir.path().join("canary")).unwrap();
        fs::write(dir.path().join("canary/file"), b"precious").unwrap();
        Sandbox { dir }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn canary(&self) -> PathBuf {
        self.dir.path().join("canary")
    }

    /// Everything outside `root`: path -> (mode, size, nlink, mtime, content).
    pub fn outside(&self) -> BTreeMap<PathBuf, String> {
        let mut out = BTreeMap::new();
        snapshot(self.dir.path(), &self.root(), &mut out);
        out
    }
}

fn snapshot(dir: &Path, skip: &Path, out: &mut BTreeMap<PathBuf, String>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p == skip {
            continue;
        }
        let m = fs::symlink_metadata(&p).unwrap();
        let content = if m.is_file() {
            fs::read(&p).unwrap()
        } else {
            Vec::new()
        };
        out.insert(
            p.clone(),
            format!(
                "{:o} {} {} {} {:?}",
                m.mode(),
                m.len(),
                m.nlink(),
                m.mtime(),
                content
            ),
        );
        if m.is_dir() {
            snapshot(&p, skip, out);
        }
    }
}

/// Sets the access and modification times of `path` (not following a
/// symlink) to `secs`, so trees built at different times hash alike.
pub fn stamp(path: &Path, secs: i64) {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    let t = nix::sys::time::TimeSpec::new(secs, 0);
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .unwrap_or_else(|e| panic!("utimensat {}: {e}", path.display()));
}

/// Runs `strata --root ROOT ARGS...`.
pub fn strata(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env("STRATA_LOG", "warn")
        .output()
        .expect("run strata")
}

/// Runs strata and returns stdout, panicking with stderr on failure.
pub fn strata_ok(root: &Path, args: &[&str]) -> String {
    let out = strata(root, args);
    assert!(
        out.status.success(),
        "strata {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// Runs strata expecting failure; returns stderr.
pub fn strata_err(root: &Path, args: &[&str]) -> String {
    let out = strata(root, args);
    assert!(
        !out.status.success(),
        "strata {args:?} succeeded but should have failed"
    );
    String::from_utf8(out.stderr).expect("utf-8 stderr")
}

/// The last line of a command's output (docker's id convention).
pub fn last_line(text: &str) -> String {
    text.lines().last().unwrap_or("").trim().to_owned()
}

/// Writes a tar of a tiny rootfs: busybox (or a stand-in script when
/// busybox-static is missing), a few symlinks and /etc/motd.
pub fn busybox_rootfs_tar(path: &Path, motd: &str) {
    let file = std::fs::File::create(path).expect("create tar");
    let mut b = tar::Builder::new(file);
    let dir = |b: &mut tar::Builder<std::fs::File>, name: &str| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, name, std::io::empty()).expect("dir");
    };
    let file_entry = |b: &mut tar::Builder<std::fs::File>, name: &str, data: &[u8], mode: u32| {
        let mut h = tar::Header::new_ustar();
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, name, data).expect("file");
    };
    for d in ["bin", "etc", "tmp"] {
        dir(&mut b, d);
    }
    let busybox = std::fs::read("/bin/busybox").unwrap_or_else(|_| b"#!/bin/sh\n".to_vec());
    file_entry(&mut b, "bin/busybox", &busybox, 0o755);
    for app in ["sh", "ls", "cat", "echo"] {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        h.set_mtime(1_700_000_000);
        b.append_link(&mut h, format!("bin/{app}"), "busybox")
            .expect("symlink");
    }
    file_entry(&mut b, "etc/motd", motd.as_bytes(), 0o644);
    b.finish().expect("finish tar");
}

/// Mount points at or below `dir`.
pub fn mounts_below(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(dir))
        .map(str::to_owned)
        .collect()
}

/// The driver's backing files as `strata info --format json` reports them:
/// (file, loop devices, mount point if mounted).
pub fn backing_of(root: &Path) -> Vec<(PathBuf, Vec<PathBuf>, Option<PathBuf>)> {
    let info: serde_json::Value =
        serde_json::from_str(&strata_ok(root, &["--format", "json", "info"])).expect("info json");
    info["backing"]
        .as_array()
        .expect("info has a backing list")
        .iter()
        .map(|b| {
            let path = |v: &serde_json::Value| PathBuf::from(v.as_str().expect("path"));
            let devices = b["loop_devices"].as_array().expect("devices");
            let mounted = b["mounted"].as_bool().expect("mounted");
            (
                path(&b["file"]),
                devices.iter().map(path).collect(),
                b["mount_point"]
                    .as_str()
                    .filter(|_| mounted)
                    .map(PathBuf::from),
            )
        })
        .collect()
}

/// Mount points at or below `root` other than the driver's own backing
/// mount, which stays mounted between commands (until `strata release`).
pub fn stray_mounts_below(root: &Path) -> Vec<String> {
    let canonical = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let backing: Vec<PathBuf> = backing_of(root)
        .into_iter()
        .filter_map(|(_, _, m)| m.map(|m| canonical(&m)))
        .collect();
    mounts_below(root)
        .into_iter()
        .filter(|m| !backing.contains(&canonical(Path::new(m))))
        .collect()
}
