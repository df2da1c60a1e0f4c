//! Computing what a container changed: docker-style A/C/D lists.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode};

use super::error::{ArchiveError, Result};
use super::{sys, OVERLAY_OPAQUE_XATTR};

/// Kind of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChangeKind {
    /// The path is new.
    Added,
    /// The path exists in both and differs (or, for a directory, something
    /// beneath it changed).
    Changed,
    /// The path was removed.
    Deleted,
}

impl ChangeKind {
    /// `A`, `C` or `D`, as `docker diff` prints.
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Added => 'A',
            ChangeKind::Changed => 'C',
            ChangeKind::Deleted => 'D',
        }
    }
}

/// One change: its kind and the path relative to the root (no leading `/`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// Relative path inside the root, e.g. `etc/passwd`.
    pub path: PathBuf,
}

impl fmt::Display for Change {
    /// `A /etc/passwd`, the `docker diff` line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} /{}", self.kind.letter(), self.path.display())
    }
}

/// Changes of `upper` (a full root) against `lower` (the parent's full
/// root; `None` for a base layer, where everything is added). Sorted by path.
pub fn changes(lower: Option<&Path>, upper: &Path) -> Result<Vec<Change>> {
    diff(lower, upper, false)
}

/// Changes recorded in an overlayfs upper directory: whiteout character
/// devices are deletions, `trusted.overlay.opaque=y` hides the lower
/// directory's entries. `lower` is the merged view of the parent layers (a
/// read-only mount of the parent), used to tell added from changed and to
/// drop copied-up entries that did not change, so the result matches what
/// [`changes`] gives for the same change on a full-copy driver.
pub fn changes_overlay(lower: Option<&Path>, upper: &Path) -> Result<Vec<Change>> {
    diff(lower, upper, true)
}

fn diff(lower: Option<&Path>, upper: &Path, overlay: bool) -> Result<Vec<Change>> {
    let upper_fd = open_root(upper)?;
    let lower_fd = lower.map(open_root).transpose()?;
    let mut out = Vec::new();
    let w = Walker { overlay };
    w.dir(
        Path::new(""),
        upper_fd.as_fd(),
        lower_fd.as_ref().map(|f| f.as_fd()),
        &mut out,
    )?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn open_root(p: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(
        p,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ArchiveError::io("open root", p, e))
}

/// Walks two trees through directory descriptors, never host paths: a
/// directory swapped for a symlink while the walk runs is seen as the
/// symlink, never followed.
struct Walker {
    overlay: bool,
}

/// `lstat` of `name` in `dir`; `None` when it does not exist.
fn lstat_at(dir: BorrowedFd<'_>, name: &[u8], rel: &Path) -> Result<Option<FileStat>> {
    match nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(nix::errno::Errno::ENOENT) => Ok(None),
        Err(e) => Err(ArchiveError::io("stat", rel, e)),
    }
}

fn names(dir: BorrowedFd<'_>, rel: &Path) -> Result<BTreeSet<Vec<u8>>> {
    Ok(sys::list_dir(dir)
        .map_err(|e| ArchiveError::io("read directory", rel, e))?
        .into_iter()
        .map(|(n, _)| n)
        .collect())
}

fn is_dir(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

fn is_whiteout(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0
}

/// Xattrs that take part in comparisons and layer tars, of `name` in the
/// directory `dir` (not following `name` if it is a symlink, resolving no
/// host path; `rel` names it in errors): overlay's own are bookkeeping of
/// the driver, not content.
pub(super) fn content_xattrs_at(
    dir: BorrowedFd<'_>,
    name: &[u8],
    rel: &Path,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut x =
        sys::read_xattrs_at(dir, name).map_err(|e| ArchiveError::io("read xattrs", rel, e))?;
    x.retain(|(k, _)| !k.starts_with(b"trusted.overlay."));
    Ok(x)
}

/// Opens the subdirectory `name` of `dir` without following a symlink;
/// `None` when it is no longer a directory (swapped or removed).
fn subdir(dir: BorrowedFd<'_>, name: &[u8], rel: &Path) -> Result<Option<OwnedFd>> {
    match sys::open_dir_nofollow(dir, name) {
        Ok(fd) => Ok(Some(fd)),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ELOOP | libc::ENOTDIR | libc::ENOENT)
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(ArchiveError::io("open directory", rel, e)),
    }
}

struct Side<'a> {
    dir: BorrowedFd<'a>,
    st: &'a FileStat,
}

fn differs(name: &[u8], rel: &Path, u: Side<'_>, l: Side<'_>) -> Result<bool> {
    let (us, ls) = (u.st, l.st);
    if us.st_dev == ls.st_dev && us.st_ino == ls.st_ino {
        return Ok(false);
    }
    if us.st_mode != ls.st_mode
        || us.st_uid != ls.st_uid
        || us.st_gid != ls.st_gid
        || us.st_rdev != ls.st_rdev
    {
        return Ok(true);
    }
    if !is_dir(us)
        && (us.st_size != ls.st_size
            || us.st_mtime != ls.st_mtime
            || us.st_mtime_nsec != ls.st_mtime_nsec)
    {
        return Ok(true);
    }
    if us.st_mode & libc::S_IFMT == libc::S_IFLNK {
        let a = nix::fcntl::readlinkat(u.dir, name)
            .map_err(|e| ArchiveError::io("readlink", rel, e))?;
        let b = nix::fcntl::readlinkat(l.dir, name)
            .map_err(|e| ArchiveError::io("readlink", rel, e))?;
        if a != b {
            return Ok(true);
        }
    }
    Ok(content_xattrs_at(u.dir, name, rel)? != content_xattrs_at(l.dir, name, rel)?)
}

impl Walker {
    /// Walks directory `rel`: `udir` in upper, `ldir` the directory at
    /// `rel` in lower if lower has one. Returns true when anything beneath
    /// changed.
    fn dir(
        &self,
        rel: &Path,
        udir: BorrowedFd<'_>,
        ldir: Option<BorrowedFd<'_>>,
        out: &mut Vec<Change>,
    ) -> Result<bool> {
        let unames = names(udir, rel)?;
        let mut changed = false;
        for name in &unames {
            crate::interrupt::check()?;
            let r = rel.join(OsStr::from_bytes(name));
            let Some(u) = lstat_at(udir, name, &r)? else {
                continue;
            };
            let l = match ldir {
                Some(ld) => lstat_at(ld, name, &r)?,
                None => None,
            };
            if self.overlay && is_whiteout(&u) {
                if l.is_some() {
                    out.push(Change {
                        kind: ChangeKind::Deleted,
                        path: r,
                    });
                    changed = true;
                }
                continue;
            }
            let both_dirs = is_dir(&u) && l.as_ref().is_some_and(is_dir);
            let mark = out.len();
            let kind = match (&l, ldir) {
                (Some(l), Some(ld)) => differs(
                    name,
                    &r,
                    Side { dir: udir, st: &u },
                    Side { dir: ld, st: l },
                )?
                .then_some(ChangeKind::Changed),
                _ => Some(ChangeKind::Added),
            };
            let mut below = false;
            if is_dir(&u) {
                if let Some(child) = subdir(udir, name, &r)? {
                    let lchild = match (both_dirs, ldir) {
                        (true, Some(ld)) => subdir(ld, name, &r)?,
                        _ => None,
                    };
                    below = self.dir(&r, child.as_fd(), lchild.as_ref().map(|f| f.as_fd()), out)?;
                }
            }
            match kind {
                Some(kind) => {
                    out.insert(mark, Change { kind, path: r });
                    changed = true;
                }
                None if below => {
                    out.insert(
                        mark,
                        Change {
                            kind: ChangeKind::Changed,
                            path: r,
                        },
                    );
                    changed = true;
                }
                None => {}
            }
        }
        let Some(ldir) = ldir else { return Ok(changed) };
        let hides_lower = !self.overlay || self.is_opaque(udir, rel)?;
        if hides_lower {
            for name in names(ldir, rel)? {
                if !unames.contains(&name) {
                    out.push(Change {
                        kind: ChangeKind::Deleted,
                        path: rel.join(OsStr::from_bytes(&name)),
                    });
                    changed = true;
                }
            }
        }
        Ok(changed)
    }

    fn is_opaque(&self, dir: BorrowedFd<'_>, rel: &Path) -> Result<bool> {
        let x =
            sys::read_xattrs_at(dir, b".").map_err(|e| ArchiveError::io("read xattrs", rel, e))?;
        Ok(x.iter()
            .any(|(k, v)| k == OVERLAY_OPAQUE_XATTR.as_bytes() && v == b"y"))
    }
}
