//! `du`-style usage by walking a tree: allocated blocks of the unique inodes
//! under a directory, for drivers with no cheaper accounting.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::{IoContext, Result, Usage};

/// Sums `st_blocks * 512` over the distinct inodes under `root` (the root
/// included) and counts them; hard links are counted once. Shared reflinked
/// extents are counted in full, like `du` does.
pub fn disk_usage(root: &Path) -> Result<Usage> {
    let mut seen = HashSet::new();
    let mut usage = Usage::default();
    let meta = std::fs::symlink_metadata(root).ctx("stat", root)?;
    account(&meta, &mut seen, &mut usage);
    if meta.is_dir() {
        walk(root, &mut seen, &mut usage)?;
    }
    Ok(usage)
}

fn walk(dir: &Path, seen: &mut HashSet<(u64, u64)>, usage: &mut Usage) -> Result<()> {
    for entry in std::fs::read_dir(dir).ctx("read directory", dir)? {
        let entry = entry.ctx("read directory", dir)?;
        let path = entry.path();
        let meta = entry.metadata().ctx("stat", &path)?;
        account(&meta, seen, usage);
        if meta.is_dir() {
            walk(&path, seen, usage)?;
        }
    }
    Ok(())
}

fn account(meta: &std::fs::Metadata, seen: &mut HashSet<(u64, u64)>, usage: &mut Usage) {
    if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
        return;
    }
    usage.size += meta.blocks() * 512;
    usage.inodes += 1;
}
