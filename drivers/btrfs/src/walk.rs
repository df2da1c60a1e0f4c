//! Usage by walking a tree, for filesystems without quotas: allocated bytes
//! and inodes, each hard-linked inode counted once.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use strata_driver_api::{IoContext, Result, Usage};

/// Sums allocated bytes and counts inodes under `root` (itself included).
pub fn disk_usage(root: &Path) -> Result<Usage> {
    let mut seen = HashSet::new();
    let mut usage = Usage::default();
    let mut stack = vec![root.to_owned()];
    while let Some(path) = stack.pop() {
        let md = std::fs::symlink_metadata(&path).ctx("lstat", &path)?;
        if seen.insert((md.dev(), md.ino())) {
            usage.size += md.blocks() * 512;
            usage.inodes += 1;
        }
        if md.is_dir() {
            for entry in std::fs::read_dir(&path).ctx("readdir", &path)? {
                stack.push(entry.ctx("readdir", &path)?.path());
            }
        }
    }
    Ok(usage)
}
