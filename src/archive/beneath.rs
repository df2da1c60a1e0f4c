//! Copying into and out of a directory below a root that belongs to
//! someone else (a container's rootfs), for `strata cp`: the directory is
//! resolved with `openat2(RESOLVE_IN_ROOT)`, so `..` and symlinks inside
//! the container cannot lead outside it, and the tar is then applied or
//! written relative to that descriptor, with the same checks as a layer.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::changes::{Change, ChangeKind};
use super::error::{ArchiveError, Result};
use super::path::escape_name;
use super::{apply_layer, sys, write_layer, ApplyOptions, ApplyStats};

/// What an in-root path names, followed as the container would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Nothing (or a dangling symlink).
    Missing,
    /// A directory.
    Directory,
    /// Anything else.
    Other,
}

fn rel_bytes(rel: &Path) -> Vec<u8> {
    let text = rel.as_os_str().as_bytes();
    let trimmed = text.strip_prefix(b"/").unwrap_or(text);
    trimmed.to_vec()
}

fn open_root(root: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(
        root,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| ArchiveError::io("open root", root, e))
}

fn open_dir_in(root: &Path, rel: &Path) -> Result<OwnedFd> {
    let root_fd = open_root(root)?;
    sys::open_in_root(
        root_fd.as_fd(),
        &rel_bytes(rel),
        libc::O_RDONLY | libc::O_DIRECTORY,
    )
    .map_err(|e| ArchiveError::io("open directory", rel, e))
}

/// The descriptor's own path, as [`apply_layer`] and [`write_layer`] take
/// a root path: `/proc/self/fd/N` names exactly that directory.
fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// What `rel` names inside `root`; a final symlink is followed (inside
/// `root`) when `follow` is set.
pub fn find_in_root(root: &Path, rel: &Path, follow: bool) -> Result<Found> {
    let root_fd = open_root(root)?;
    let flags = if follow {
        libc::O_PATH
    } else {
        libc::O_PATH | libc::O_NOFOLLOW
    };
    match sys::open_in_root(root_fd.as_fd(), &rel_bytes(rel), flags) {
        Ok(fd) => {
            let st =
                nix::sys::stat::fstat(fd.as_fd()).map_err(|e| ArchiveError::io("stat", rel, e))?;
            let dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
            Ok(if dir { Found::Directory } else { Found::Other })
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(Found::Missing),
        Err(e) => Err(ArchiveError::io("open", rel, e)),
    }
}

/// Applies `tar` into the directory `dir` (resolved inside `root`), with
/// every check of [`apply_layer`]: no entry lands outside that directory.
pub fn apply_beneath(
    root: &Path,
    dir: &Path,
    tar: impl Read,
    opts: &ApplyOptions,
) -> Result<ApplyStats> {
    let fd = open_dir_in(root, dir)?;
    apply_layer(&fd_path(&fd), tar, opts)
}

/// Applies `tar`, whose entries are `name` and what is below it, into a
/// new staging directory in `dir` (resolved inside `root`), then renames
/// `name` from there onto `dir/name` (replacing a file; an existing
/// non-empty directory is refused). On any error, a signal included, the
/// staging directory is removed and `dir` is as it was.
pub fn apply_staged_beneath(
    root: &Path,
    dir: &Path,
    name: &Path,
    tar: impl Read,
    opts: &ApplyOptions,
) -> Result<ApplyStats> {
    if !matches!(
        name.components().collect::<Vec<_>>()[..],
        [Component::Normal(_)]
    ) {
        return Err(ArchiveError::UnsafePath {
            path: escape_name(name.as_os_str().as_bytes()),
            reason: "a staged copy names one entry of its directory",
        });
    }
    let fd = open_dir_in(root, dir)?;
    let stage = PathBuf::from(format!(
        ".strata-cp-{}-{}",
        std::process::id(),
        strata_driver_api::now_ns()
    ));
    nix::sys::stat::mkdirat(
        fd.as_fd(),
        &stage,
        nix::sys::stat::Mode::from_bits_truncate(0o700),
    )
    .map_err(|e| ArchiveError::io("create a staging directory in", dir, e))?;
    let stage_path = fd_path(&fd).join(&stage);
    // From here on the staging directory is reached only through its own
    // descriptor: a process in the container can rename it and put a
    // symlink in its place, and a path through that symlink would apply
    // onto, or rename from, a directory of the host.
    let result = sys::open_dir_nofollow(fd.as_fd(), stage.as_os_str().as_bytes())
        .map_err(|e| ArchiveError::io("open the staging directory in", dir, e))
        .and_then(|stage_fd| {
            let stats = apply_layer(&fd_path(&stage_fd), tar, opts)?;
            crate::interrupt::check()?;
            nix::fcntl::renameat(stage_fd.as_fd(), name, fd.as_fd(), name)
                .map_err(|e| ArchiveError::io("rename into place", dir.join(name), e))?;
            Ok(stats)
        });
    if let Err(e) = strata_driver_api::tree::remove_tree(&stage_path) {
        tracing::warn!(dir = %dir.display(), error = %e, "removing a staging directory");
    }
    result
}

/// Writes the entry `name` of directory `dir` (resolved inside `root`)
/// and, when it is a directory, everything below it, as one tar whose
/// entries are named from `name` (`motd`, or `etc/...` for `name` `etc`).
pub fn write_beneath(root: &Path, dir: &Path, name: &Path, out: impl Write) -> Result<()> {
    let fd = open_dir_in(root, dir)?;
    let base = fd_path(&fd);
    let mut all = vec![Change {
        kind: ChangeKind::Added,
        path: name.to_owned(),
    }];
    if find_in_root(&base, name, false)? == Found::Directory {
        let sub = open_dir_in(&base, name)?;
        super::write::collect(sub.as_fd(), name, &mut all)?;
    }
    write_layer(&base, &all, out)
}
