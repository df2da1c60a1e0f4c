//! Writing reproducible layer tars.
//!
//! Entries are sorted by path; headers are ustar with numeric uid/gid only
//! (no user/group names), mtime in whole seconds, no atime/ctime; long
//! names, big ids and xattrs go in a PAX record with sorted keys. The same
//! change therefore gives the same bytes, hence the same diff id, whatever
//! driver the change was made on.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::Mode;
use tar::{EntryType, Header};

use super::changes::{content_xattrs_at, Change, ChangeKind};
use super::error::{ArchiveError, Result};
use super::{sys, WHITEOUT_PREFIX};

const USTAR_NAME_LEN: usize = 100;
const USTAR_MAX_ID: u64 = 0o7777777;
const USTAR_MAX_SIZE: u64 = 0o77777777777;

/// Writes the layer tar for `changes` (as from [`changes`](super::changes)),
/// reading added and changed entries from `root`, deletions as `.wh.` files.
/// Each entry is read relative to its parent directory resolved inside
/// `root` with `openat2(RESOLVE_IN_ROOT)`, never through a host path.
pub fn write_layer(root: &Path, changes: &[Change], out: impl Write) -> Result<()> {
    let mut items: Vec<(Vec<u8>, Item)> = changes
        .iter()
        .map(|c| {
            let rel = c.path.as_os_str().as_bytes();
            match c.kind {
                ChangeKind::Deleted => {
                    let (dir, name) = match rel.iter().rposition(|b| *b == b'/') {
                        Some(i) => (&rel[..=i], &rel[i + 1..]),
                        None => (&b""[..], rel),
                    };
                    let mut n = dir.to_vec();
                    n.extend_from_slice(WHITEOUT_PREFIX.as_bytes());
                    n.extend_from_slice(name);
                    (n, Item::Whiteout)
                }
                _ => (rel.to_vec(), Item::Path(c.path.clone())),
            }
        })
        .collect();
    items.sort_by(|a, b| a.0.cmp(&b.0));
    items.dedup_by(|a, b| a.0 == b.0);
    let mut w = Writer::new(root, out)?;
    for (name, item) in items {
        crate::interrupt::check()?;
        match item {
            Item::Whiteout => w.whiteout(&name)?,
            Item::Path(p) => w.path(&name, &p)?,
        }
    }
    w.finish()
}

/// Writes every entry under `root` (not the root itself) as one flattened
/// tar, for `export`.
///
/// The tree is walked through directory descriptors opened without
/// following symlinks, and every entry is read relative to its parent's
/// descriptor (see [`write_layer`]), so a container that swaps a directory
/// for a symlink while it is exported cannot make the walk leave the root.
pub fn write_tree(root: &Path, out: impl Write) -> Result<()> {
    let root_fd = open_root(root)?;
    let mut all = Vec::new();
    collect(root_fd.as_fd(), Path::new(""), &mut all)?;
    write_layer(root, &all, out)
}

pub(super) fn collect(dir: BorrowedFd<'_>, rel: &Path, out: &mut Vec<Change>) -> Result<()> {
    let names = sys::list_dir(dir).map_err(|e| ArchiveError::io("read directory", rel, e))?;
    for (name, is_dir) in names {
        crate::interrupt::check()?;
        let r = rel.join(OsStr::from_bytes(&name));
        out.push(Change {
            kind: ChangeKind::Added,
            path: r.clone(),
        });
        if !is_dir {
            continue;
        }
        match sys::open_dir_nofollow(dir, &name) {
            Ok(fd) => collect(fd.as_fd(), &r, out)?,
            // Replaced by a symlink or removed since it was listed: archive
            // what is there now, without descending.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ELOOP | libc::ENOTDIR | libc::ENOENT)
                ) => {}
            Err(e) => return Err(ArchiveError::io("open directory", &r, e)),
        }
    }
    Ok(())
}

fn open_root(root: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ArchiveError::io("open root", root, e))
}

enum Item {
    Whiteout,
    Path(PathBuf),
}

struct Writer<W: Write> {
    root_fd: OwnedFd,
    tar: tar::Builder<W>,
    links: HashMap<(u64, u64), Vec<u8>>,
}

impl<W: Write> Writer<W> {
    fn new(root: &Path, out: W) -> Result<Self> {
        Ok(Writer {
            root_fd: open_root(root)?,
            tar: tar::Builder::new(out),
            links: HashMap::new(),
        })
    }

    fn whiteout(&mut self, name: &[u8]) -> Result<()> {
        let h = Entry {
            name: name.to_vec(),
            kind: EntryType::Regular,
            ..Entry::default()
        };
        self.append(h, io::empty())
    }

    /// Archives the entry at `rel`, read relative to its parent directory,
    /// which is resolved inside the root (`RESOLVE_IN_ROOT`): whatever a
    /// running container swaps in, nothing outside the root is read.
    fn path(&mut self, name: &[u8], rel: &Path) -> Result<()> {
        let bytes = rel.as_os_str().as_bytes();
        let (dir, base) = match bytes.iter().rposition(|b| *b == b'/') {
            Some(i) => (&bytes[..i], &bytes[i + 1..]),
            None => (&b""[..], bytes),
        };
        let parent = sys::open_in_root(self.root_fd.as_fd(), dir, libc::O_PATH | libc::O_DIRECTORY)
            .map_err(|err| ArchiveError::io("open directory", rel, err))?;
        let st = nix::sys::stat::fstatat(parent.as_fd(), base, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|err| ArchiveError::io("stat", rel, err))?;
        let fmt = st.st_mode & libc::S_IFMT;
        if fmt == libc::S_IFSOCK {
            return Ok(());
        }
        let mut e = Entry::from_stat(name, &st);
        e.xattrs = content_xattrs_at(parent.as_fd(), base, rel)?;
        if fmt != libc::S_IFDIR && st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.links.get(&key) {
                e.kind = EntryType::Link;
                e.link = first.clone();
                e.size = 0;
                e.xattrs.clear();
                return self.append(e, io::empty());
            }
            self.links.insert(key, name.to_vec());
        }
        match fmt {
            libc::S_IFDIR => {
                e.kind = EntryType::Directory;
                e.name.push(b'/');
                self.append(e, io::empty())
            }
            libc::S_IFREG => {
                let fd = nix::fcntl::openat(
                    parent.as_fd(),
                    base,
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|err| ArchiveError::io("open", rel, err))?;
                let now = nix::sys::stat::fstat(fd.as_fd())
                    .map_err(|err| ArchiveError::io("stat", rel, err))?;
                if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
                    return Err(ArchiveError::io(
                        "read",
                        rel,
                        io::Error::other("replaced while being archived"),
                    ));
                }
                let len = st.st_size as u64;
                e.kind = EntryType::Regular;
                e.size = len;
                let data = Exact {
                    inner: File::from(fd).take(len),
                    left: len,
                    path: rel.to_path_buf(),
                };
                self.append(e, data)
            }
            libc::S_IFLNK => {
                let t = nix::fcntl::readlinkat(parent.as_fd(), base)
                    .map_err(|err| ArchiveError::io("readlink", rel, err))?;
                e.kind = EntryType::Symlink;
                e.link = t.as_bytes().to_vec();
                self.append(e, io::empty())
            }
            _ => {
                e.kind = match fmt {
                    libc::S_IFCHR => EntryType::Char,
                    libc::S_IFBLK => EntryType::Block,
                    _ => EntryType::Fifo,
                };
                e.dev = Some((libc::major(st.st_rdev), libc::minor(st.st_rdev)));
                self.append(e, io::empty())
            }
        }
    }

    fn append(&mut self, e: Entry, data: impl Read) -> Result<()> {
        let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut h = Header::new_ustar();
        h.set_entry_type(e.kind);
        h.set_mode(e.mode);
        h.set_mtime(e.mtime);
        set_id(&mut h, &mut pax, b"uid", e.uid, Header::set_uid);
        set_id(&mut h, &mut pax, b"gid", e.gid, Header::set_gid);
        if e.size > USTAR_MAX_SIZE {
            pax.push((b"size".to_vec(), e.size.to_string().into_bytes()));
            h.set_size(0);
        } else {
            h.set_size(e.size);
        }
        let ustar = h
            .as_ustar_mut()
            .ok_or_else(|| ArchiveError::Write(io::Error::other("ustar header")))?;
        put_name(&mut ustar.name, &e.name, b"path", &mut pax);
        if !e.link.is_empty() {
            put_name(&mut ustar.linkname, &e.link, b"linkpath", &mut pax);
        }
        if let Some((major, minor)) = e.dev {
            h.set_device_major(major).map_err(ArchiveError::Write)?;
            h.set_device_minor(minor).map_err(ArchiveError::Write)?;
        }
        for (k, v) in e.xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(&k);
            pax.push((key, v));
        }
        if !pax.is_empty() {
            pax.sort();
            let body = pax_body(&pax);
            let mut ph = Header::new_ustar();
            ph.set_entry_type(EntryType::XHeader);
            ph.set_mode(0o644);
            ph.set_size(body.len() as u64);
            if let Some(u) = ph.as_ustar_mut() {
                put_name(&mut u.name, b"././@PaxHeader", b"", &mut Vec::new());
            }
            ph.set_cksum();
            self.tar
                .append(&ph, &body[..])
                .map_err(ArchiveError::Write)?;
        }
        h.set_cksum();
        self.tar.append(&h, data).map_err(|err| {
            match err.get_ref().and_then(|i| i.downcast_ref::<Shrunk>()) {
                Some(s) => ArchiveError::io(
                    "read",
                    s.0.clone(),
                    io::Error::other("file shrank while being archived"),
                ),
                None => ArchiveError::Write(err),
            }
        })
    }

    fn finish(mut self) -> Result<()> {
        self.tar.finish().map_err(ArchiveError::Write)
    }
}

/// Header fields of one entry before encoding.
struct Entry {
    name: Vec<u8>,
    link: Vec<u8>,
    kind: EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    size: u64,
    dev: Option<(u32, u32)>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Default for Entry {
    fn default() -> Self {
        Entry {
            name: Vec::new(),
            link: Vec::new(),
            kind: EntryType::Regular,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 0,
            dev: None,
            xattrs: Vec::new(),
        }
    }
}

impl Entry {
    fn from_stat(name: &[u8], st: &libc::stat) -> Entry {
        Entry {
            name: name.to_vec(),
            mode: st.st_mode & 0o7777,
            uid: u64::from(st.st_uid),
            gid: u64::from(st.st_gid),
            mtime: u64::try_from(st.st_mtime).unwrap_or(0),
            ..Entry::default()
        }
    }
}

fn set_id(
    h: &mut Header,
    pax: &mut Vec<(Vec<u8>, Vec<u8>)>,
    key: &[u8],
    id: u64,
    set: fn(&mut Header, u64),
) {
    if id > USTAR_MAX_ID {
        pax.push((key.to_vec(), id.to_string().into_bytes()));
        set(h, 0);
    } else {
        set(h, id);
    }
}

/// Stores `value` in a fixed ustar name field, or a truncated copy plus a
/// PAX record when it does not fit.
fn put_name(
    field: &mut [u8; USTAR_NAME_LEN],
    value: &[u8],
    key: &[u8],
    pax: &mut Vec<(Vec<u8>, Vec<u8>)>,
) {
    field.fill(0);
    let n = value.len().min(USTAR_NAME_LEN);
    field[..n].copy_from_slice(&value[..n]);
    if value.len() > USTAR_NAME_LEN {
        pax.push((key.to_vec(), value.to_vec()));
    }
}

/// Encodes PAX records: `"<len> <key>=<value>\n"`, len counting itself.
fn pax_body(records: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let rest = k.len() + v.len() + 3;
        let mut len = rest + rest.to_string().len();
        if len.to_string().len() + rest != len {
            len = rest + len.to_string().len();
        }
        out.extend_from_slice(len.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(k);
        out.push(b'=');
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

#[derive(Debug)]
struct Shrunk(PathBuf);
impl std::fmt::Display for Shrunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} shrank while being archived", self.0.display())
    }
}
impl std::error::Error for Shrunk {}

/// Reads exactly the header's size, failing if the file got shorter.
struct Exact<R> {
    inner: R,
    left: u64,
    path: PathBuf,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(io::Error::other(Shrunk(self.path.clone())));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_lengths_count_themselves() {
        for vlen in [0usize, 1, 85, 86, 87, 990, 995, 9990] {
            let body = pax_body(&[(b"path".to_vec(), vec![b'x'; vlen])]);
            let sp = body.iter().position(|b| *b == b' ').unwrap();
            let len: usize = std::str::from_utf8(&body[..sp]).unwrap().parse().unwrap();
            assert_eq!(len, body.len(), "value length {vlen}");
        }
    }
}
