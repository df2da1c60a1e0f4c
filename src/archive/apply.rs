//! Applying an untrusted layer tar to a directory.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags};
use tar::EntryType;

use super::error::{ArchiveError, Result};
use super::guard::{ApplyLimits, Guard, Shared, SparseMap};
use super::path::{escape_name, resolve_lexical, symlink_escapes, RelPath};
use super::{sys, OVERLAY_OPAQUE_XATTR, WHITEOUT_OPAQUE, WHITEOUT_PREFIX};

/// How to apply a layer.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Write whiteouts the way overlayfs stores them (a 0/0 character device
    /// for a deleted entry, `trusted.overlay.opaque=y` on an opaque
    /// directory) instead of deleting for real. Set for overlay2 upper dirs.
    pub overlay_whiteouts: bool,
    /// Size limits enforced while reading the tar (defaults: header caps
    /// only, no limit on the layer's size).
    pub limits: ApplyLimits,
}

/// What an apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Tar entries processed (including whiteouts, excluding meta headers).
    pub entries: u64,
    /// Bytes of regular file data written.
    pub bytes: u64,
    /// Whiteouts and opaque markers handled.
    pub whiteouts: u64,
}

const XATTR_PREFIX: &str = "SCHILY.xattr.";
const BLOCK: usize = 4096;
const MAX_SYMLINK_DEPTH: u32 = 40;

/// Applies the uncompressed layer tar `tar` to the directory `root`.
///
/// The archive is untrusted: no entry can create, change or delete anything
/// outside `root` (see the module docs), and [`ApplyOptions::limits`] are
/// enforced before anything over them is allocated or written. The stream
/// is read to its end (so a verifying reader underneath reports a digest
/// mismatch here). On error the root may hold part of the layer; the caller
/// discards the snapshot.
pub fn apply_layer(root: &Path, tar: impl Read, opts: &ApplyOptions) -> Result<ApplyStats> {
    let root_fd = nix::fcntl::open(
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ArchiveError::io("open root", root, e))?;
    let guard = Guard::new(tar, opts.limits.clone(), true);
    let mut applier = Applier {
        root: root_fd.as_fd(),
        opts,
        written: HashSet::new(),
        dir_times: Vec::new(),
        stats: ApplyStats::default(),
        sparse: guard.shared(),
    };
    let mut archive = tar::Archive::new(guard);
    for entry in archive.entries().map_err(ArchiveError::from_read)? {
        crate::interrupt::check()?;
        let entry = entry.map_err(ArchiveError::from_read)?;
        applier.entry(entry)?;
    }
    applier.finish_dir_times()?;
    // The rest (end-of-archive padding) goes through the guard too.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(ArchiveError::from_read)?;
    Ok(applier.stats)
}

struct Applier<'a> {
    root: BorrowedFd<'a>,
    opts: &'a ApplyOptions,
    /// Paths created by this layer, as [`RelPath::as_bytes`]: an opaque
    /// marker or whiteout must not delete them. Kept joined, one allocation
    /// per path: a component each would cost tens of times the name's bytes.
    written: HashSet<Vec<u8>>,
    /// Directories to stamp at the end, as [`RelPath::as_bytes`].
    dir_times: Vec<(Vec<u8>, TimeSpec)>,
    stats: ApplyStats,
    /// Maps of sparse entries the guard turned into regular ones.
    sparse: std::rc::Rc<std::cell::RefCell<Shared>>,
}

/// Header fields we apply, read once.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: TimeSpec,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn io_path(p: &RelPath) -> PathBuf {
    PathBuf::from(p.display())
}

impl Applier<'_> {
    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let path = RelPath::parse(&raw)?;
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
            return Ok(());
        }
        self.stats.entries += 1;
        if let Some((parent, name)) = path.split_last() {
            if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
                self.stats.whiteouts += 1;
                let parent = parent.clone();
                if name == WHITEOUT_OPAQUE.as_bytes() {
                    return self.opaque(&parent);
                }
                if target.starts_with(WHITEOUT_PREFIX.as_bytes()) {
                    // Other `.wh..wh.*` names are aufs bookkeeping: ignore.
                    return Ok(());
                }
                if target.is_empty() || target == b"." || target == b".." {
                    return Err(ArchiveError::UnsafePath {
                        path: path.display(),
                        reason: "whiteout names no entry",
                    });
                }
                let target = target.to_vec();
                return self.whiteout(&parent, &target);
            }
        }
        let meta = read_meta(&mut entry, &path)?;
        if path.is_root() {
            return self.root_meta(&meta);
        }
        let Some((parent_path, name)) = path.split_last() else {
            return Ok(());
        };
        let name = name.to_vec();
        let parent = self.mkdir_all(&parent_path)?;
        match kind {
            EntryType::Directory => self.directory(&parent, &path, &name, &meta)?,
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.regular(&parent, &path, &name, &meta, &mut entry)?
            }
            EntryType::Symlink => {
                let target = link_name(&entry, &path)?;
                if symlink_escapes(&parent_path, &target) {
                    return Err(ArchiveError::UnsafeLink {
                        path: path.display(),
                        target: escape_name(&target),
                        reason: "relative target climbs out of the root",
                    });
                }
                self.replace(&parent, &path, &name, false)?;
                nix::unistd::symlinkat(target.as_slice(), parent.as_fd(), name.as_slice())
                    .map_err(|e| ArchiveError::io("symlink", io_path(&path), e))?;
                self.set_meta(&parent, &path, &name, &meta, true)?;
            }
            EntryType::Link => {
                let target = link_name(&entry, &path)?;
                self.hard_link(&parent, &path, &name, &target)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                self.special(&parent, &path, &name, &meta, &entry, kind)?
            }
            other => {
                return Err(ArchiveError::Unsupported {
                    path: path.display(),
                    kind: other.as_byte() as char,
                })
            }
        }
        self.written.insert(path.as_bytes());
        Ok(())
    }

    /// Opens (creating as needed, mode 0755) the directory `dir` inside the
    /// root. Each step is resolved in the root, so a symlink planted by an
    /// earlier entry cannot lead outside; a dangling symlink on the way gets
    /// its target created inside the root, as a container would see it.
    fn mkdir_all(&self, dir: &RelPath) -> Result<OwnedFd> {
        self.mkdir_all_depth(dir, 0)
    }

    fn mkdir_all_depth(&self, dir: &RelPath, depth: u32) -> Result<OwnedFd> {
        let flags = libc::O_PATH | libc::O_DIRECTORY;
        match sys::open_in_root(self.root, &dir.as_bytes(), flags) {
            Ok(fd) => return Ok(fd),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(ArchiveError::io("open directory", io_path(dir), e)),
        }
        if depth > MAX_SYMLINK_DEPTH {
            return Err(ArchiveError::io(
                "open directory",
                io_path(dir),
                Errno::ELOOP,
            ));
        }
        let mut cur = sys::open_in_root(self.root, b".", flags)
            .map_err(|e| ArchiveError::io("open root", ".", e))?;
        let mut sofar = RelPath(Vec::new());
        for comp in &dir.0 {
            let base = sofar.clone();
            sofar = sofar.join(comp);
            match nix::sys::stat::mkdirat(
                cur.as_fd(),
                comp.as_slice(),
                Mode::from_bits_truncate(0o755),
            ) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(ArchiveError::io("mkdir", io_path(&sofar), e)),
            }
            cur = match sys::open_in_root(self.root, &sofar.as_bytes(), flags) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let target = nix::fcntl::readlinkat(cur.as_fd(), comp.as_slice())
                        .map_err(|e| ArchiveError::io("readlink", io_path(&sofar), e))?;
                    let target = resolve_lexical(&base, target.as_bytes());
                    self.mkdir_all_depth(&target, depth + 1)?;
                    sys::open_in_root(self.root, &sofar.as_bytes(), flags)
                        .map_err(|e| ArchiveError::io("open directory", io_path(&sofar), e))?
                }
                Err(e) => return Err(ArchiveError::io("open directory", io_path(&sofar), e)),
            };
        }
        Ok(cur)
    }

    /// Removes whatever sits at `parent/name` unless it is a directory and
    /// `keep_dir` is set. Returns true when a directory was kept.
    fn replace(
        &self,
        parent: &OwnedFd,
        path: &RelPath,
        name: &[u8],
        keep_dir: bool,
    ) -> Result<bool> {
        match nix::sys::stat::fstatat(parent.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => {
                let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
                if is_dir && keep_dir {
                    return Ok(true);
                }
                remove_all_at(parent.as_fd(), name, is_dir)
                    .map_err(|e| ArchiveError::io("remove", io_path(path), e))?;
                Ok(false)
            }
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(ArchiveError::io("stat", io_path(path), e)),
        }
    }

    fn directory(
        &mut self,
        parent: &OwnedFd,
        path: &RelPath,
        name: &[u8],
        meta: &Meta,
    ) -> Result<()> {
        if !self.replace(parent, path, name, true)? {
            nix::sys::stat::mkdirat(parent.as_fd(), name, Mode::from_bits_truncate(0o700))
                .map_err(|e| ArchiveError::io("mkdir", io_path(path), e))?;
        }
        self.set_meta(parent, path, name, meta, false)?;
        self.dir_times.push((path.as_bytes(), meta.mtime));
        Ok(())
    }

    fn regular<R: Read>(
        &mut self,
        parent: &OwnedFd,
        path: &RelPath,
        name: &[u8],
        meta: &Meta,
        data: &mut tar::Entry<'_, R>,
    ) -> Result<()> {
        self.replace(parent, path, name, false)?;
        let fd = nix::fcntl::openat(
            parent.as_fd(),
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| ArchiveError::io("create", io_path(path), e))?;
        let mut file = File::from(fd);
        let declared = data.size();
        let map_err = |e| match e {
            CopyError::Read(e) => ArchiveError::from_read(e),
            CopyError::Write(e) => ArchiveError::io("write", io_path(path), e),
        };
        let sparse = self
            .sparse
            .borrow_mut()
            .take_sparse(data.raw_header_position());
        let (got, len) = match sparse {
            None => {
                let got = copy_sparse(data, &mut file).map_err(map_err)?;
                (got, got)
            }
            Some(map) => (
                write_segments(data, &mut file, &map).map_err(map_err)?,
                map.real_size,
            ),
        };
        if got != declared {
            return Err(ArchiveError::Truncated {
                path: path.display(),
                declared,
                got,
            });
        }
        file.set_len(len)
            .map_err(|e| ArchiveError::io("truncate", io_path(path), e))?;
        self.stats.bytes += got;
        self.set_meta(parent, path, name, meta, false)
    }

    fn special<R: Read>(
        &mut self,
        parent: &OwnedFd,
        path: &RelPath,
        name: &[u8],
        meta: &Meta,
        entry: &tar::Entry<'_, R>,
        kind: EntryType,
    ) -> Result<()> {
        self.replace(parent, path, name, false)?;
        let h = entry.header();
        let major = h.device_major().ok().flatten().unwrap_or(0);
        let minor = h.device_minor().ok().flatten().unwrap_or(0);
        let sflag = match kind {
            EntryType::Char => SFlag::S_IFCHR,
            EntryType::Block => SFlag::S_IFBLK,
            _ => SFlag::S_IFIFO,
        };
        nix::sys::stat::mknodat(
            parent.as_fd(),
            name,
            sflag,
            Mode::from_bits_truncate(0o600),
            sys::makedev(major, minor),
        )
        .map_err(|e| ArchiveError::io("mknod", io_path(path), e))?;
        self.set_meta(parent, path, name, meta, false)
    }

    fn hard_link(
        &mut self,
        parent: &OwnedFd,
        path: &RelPath,
        name: &[u8],
        target: &[u8],
    ) -> Result<()> {
        let target_path = RelPath::parse(target).map_err(|_| ArchiveError::UnsafeLink {
            path: path.display(),
            target: escape_name(target),
            reason: "hard link target is absolute or climbs out of the root",
        })?;
        if target_path == *path {
            return Ok(());
        }
        let src = sys::open_in_root(
            self.root,
            &target_path.as_bytes(),
            libc::O_PATH | libc::O_NOFOLLOW,
        )
        .map_err(|e| ArchiveError::io("open hard link target", io_path(&target_path), e))?;
        let st = nix::sys::stat::fstat(src.as_fd())
            .map_err(|e| ArchiveError::io("stat hard link target", io_path(&target_path), e))?;
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            return Err(ArchiveError::UnsafeLink {
                path: path.display(),
                target: target_path.display(),
                reason: "hard link to a directory",
            });
        }
        self.replace(parent, path, name, false)?;
        nix::unistd::linkat(
            src.as_fd(),
            "",
            parent.as_fd(),
            name,
            AtFlags::AT_EMPTY_PATH,
        )
        .map_err(|e| ArchiveError::io("link", io_path(path), e))
    }

    /// Applies owner, mode, xattrs and (except for directories, done last)
    /// mtime to `parent/name`, never following a final symlink. All but the
    /// mtime go through one descriptor of the entry: a process sharing the
    /// tree (a live container under `strata cp`) can swap the name for a
    /// symlink at any moment, and a mode set by name would then land on
    /// whatever the symlink names, outside the root included.
    fn set_meta(
        &self,
        parent: &OwnedFd,
        path: &RelPath,
        name: &[u8],
        meta: &Meta,
        symlink: bool,
    ) -> Result<()> {
        let p = || io_path(path);
        let fd = nix::fcntl::openat(
            parent.as_fd(),
            name,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ArchiveError::io("open", p(), e))?;
        nix::unistd::fchownat(
            fd.as_fd(),
            "",
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
            AtFlags::AT_EMPTY_PATH | AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| ArchiveError::io("chown", p(), e))?;
        if !symlink {
            sys::chmod_fd(fd.as_fd(), meta.mode & 0o7777)
                .map_err(|e| ArchiveError::io("chmod", p(), e))?;
        }
        for (k, v) in &meta.xattrs {
            sys::set_xattr(fd.as_fd(), k, v).map_err(|e| ArchiveError::io("setxattr", p(), e))?;
        }
        nix::sys::stat::utimensat(
            parent.as_fd(),
            name,
            &meta.mtime,
            &meta.mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| ArchiveError::io("set times", p(), e))
    }

    fn root_meta(&mut self, meta: &Meta) -> Result<()> {
        let fd = sys::open_in_root(self.root, b".", libc::O_RDONLY | libc::O_DIRECTORY)
            .map_err(|e| ArchiveError::io("open root", ".", e))?;
        nix::unistd::fchown(
            fd.as_fd(),
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
        )
        .map_err(|e| ArchiveError::io("chown", ".", e))?;
        nix::sys::stat::fchmod(fd.as_fd(), Mode::from_bits_truncate(meta.mode & 0o7777))
            .map_err(|e| ArchiveError::io("chmod", ".", e))?;
        for (k, v) in &meta.xattrs {
            sys::set_xattr(fd.as_fd(), k, v).map_err(|e| ArchiveError::io("setxattr", ".", e))?;
        }
        self.dir_times
            .push((RelPath(Vec::new()).as_bytes(), meta.mtime));
        Ok(())
    }

    /// `.wh.NAME` in `dir`.
    fn whiteout(&mut self, dir: &RelPath, name: &[u8]) -> Result<()> {
        let victim = dir.join(name);
        if self.written.contains(&victim.as_bytes()) {
            return Ok(());
        }
        if self.opts.overlay_whiteouts {
            let parent = self.mkdir_all(dir)?;
            self.replace(&parent, &victim, name, false)?;
            nix::sys::stat::mknodat(parent.as_fd(), name, SFlag::S_IFCHR, Mode::empty(), 0)
                .map_err(|e| ArchiveError::io("mknod whiteout", io_path(&victim), e))?;
            self.written.insert(victim.as_bytes());
            return Ok(());
        }
        let parent =
            match sys::open_in_root(self.root, &dir.as_bytes(), libc::O_PATH | libc::O_DIRECTORY) {
                Ok(fd) => fd,
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
                    return Ok(())
                }
                Err(e) => return Err(ArchiveError::io("open directory", io_path(dir), e)),
            };
        self.replace(&parent, &victim, name, false)?;
        Ok(())
    }

    /// `.wh..wh..opq` in `dir`: hide everything below `dir` from lower layers.
    fn opaque(&mut self, dir: &RelPath) -> Result<()> {
        if self.opts.overlay_whiteouts {
            let fd = self.mkdir_all(dir)?;
            return sys::set_xattr(fd.as_fd(), OVERLAY_OPAQUE_XATTR.as_bytes(), b"y")
                .map_err(|e| ArchiveError::io("set opaque xattr", io_path(dir), e));
        }
        let fd = match sys::open_in_root(
            self.root,
            &dir.as_bytes(),
            libc::O_RDONLY | libc::O_DIRECTORY,
        ) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            Err(e) => return Err(ArchiveError::io("open directory", io_path(dir), e)),
        };
        let names = sys::list_dir(fd.as_fd())
            .map_err(|e| ArchiveError::io("read directory", io_path(dir), e))?;
        for (name, is_dir) in names {
            let child = dir.join(&name);
            if self.written.contains(&child.as_bytes()) {
                continue;
            }
            remove_all_at(fd.as_fd(), &name, is_dir)
                .map_err(|e| ArchiveError::io("remove", io_path(&child), e))?;
        }
        Ok(())
    }

    /// Sets directory mtimes, deepest last-written first, after all contents.
    fn finish_dir_times(&mut self) -> Result<()> {
        for (path, mtime) in self.dir_times.iter().rev() {
            let shown = || PathBuf::from(escape_name(path));
            let fd = match sys::open_in_root(
                self.root,
                path,
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            ) {
                Ok(fd) => fd,
                // Replaced or deleted by a later entry: nothing to stamp.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ELOOP)
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(ArchiveError::io("open directory", shown(), e)),
            };
            nix::sys::stat::futimens(fd.as_fd(), mtime, mtime)
                .map_err(|e| ArchiveError::io("set times", shown(), e))?;
        }
        Ok(())
    }
}

fn link_name<R: Read>(entry: &tar::Entry<'_, R>, path: &RelPath) -> Result<Vec<u8>> {
    match entry.link_name_bytes() {
        Some(l) if !l.is_empty() && !l.contains(&0) => Ok(l.into_owned()),
        _ => Err(ArchiveError::UnsafeLink {
            path: path.display(),
            target: String::new(),
            reason: "missing or malformed link target",
        }),
    }
}

fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>, path: &RelPath) -> Result<Meta> {
    let h = entry.header();
    let mode = h.mode().map_err(|_| ArchiveError::UnsafePath {
        path: path.display(),
        reason: "malformed mode field",
    })?;
    // Blank numeric fields are common in hand-made tars; read them as 0
    // like Go's archive/tar does.
    // 4294967295 is chown(2)'s "leave unchanged": taken as an owner it would
    // leave the entry owned by root (who extracts), so a setuid bit on it
    // would make a setuid-root file. No real id has that value: refused.
    let id = |v: io::Result<u64>, what| -> Result<u32> {
        match u32::try_from(v.unwrap_or(0)) {
            Ok(u32::MAX) => Err(ArchiveError::UnsafePath {
                path: path.display(),
                reason: "owner id 4294967295 is chown's \"unchanged\" (it would stay root)",
            }),
            Ok(id) => Ok(id),
            Err(_) => Err(ArchiveError::UnsafePath {
                path: path.display(),
                reason: what,
            }),
        }
    };
    let uid = id(h.uid(), "uid out of range")?;
    let gid = id(h.gid(), "gid out of range")?;
    let secs = i64::try_from(h.mtime().unwrap_or(0)).unwrap_or(i64::MAX);
    let mut xattrs = Vec::new();
    if let Some(exts) = entry.pax_extensions().map_err(ArchiveError::from_read)? {
        for ext in exts {
            let ext = ext.map_err(ArchiveError::from_read)?;
            if let Some(name) = ext.key_bytes().strip_prefix(XATTR_PREFIX.as_bytes()) {
                // Overlay's own xattrs must not be smuggled in by a layer.
                if name.starts_with(b"trusted.overlay.") {
                    continue;
                }
                xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(Meta {
        mode,
        uid,
        gid,
        mtime: TimeSpec::new(secs, 0),
        xattrs,
    })
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies `src` into `dst`, seeking over all-zero 4 KiB blocks so holes
/// (GNU sparse entries or plain zero runs) stay holes. Returns bytes copied.
fn copy_sparse(src: &mut impl Read, dst: &mut File) -> Result<u64, CopyError> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        for chunk in buf[..n].chunks(BLOCK) {
            if super::zeros::is_zero(chunk) {
                dst.seek(SeekFrom::Current(chunk.len() as i64))
                    .map_err(CopyError::Write)?;
            } else {
                dst.write_all(chunk).map_err(CopyError::Write)?;
            }
        }
        total += n as u64;
    }
    Ok(total)
}

/// Writes the data segments of a sparse entry (stored one after the other
/// in `src`) at their offsets in `dst`, leaving the holes between them
/// unwritten. Returns the data bytes read.
fn write_segments(src: &mut impl Read, dst: &mut File, map: &SparseMap) -> Result<u64, CopyError> {
    let mut total = 0;
    for &(off, len) in &map.segments {
        dst.seek(SeekFrom::Start(off)).map_err(CopyError::Write)?;
        let got = copy_sparse(&mut src.take(len), dst)?;
        total += got;
        if got < len {
            break;
        }
    }
    Ok(total)
}

/// Removes `parent/name` and, for a directory, everything beneath it, using
/// only descriptors opened without following symlinks, at any depth (a
/// layer can nest directories far deeper than its names are long, through
/// symlinks, and a recursion per level overflowed the stack).
pub(super) fn remove_all_at(parent: BorrowedFd<'_>, name: &[u8], is_dir: bool) -> io::Result<()> {
    if is_dir {
        strata_driver_api::tree::remove_tree_at(parent, name)
    } else {
        nix::unistd::unlinkat(parent, name, UnlinkatFlags::NoRemoveDir)?;
        Ok(())
    }
}
