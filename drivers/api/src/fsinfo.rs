//! What filesystem a path lives on, how many inodes a filesystem image or
//! device uses, and making a filesystem's writes durable.

use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::Path;

use nix::sys::statfs::{self, statfs};

use crate::{Error, IoContext, Result};

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

/// Total bytes of the filesystem holding `path` (statfs: blocks × fragment
/// size), e.g. the most a sparse image file on it can ever hold.
pub fn fs_capacity(path: &Path) -> Result<u64> {
    let st = nix::sys::statvfs::statvfs(path).ctx("statfs", path)?;
    Ok(st.blocks().saturating_mul(st.fragment_size()))
}

/// Writes everything written to the filesystem holding `path` to its disk
/// (`syncfs`), reporting a failed writeback. Drivers call it on commit, so
/// a committed layer's files never sit only in the page cache while its
/// record says committed (a power loss would leave them empty).
pub fn sync_filesystem(path: &Path) -> Result<()> {
    let dir = std::fs::File::open(path).ctx("open", path)?;
    nix::unistd::syncfs(&dir).ctx("syncfs", path)
}

/// Inodes in use in the ext4 or xfs filesystem on `source`, an image file
/// or a block device: statfs of a mount of it while it is mounted (the
/// superblock's counters lag then), else the counters in its superblock
/// (exact once unmounted). No walk either way.
pub fn used_inodes(source: &Path) -> Result<u64> {
    let is_device = std::fs::metadata(source)
        .ctx("stat", source)?
        .file_type()
        .is_block_device();
    let points = if is_device {
        crate::mount::device_mount_points(source)?
    } else {
        crate::mount::loop_mount_points(source)?
    };
    if let Some(point) = points.first() {
        let st = nix::sys::statvfs::statvfs(point).ctx("statfs", point)?;
        return Ok(st.files().saturating_sub(st.files_free()));
    }
    let mut head = [0u8; 2048];
    std::fs::File::open(source)
        .and_then(|f| f.read_exact_at(&mut head, 0))
        .ctx("read superblock of", source)?;
    let be = |at: usize| u64::from_be_bytes(head[at..at + 8].try_into().expect("8 bytes"));
    let le = |at: usize| {
        u64::from(u32::from_le_bytes(
            head[at..at + 4].try_into().expect("4 bytes"),
        ))
    };
    if &head[..4] == b"XFSB" {
        // xfs_dsb: sb_icount at 128, sb_ifree at 136 (big-endian).
        Ok(be(128).saturating_sub(be(136)))
    } else if head[1080..1082] == [0x53, 0xEF] {
        // ext4 superblock at 1024: s_inodes_count, s_free_inodes_count at +16.
        Ok(le(1024).saturating_sub(le(1040)))
    } else {
        Err(Error::FailedPrecondition(format!(
            "{} holds neither ext4 nor xfs: cannot count its inodes",
            source.display()
        )))
    }
}
