//! Image files: format, clone (reflink or sparse copy), grow, measure.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::process::Command;

use strata_driver_api::mount::{attach_loop, mount_fs, run, unmount};
use strata_driver_api::{IoContext, Result};

use crate::config::ImageFs;
use crate::error::BlockfileError;
use crate::sys;

/// How a clone was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cloned {
    /// FICLONE: all blocks shared, O(1).
    Reflink,
    /// Sparse copy because reflink failed with this error.
    Copied(String),
}

/// Creates `dst` (which must not exist) with `src`'s content, sharing its
/// blocks when the filesystem can reflink and copying the data regions
/// otherwise.
pub fn clone_file(src: &Path, dst: &Path) -> Result<Cloned> {
    let from = File::open(src).ctx("open", src)?;
    let to = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(strata_driver_api::private::FILE_MODE)
        .open(dst)
        .ctx("create", dst)?;
    match strata_driver_api::reflink::clone_file(&from, &to) {
        Ok(()) => Ok(Cloned::Reflink),
        Err(e) if strata_driver_api::reflink::is_unsupported(&e) => {
            sparse_copy(&from, &to).ctx("copy", dst)?;
            Ok(Cloned::Copied(format!(
                "reflink {} -> {}: {e}",
                src.display(),
                dst.display()
            )))
        }
        Err(e) => Err(e).ctx("reflink", dst),
    }
}

/// Copies the data regions of `from` into `to`, leaving holes as holes.
pub fn sparse_copy(from: &File, to: &File) -> std::io::Result<()> {
    let len = from.metadata()?.len();
    to.set_len(len)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0;
    while let Some((data, hole)) = sys::next_data(from, offset)? {
        let mut pos = data;
        while pos < hole {
            let want = ((hole - pos) as usize).min(buf.len());
            let n = from.read_at(&mut buf[..want], pos)?;
            if n == 0 {
                break;
            }
            to.write_all_at(&buf[..n], pos)?;
            pos += n as u64;
        }
        offset = hole;
    }
    to.sync_all()
}

/// The smallest filesystem mkfs.xfs makes (300 MiB).
pub const XFS_MIN_SIZE: u64 = 300 << 20;

/// The filesystem an image of `size` bytes gets when `fs` is asked for:
/// ext4 below xfs' minimum.
pub fn fs_for_size(fs: ImageFs, size: u64) -> ImageFs {
    match fs {
        ImageFs::Xfs if size < XFS_MIN_SIZE => ImageFs::Ext4,
        other => other,
    }
}

/// Creates a sparse image of `size` bytes at `path` and formats it with `fs`
/// (ext4 when `size` is below xfs' minimum); the root directory is owned
/// by root, mode 0755, and empty.
pub fn format(path: &Path, fs: ImageFs, size: u64) -> Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(strata_driver_api::private::FILE_MODE)
        .open(path)
        .ctx("create", path)?;
    file.set_len(size).ctx("truncate", path)?;
    drop(file);
    match fs_for_size(fs, size) {
        ImageFs::Ext4 => {
            // Inode tables and journal are written now, once, in the scratch
            // image: lazy init would write them in every clone on first mount
            // and unshare those blocks.
            run(Command::new("mkfs.ext4")
                .args(["-q", "-F", "-m", "0"])
                .args([
                    "-E",
                    "root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0",
                ])
                .arg(path))?;
            // A new snapshot's tree must be empty: drop lost+found (e2fsck
            // would recreate it, which is why resizes happen online).
            run(Command::new("debugfs")
                .args(["-w", "-R", "rmdir lost+found"])
                .arg(path))?;
        }
        ImageFs::Xfs => {
            run(Command::new("mkfs.xfs").args(["-q", "-f"]).arg(path))?;
        }
    }
    Ok(())
}

/// Bytes the filesystem in `path` can surely still take, estimated without
/// mounting it: its apparent size less what the sparse file has allocated
/// (metadata and blocks freed inside count as used, so this errs low).
pub fn free_estimate(path: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ctx("stat", path)?;
    Ok(meta.len().saturating_sub(meta.blocks() * 512))
}

/// Reads the filesystem type from the image's superblock magic.
pub fn detect_fs(path: &Path) -> Result<ImageFs> {
    let mut head = [0u8; 2048];
    let mut file = File::open(path).ctx("open", path)?;
    file.read_exact(&mut head).ctx("read", path)?;
    if &head[..4] == b"XFSB" {
        Ok(ImageFs::Xfs)
    } else if head[1080..1082] == [0x53, 0xEF] {
        Ok(ImageFs::Ext4)
    } else {
        Err(BlockfileError::UnknownFs(path.to_owned()).into())
    }
}

/// Options to mount an image of `fs`: `loop`, `ro` when read-only, and
/// `nouuid` for xfs, whose clones all carry the same UUID.
pub fn mount_options(fs: ImageFs, read_only: bool) -> Vec<String> {
    let mut opts = vec!["loop".to_owned()];
    if read_only {
        opts.push("ro".to_owned());
    }
    if fs == ImageFs::Xfs {
        opts.push("nouuid".to_owned());
    }
    opts
}

/// Grows the image file to `size` and its filesystem with it: ext4
/// offline, xfs online through a private mount at `mountpoint` that is
/// always undone.
pub fn grow(path: &Path, fs: ImageFs, size: u64, mountpoint: &Path) -> Result<()> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .ctx("open", path)?
        .set_len(size)
        .ctx("truncate", path)?;
    match fs {
        ImageFs::Ext4 => grow_ext4(path),
        ImageFs::Xfs => grow_xfs(path, mountpoint),
    }
}

/// Offline ext4 resize. Online resize would need CAP_SYS_RESOURCE, which
/// containers often lack. `e2fsck -f -n` checks without writing (a repairing
/// e2fsck would recreate the lost+found we removed), then `resize2fs -f`
/// skips its own "run e2fsck first" demand, which that check satisfied.
fn grow_ext4(path: &Path) -> Result<()> {
    run(Command::new("e2fsck").args(["-f", "-n"]).arg(path))?;
    run(Command::new("resize2fs").arg("-f").arg(path)).map(drop)
}

/// Online xfs grow (xfs cannot grow offline).
fn grow_xfs(path: &Path, mountpoint: &Path) -> Result<()> {
    strata_driver_api::private::private_dir_all(mountpoint)?;
    let dev = attach_loop(path, false, true)?;
    let options: Vec<String> = strata_driver_api::mount::hardened_options(
        mount_options(ImageFs::Xfs, false)
            .into_iter()
            .filter(|o| o != "loop")
            .collect(),
    );
    let grown = mount_fs(&dev.path, mountpoint, "xfs", &options).and_then(|()| {
        let grown = run(Command::new("xfs_growfs").arg(mountpoint)).map(drop);
        let unmounted = unmount(mountpoint);
        grown.and(unmounted)
    });
    drop(dev);
    let removed = std::fs::remove_dir(mountpoint).ctx("rmdir", mountpoint);
    grown.and(removed)
}

/// Bytes allocated to `image` that are not shared with `origin` (the image
/// it was cloned from), by comparing the physical extents FIEMAP reports.
/// Without an origin every allocated byte counts.
pub fn unshared_bytes(image: &Path, origin: Option<&Path>) -> Result<u64> {
    let own = sys::fiemap(&File::open(image).ctx("open", image)?).ctx("fiemap", image)?;
    let mut theirs: Vec<(u64, u64)> = match origin {
        Some(o) => sys::fiemap(&File::open(o).ctx("open", o)?)
            .ctx("fiemap", o)?
            .into_iter()
            .filter(|e| e.shared)
            .map(|e| (e.physical, e.physical + e.length))
            .collect(),
        None => Vec::new(),
    };
    theirs.sort_unstable();
    let mut total = 0;
    for e in &own {
        total += e.length;
        if e.shared {
            total -= overlap(&theirs, e.physical, e.physical + e.length);
        }
    }
    Ok(total)
}

/// Bytes of `[start, end)` covered by the sorted, non-overlapping `ranges`.
fn overlap(ranges: &[(u64, u64)], start: u64, end: u64) -> u64 {
    let first = ranges.partition_point(|&(_, e)| e <= start);
    ranges[first..]
        .iter()
        .take_while(|&&(s, _)| s < end)
        .map(|&(s, e)| e.min(end) - s.max(start))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xfs_images_below_its_minimum_are_ext4() {
        const MIB: u64 = 1 << 20;
        assert_eq!(fs_for_size(ImageFs::Xfs, 64 * MIB), ImageFs::Ext4);
        assert_eq!(fs_for_size(ImageFs::Xfs, XFS_MIN_SIZE), ImageFs::Xfs);
        assert_eq!(fs_for_size(ImageFs::Ext4, 10 << 30), ImageFs::Ext4);
    }

    #[test]
    fn overlap_counts_only_covered_bytes() {
        let ranges = [(0, 10), (20, 30), (40, 50)];
        assert_eq!(overlap(&ranges, 0, 100), 30);
        assert_eq!(overlap(&ranges, 5, 25), 10);
        assert_eq!(overlap(&ranges, 10, 20), 0);
        assert_eq!(overlap(&ranges, 45, 46), 1);
        assert_eq!(overlap(&[], 0, 10), 0);
    }

    #[test]
    fn sparse_copy_keeps_data_and_holes() {
        let dir =
            std::env::temp_dir().join(format!("strata-blockfile-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let (src, dst) = (dir.join("src"), dir.join("dst"));
        let f = File::create(&src).expect("create src");
        f.set_len(64 << 20).expect("truncate");
        f.write_all_at(b"head", 0).expect("write");
        f.write_all_at(b"tail", (64 << 20) - 4).expect("write");
        let to = File::create(&dst).expect("create dst");
        sparse_copy(&File::open(&src).expect("open"), &to).expect("copy");
        let (a, b) = (
            std::fs::read(&src).expect("read"),
            std::fs::read(&dst).expect("read"),
        );
        assert!(a == b, "copy differs");
        use std::os::unix::fs::MetadataExt;
        let blocks = std::fs::metadata(&dst).expect("stat").blocks();
        assert!(
            blocks * 512 < 1 << 20,
            "copy is not sparse: {blocks} blocks"
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
