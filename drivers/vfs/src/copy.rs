//! Full-fidelity directory tree copy, the heart of the vfs driver.
//!
//! Reproduces owners, modes (setuid/setgid/sticky included), access and
//! modification times, every extended attribute (`trusted.*`, `security.*`,
//! `user.*`, ACLs), hard links, symlinks, device nodes, fifos and sockets.
//! Regular files are reflinked with `FICLONE` when the filesystem allows it;
//! otherwise only their data segments are copied (`SEEK_DATA`/`SEEK_HOLE` +
//! `copy_file_range`, falling back to read/write), so sparse files stay sparse.

use std::collections::HashMap;
use std::fs::{self, File, Metadata, OpenOptions, Permissions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, AT_FDCWD};
use nix::sys::stat::{mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, lseek, Gid, Uid, Whence};
use strata_driver_api::{Error, IoContext, Result};

use crate::VfsError;

/// How [`copy_tree_with`] copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyOptions {
    /// Try `FICLONE` for regular files (falls back to copying on its own).
    pub reflink: bool,
}

impl Default for CopyOptions {
    fn default() -> Self {
        Self { reflink: true }
    }
}

/// What a copy did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Directories created (the root included).
    pub dirs: u64,
    /// Regular files created (hard links excluded).
    pub files: u64,
    /// Of those, files whose data was reflinked.
    pub reflinked: u64,
    /// Bytes of data copied (not reflinked).
    pub bytes_copied: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Device nodes, fifos and sockets.
    pub specials: u64,
    /// Extra names made with `link(2)` for hard-linked inodes.
    pub hard_links: u64,
}

/// Copies directory `src` to `dst` with [`CopyOptions::default`] (reflink when
/// possible). `dst` must not exist or be an empty directory; it receives the
/// metadata of `src`.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<CopyStats> {
    copy_tree_with(src, dst, CopyOptions::default())
}

/// Copies directory `src` to `dst`, see [`copy_tree`].
pub fn copy_tree_with(src: &Path, dst: &Path, options: CopyOptions) -> Result<CopyStats> {
    let meta = fs::symlink_metadata(src).ctx("stat", src)?;
    if !meta.is_dir() {
        return Err(VfsError::NotADirectory(src.to_owned()).into());
    }
    match fs::create_dir(dst) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dst.is_dir() => {}
        Err(e) => return Err(Error::io("mkdir", dst, e)),
    }
    let mut copier = Copier {
        reflink: options.reflink,
        links: HashMap::new(),
        stats: CopyStats::default(),
    };
    copier.copy_dir(src, dst, &meta)?;
    Ok(copier.stats)
}

struct Copier {
    reflink: bool,
    /// (dev, ino) of multiply-linked sources -> first copy made of them.
    links: HashMap<(u64, u64), PathBuf>,
    stats: CopyStats,
}

impl Copier {
    /// Fills existing directory `dst` from `src`, then sets its metadata.
    fn copy_dir(&mut self, src: &Path, dst: &Path, meta: &Metadata) -> Result<()> {
        self.stats.dirs += 1;
        for entry in fs::read_dir(src).ctx("read directory", src)? {
            let entry = entry.ctx("read directory", src)?;
            let from = entry.path();
            let to = dst.join(entry.file_name());
            let m = entry.metadata().ctx("stat", &from)?;
            self.copy_entry(&from, &to, &m)?;
        }
        apply_metadata(src, dst, meta)
    }

    fn copy_entry(&mut self, src: &Path, dst: &Path, meta: &Metadata) -> Result<()> {
        let ft = meta.file_type();
        if ft.is_dir() {
            fs::create_dir(dst).ctx("mkdir", dst)?;
            return self.copy_dir(src, dst, meta);
        }
        let key = (meta.dev(), meta.ino());
        if meta.nlink() > 1 {
            if let Some(first) = self.links.get(&key) {
                fs::hard_link(first, dst).ctx("link", dst)?;
                self.stats.hard_links += 1;
                return Ok(());
            }
        }
        if ft.is_file() {
            self.copy_file(src, dst, meta)?;
            self.stats.files += 1;
        } else if ft.is_symlink() {
            let target = fs::read_link(src).ctx("readlink", src)?;
            std::os::unix::fs::symlink(&target, dst).ctx("symlink", dst)?;
            self.stats.symlinks += 1;
        } else {
            make_special(src, dst, meta)?;
            self.stats.specials += 1;
        }
        apply_metadata(src, dst, meta)?;
        if meta.nlink() > 1 {
            self.links.insert(key, dst.to_owned());
        }
        Ok(())
    }

    fn copy_file(&mut self, src: &Path, dst: &Path, meta: &Metadata) -> Result<()> {
        let input = File::open(src).ctx("open", src)?;
        let output = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dst)
            .ctx("create", dst)?;
        if self.reflink {
            match strata_driver_api::reflink::clone_file(&input, &output) {
                Ok(()) => {
                    self.stats.reflinked += 1;
                    return Ok(());
                }
                Err(e) if strata_driver_api::reflink::is_unsupported(&e) => self.reflink = false,
                // e.g. EINVAL for files the filesystem will not share: copy this one.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                Err(e) => return Err(Error::io("reflink", dst, e)),
            }
        }
        self.stats.bytes_copied += sparse_copy(&input, src, &output, dst, meta.len())?;
        Ok(())
    }
}

/// Copies the data segments of `input` (length `len`) into empty `output`,
/// leaving holes as holes. Returns the bytes copied.
fn sparse_copy(input: &File, src: &Path, output: &File, dst: &Path, len: u64) -> Result<u64> {
    let mut copied = 0;
    let mut pos: i64 = 0;
    let end = len as i64;
    while pos < end {
        let data = match lseek(input.as_fd(), pos, Whence::SeekData) {
            Ok(d) => d,
            Err(Errno::ENXIO) => break, // only a hole remains
            Err(Errno::EINVAL) => pos,  // no SEEK_DATA support: treat all as data
            Err(e) => return Err(Error::errno("seek data", src, e)),
        };
        let hole = match lseek(input.as_fd(), data, Whence::SeekHole) {
            Ok(h) => h.min(end),
            Err(Errno::EINVAL) => end,
            Err(e) => return Err(Error::errno("seek hole", src, e)),
        };
        copied += copy_range(input, src, output, dst, data, (hole - data) as u64)?;
        pos = hole;
    }
    output.set_len(len).ctx("truncate", dst)?;
    Ok(copied)
}

/// Copies `len` bytes at `offset` from `input` to the same offset of `output`.
fn copy_range(
    input: &File,
    src: &Path,
    output: &File,
    dst: &Path,
    offset: i64,
    len: u64,
) -> Result<u64> {
    let (mut off_in, mut off_out) = (offset, offset);
    let mut left = len;
    while left > 0 {
        let chunk = left.min(1 << 30) as usize;
        match nix::fcntl::copy_file_range(
            input.as_fd(),
            Some(&mut off_in),
            output.as_fd(),
            Some(&mut off_out),
            chunk,
        ) {
            Ok(0) => break, // the source shrank under us
            Ok(n) => left -= n as u64,
            Err(Errno::EXDEV | Errno::ENOSYS | Errno::EOPNOTSUPP | Errno::EINVAL) => {
                return Ok(len - left + read_write(input, src, output, dst, off_in, left)?)
            }
            Err(e) => return Err(Error::errno("copy_file_range", dst, e)),
        }
    }
    Ok(len - left)
}

fn read_write(
    input: &File,
    src: &Path,
    output: &File,
    dst: &Path,
    mut offset: i64,
    len: u64,
) -> Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = input
            .read_at(&mut buf[..want], offset as u64)
            .ctx("read", src)?;
        if n == 0 {
            break;
        }
        output
            .write_all_at(&buf[..n], offset as u64)
            .ctx("write", dst)?;
        offset += n as i64;
        left -= n as u64;
    }
    Ok(len - left)
}

fn make_special(src: &Path, dst: &Path, meta: &Metadata) -> Result<()> {
    let ft = meta.file_type();
    let kind = if ft.is_block_device() {
        SFlag::S_IFBLK
    } else if ft.is_char_device() {
        SFlag::S_IFCHR
    } else if ft.is_fifo() {
        SFlag::S_IFIFO
    } else if ft.is_socket() {
        SFlag::S_IFSOCK
    } else {
        return Err(VfsError::UnknownFileType {
            path: src.to_owned(),
            mode: meta.mode(),
        }
        .into());
    };
    let perm = Mode::from_bits_truncate(meta.mode() & 0o7777);
    mknod(dst, kind, perm, meta.rdev()).ctx("mknod", dst)
}

/// Owner, extended attributes, mode, then times: `chown` clears setuid bits
/// and `security.capability`, so mode and xattrs come after it, and times
/// come last because every other change touches ctime/mtime.
fn apply_metadata(src: &Path, dst: &Path, meta: &Metadata) -> Result<()> {
    fchownat(
        AT_FDCWD,
        dst,
        Some(Uid::from_raw(meta.uid())),
        Some(Gid::from_raw(meta.gid())),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .ctx("chown", dst)?;
    strata_driver_api::xattr::copy_all("vfs", src, dst)?;
    if !meta.file_type().is_symlink() {
        fs::set_permissions(dst, Permissions::from_mode(meta.mode() & 0o7777)).ctx("chmod", dst)?;
    }
    let atime = TimeSpec::new(meta.atime(), meta.atime_nsec());
    let mtime = TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    utimensat(
        AT_FDCWD,
        dst,
        &atime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .ctx("set times", dst)
}
