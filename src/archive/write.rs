//! Writing reproducible layer tars.
//!
//! Entries are sorted by path; headers are ustar with numeric uid/gid only
//! (no user/group names), mtime in whole seconds, no atime/ctime; long
//! names, big ids and xattrs go in a PAX record with sorted keys. The same
//! change therefore gives the same bytes, hence the same diff id, whatever
//! driver the change was made on.

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use tar::{EntryType, Header};

use super::changes::{content_xattrs, Change, ChangeKind};
use super::error::{ArchiveError, Result};
use super::{sys, WHITEOUT_PREFIX};

const USTAR_NAME_LEN: usize = 100;
const USTAR_MAX_ID: u64 = 0o7777777;
const USTAR_MAX_SIZE: u64 = 0o77777777777;

/// Writes the layer tar for `changes` (as from [`changes`](super::changes)),
/// reading added and changed entries from `root`, deletions as `.wh.` files.
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
pub fn write_tree(root: &Path, out: impl Write) -> Result<()> {
    let mut all = Vec::new();
    collect(root, Path::new(""), &mut all)?;
    write_layer(root, &all, out)
}

fn collect(root: &Path, rel: &Path, out: &mut Vec<Change>) -> Result<()> {
    let dir = root.join(rel);
    let rd = fs::read_dir(&dir).map_err(|e| ArchiveError::io("read directory", &dir, e))?;
    for e in rd {
        crate::interrupt::check()?;
        let e = e.map_err(|e| ArchiveError::io("read directory", &dir, e))?;
        let r = rel.join(e.file_name());
        let is_dir = e
            .file_type()
            .map_err(|err| ArchiveError::io("stat", &r, err))?
            .is_dir();
        out.push(Change {
            kind: ChangeKind::Added,
            path: r.clone(),
        });
        if is_dir {
            collect(root, &r, out)?;
        }
    }
    Ok(())
}

enum Item {
    Whiteout,
    Path(PathBuf),
}

struct Writer<'a, W: Write> {
    root: &'a Path,
    root_fd: std::os::fd::OwnedFd,
    tar: tar::Builder<W>,
    links: HashMap<(u64, u64), Vec<u8>>,
}

impl<'a, W: Write> Writer<'a, W> {
    fn new(root: &'a Path, out: W) -> Result<Self> {
        let root_fd = nix::fcntl::open(
            root,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ArchiveError::io("open root", root, e))?;
        Ok(Writer {
            root,
            root_fd,
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

    fn path(&mut self, name: &[u8], rel: &Path) -> Result<()> {
        let full = self.root.join(rel);
        let m = fs::symlink_metadata(&full).map_err(|e| ArchiveError::io("stat", rel, e))?;
        let ft = m.file_type();
        if ft.is_socket() {
            return Ok(());
        }
        let mut e = Entry::from_meta(name, &m);
        e.xattrs = content_xattrs(&full)?;
        if !ft.is_dir() && m.nlink() > 1 {
            let key = (m.dev(), m.ino());
            if let Some(first) = self.links.get(&key) {
                e.kind = EntryType::Link;
                e.link = first.clone();
                e.size = 0;
                e.xattrs.clear();
                return self.append(e, io::empty());
            }
            self.links.insert(key, name.to_vec());
        }
        if ft.is_dir() {
            e.kind = EntryType::Directory;
            let mut n = e.name.clone();
            n.push(b'/');
            e.name = n;
            self.append(e, io::empty())
        } else if ft.is_file() {
            let fd = sys::open_in_root(
                self.root_fd.as_fd(),
                rel.as_os_str().as_bytes(),
                libc::O_RDONLY | libc::O_NOFOLLOW,
            )
            .map_err(|err| ArchiveError::io("open", rel, err))?;
            e.kind = EntryType::Regular;
            e.size = m.len();
            let data = Exact {
                inner: File::from(fd).take(m.len()),
                left: m.len(),
                path: rel.to_path_buf(),
            };
            self.append(e, data)
        } else if ft.is_symlink() {
            let t = fs::read_link(&full).map_err(|err| ArchiveError::io("readlink", rel, err))?;
            e.kind = EntryType::Symlink;
            e.link = t.as_os_str().as_bytes().to_vec();
            self.append(e, io::empty())
        } else {
            e.kind = if ft.is_char_device() {
                EntryType::Char
            } else if ft.is_block_device() {
                EntryType::Block
            } else {
                EntryType::Fifo
            };
            e.dev = Some((libc::major(m.rdev()), libc::minor(m.rdev())));
            self.append(e, io::empty())
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
    fn from_meta(name: &[u8], m: &Metadata) -> Entry {
        Entry {
            name: name.to_vec(),
            mode: m.mode() & 0o7777,
            uid: u64::from(m.uid()),
            gid: u64::from(m.gid()),
            mtime: u64::try_from(m.mtime()).unwrap_or(0),
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
