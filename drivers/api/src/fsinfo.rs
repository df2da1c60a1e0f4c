//! What filesystem a path lives on.

use std::path::Path;

use nix::sys::statfs::{self, statfs};

/// Name of the filesystem type holding `path` (`ext4`, `xfs`, `btrfs`,
/// `tmpfs`, `overlay`, `nfs`, or `unknown (magic 0x..)`), from statfs.
pub fn fs_type_name(path: &Path) -> std::io::Result<String> {
    let magic = statfs(path)
        .map_err(std::io::Error::from)?
        .filesystem_type();
    let name = match magic {
        statfs::EXT4_SUPER_MAGIC => "ext4",
        statfs::XFS_SUPER_MAGIC => "xfs",
        statfs::BTRFS_SUPER_MAGIC => "btrfs",
        statfs::TMPFS_MAGIC => "tmpfs",
        statfs::OVERLAYFS_SUPER_MAGIC => "overlay",
        statfs::NFS_SUPER_MAGIC => "nfs",
        other => return Ok(format!("unknown (magic {:#x})", other.0)),
    };
    Ok(name.to_owned())
}

/// Whether the kernel lists filesystem `name` in `/proc/filesystems`.
pub fn kernel_has_fs(name: &str) -> std::io::Result<bool> {
    let text = std::fs::read_to_string("/proc/filesystems")?;
    Ok(text
        .lines()
        .any(|l| l.split_whitespace().last() == Some(name)))
}
