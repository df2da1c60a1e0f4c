//! Computing what a container changed: docker-style A/C/D lists.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, Metadata};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

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
    let mut out = Vec::new();
    let w = Walker {
        lower,
        upper,
        overlay,
    };
    w.dir(Path::new(""), lower.is_some(), &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

struct Walker<'a> {
    lower: Option<&'a Path>,
    upper: &'a Path,
    overlay: bool,
}

fn lstat(p: &Path) -> Result<Option<Metadata>> {
    match fs::symlink_metadata(p) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ArchiveError::io("stat", p, e)),
    }
}

fn names(dir: &Path) -> Result<BTreeSet<OsString>> {
    let rd = fs::read_dir(dir).map_err(|e| ArchiveError::io("read directory", dir, e))?;
    let mut out = BTreeSet::new();
    for e in rd {
        out.insert(
            e.map_err(|e| ArchiveError::io("read directory", dir, e))?
                .file_name(),
        );
    }
    Ok(out)
}

fn is_whiteout(m: &Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

/// Xattrs that take part in comparisons and layer tars: overlay's own are
/// bookkeeping of the driver, not content.
pub(super) fn content_xattrs(p: &Path) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut x = sys::read_xattrs(p).map_err(|e| ArchiveError::io("read xattrs", p, e))?;
    x.retain(|(k, _)| !k.starts_with(b"trusted.overlay."));
    Ok(x)
}

/// [`content_xattrs`] of `name` in the directory `dir`, without following
/// `name` if it is a symlink and without resolving any host path (`rel`
/// names it in errors).
pub(super) fn content_xattrs_at(
    dir: std::os::fd::BorrowedFd<'_>,
    name: &[u8],
    rel: &Path,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut x = sys::read_xattrs_at(dir, name).map_err(|e| ArchiveError::io("read xattrs", rel, e))?;
    x.retain(|(k, _)| !k.starts_with(b"trusted.overlay."));
    Ok(x)
}

fn differs(up: &Path, u: &Metadata, lp: &Path, l: &Metadata) -> Result<bool> {
    if u.dev() == l.dev() && u.ino() == l.ino() {
        return Ok(false);
    }
    if u.mode() != l.mode() || u.uid() != l.uid() || u.gid() != l.gid() || u.rdev() != l.rdev() {
        return Ok(true);
    }
    if !u.is_dir()
        && (u.len() != l.len() || u.mtime() != l.mtime() || u.mtime_nsec() != l.mtime_nsec())
    {
        return Ok(true);
    }
    if u.file_type().is_symlink() {
        let a = fs::read_link(up).map_err(|e| ArchiveError::io("readlink", up, e))?;
        let b = fs::read_link(lp).map_err(|e| ArchiveError::io("readlink", lp, e))?;
        if a != b {
            return Ok(true);
        }
    }
    Ok(content_xattrs(up)? != content_xattrs(lp)?)
}

impl Walker<'_> {
    /// Walks directory `rel` (present in upper). `lower_dir` tells whether
    /// lower has a real directory at `rel`. Returns true when anything beneath
    /// changed.
    fn dir(&self, rel: &Path, lower_dir: bool, out: &mut Vec<Change>) -> Result<bool> {
        let udir = self.upper.join(rel);
        let ldir = self.lower.filter(|_| lower_dir).map(|l| l.join(rel));
        let unames = names(&udir)?;
        let mut changed = false;
        for name in &unames {
            let r = rel.join(name);
            let up = self.upper.join(&r);
            let Some(u) = lstat(&up)? else { continue };
            let lp = ldir.as_ref().map(|d| d.join(name));
            let l = match &lp {
                Some(lp) => lstat(lp)?,
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
            let both_dirs = u.is_dir() && l.as_ref().is_some_and(|l| l.is_dir());
            let mark = out.len();
            let kind = match (&l, &lp) {
                (None, _) | (_, None) => Some(ChangeKind::Added),
                (Some(l), Some(lp)) => differs(&up, &u, lp, l)?.then_some(ChangeKind::Changed),
            };
            let mut below = false;
            if u.is_dir() {
                below = self.dir(&r, both_dirs, out)?;
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
        let hides_lower = !self.overlay || self.is_opaque(&udir)?;
        if hides_lower {
            for name in names(&ldir)? {
                if !unames.contains(&name) {
                    out.push(Change {
                        kind: ChangeKind::Deleted,
                        path: rel.join(&name),
                    });
                    changed = true;
                }
            }
        }
        Ok(changed)
    }

    fn is_opaque(&self, dir: &Path) -> Result<bool> {
        let x = sys::read_xattrs(dir).map_err(|e| ArchiveError::io("read xattrs", dir, e))?;
        Ok(x.iter()
            .any(|(k, v)| k == OVERLAY_OPAQUE_XATTR.as_bytes() && v == b"y"))
    }
}
