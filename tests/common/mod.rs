//! Shared helpers of the integration tests: running the strata binary and
//! building small images locally.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

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
    assert!(!out.status.success(), "strata {args:?} succeeded but should have failed");
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
        b.append_link(&mut h, format!("bin/{app}"), "busybox").expect("symlink");
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
