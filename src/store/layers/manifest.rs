//! Per-file CRC32 manifests of committed layers, so `strata check --data`
//! can name each file whose content changed behind Strata's back (loop
//! images and ext4 on dm-thin have no data checksums of their own).
//!
//! A manifest describes the layer's merged view (the layer on its parents)
//! and lives where [`Layout::manifest`] says, written atomically before the
//! layer's snapshot is committed. [`super::LayerStore`] is its only user
//! outside this file.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::model::ChainId;
use crate::store::Layout;

/// Size and CRC32 of one regular file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSum {
    /// Bytes.
    pub size: u64,
    /// CRC32 (IEEE) of the content.
    pub crc32: u32,
}

/// Every regular file of a tree, by path relative to its root (`/etc/motd`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Path -> sum.
    pub files: BTreeMap<String, FileSum>,
}

/// How a file differs from its manifest entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mismatch {
    /// Content (size or CRC) changed.
    Changed(String),
    /// The file is gone.
    Missing(String),
    /// A regular file the manifest does not know.
    Added(String),
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Changed(p) => write!(f, "{p}: content changed"),
            Self::Missing(p) => write!(f, "{p}: missing"),
            Self::Added(p) => write!(f, "{p}: appeared"),
        }
    }
}

/// Sums every regular file below `tree` (symlinks are not followed).
pub fn compute(tree: &Path) -> Result<Manifest> {
    let mut manifest = Manifest::default();
    walk(tree, tree, &mut manifest)?;
    Ok(manifest)
}

fn walk(root: &Path, dir: &Path, out: &mut Manifest) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(|e| StoreError::io("read dir", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io("read dir", dir, e))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|e| StoreError::io("stat", &path, e))?;
        if kind.is_dir() {
            walk(root, &path, out)?;
        } else if kind.is_file() {
            let sum = sum_file(&path).map_err(|e| StoreError::io("read", &path, e))?;
            out.files.insert(relative(root, &path), sum);
        }
    }
    Ok(())
}

fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    format!("/{}", rel.to_string_lossy())
}

/// Sums a file, reading only its data: holes (found with `SEEK_DATA` /
/// `SEEK_HOLE`) are folded into the CRC arithmetically, so a sparse file of
/// 16 GiB with a few blocks of data costs what those blocks cost.
fn sum_file(path: &Path) -> io::Result<FileSum> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut hasher = crc32fast::Hasher::new();
    let mut zeros = ZeroCrc::default();
    let mut buf = vec![0u8; 128 * 1024];
    let mut pos = 0u64;
    while pos < size {
        let data = match seek(&file, pos, nix::unistd::Whence::SeekData) {
            Ok(d) => d.min(size),
            Err(nix::errno::Errno::ENXIO) => size,
            // No hole support here: read everything.
            Err(_) => pos,
        };
        if data > pos {
            hasher.combine(&zeros.of(data - pos));
        }
        let end = match seek(&file, data, nix::unistd::Whence::SeekHole) {
            Ok(h) => h.clamp(data, size),
            Err(_) => size,
        };
        file.seek(io::SeekFrom::Start(data))?;
        let mut left = end - data;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = file.read(&mut buf[..want])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while being summed",
                ));
            }
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
        pos = end.max(data);
        if end == data && data < size {
            // SEEK_HOLE found nothing past `data`: should not happen, but
            // never loop forever.
            pos = size;
        }
    }
    Ok(FileSum {
        size,
        crc32: hasher.finalize(),
    })
}

fn seek(file: &File, pos: u64, whence: nix::unistd::Whence) -> nix::Result<u64> {
    let off = i64::try_from(pos).map_err(|_| nix::errno::Errno::EOVERFLOW)?;
    let r = nix::unistd::lseek(file, off, whence)?;
    Ok(r as u64)
}

/// CRC32 states of runs of zeros, built by doubling: `of(n)` costs
/// O(log n) combines instead of hashing `n` bytes.
#[derive(Default)]
struct ZeroCrc {
    /// `pow[k]`: the state of `ZERO_BLOCK << k` zero bytes.
    pow: Vec<crc32fast::Hasher>,
}

const ZERO_BLOCK: u64 = 4096;

impl ZeroCrc {
    fn of(&mut self, n: u64) -> crc32fast::Hasher {
        let mut out = crc32fast::Hasher::new();
        let blocks = n / ZERO_BLOCK;
        let mut k = 0;
        while blocks >> k != 0 {
            if self.pow.len() <= k {
                let next = match self.pow.last() {
                    None => {
                        let mut h = crc32fast::Hasher::new();
                        h.update(&[0u8; ZERO_BLOCK as usize]);
                        h
                    }
                    Some(prev) => {
                        let mut h = prev.clone();
                        h.combine(prev);
                        h
                    }
                };
                self.pow.push(next);
            }
            if blocks >> k & 1 == 1 {
                out.combine(&self.pow[k]);
            }
            k += 1;
        }
        let rest = (n % ZERO_BLOCK) as usize;
        if rest > 0 {
            out.update(&[0u8; ZERO_BLOCK as usize][..rest]);
        }
        out
    }
}

/// Writes the manifest of `chain` atomically (temp file, fsync, rename).
/// The file carries the writer's session until its layer is committed, so
/// another process's `check` leaves it alone meanwhile.
pub(super) fn save(
    layout: &Layout,
    session: &crate::db::session::Session,
    chain: &ChainId,
    manifest: &Manifest,
) -> Result<()> {
    crate::perms::private_dir(&layout.manifests())?;
    let target = layout.manifest(chain);
    let tmp = layout.manifest_temp(chain, session.id());
    let bytes = serde_json::to_vec(manifest).map_err(|e| StoreError::Metadata(e.to_string()))?;
    let write = || -> io::Result<()> {
        use std::io::Write;
        let mut f = strata_driver_api::private::private_file_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        crate::store::owned::mark(session, &tmp);
        f.write_all(&bytes)?;
        f.sync_all()
    };
    write().map_err(|e| StoreError::io("write", &tmp, e))?;
    fs::rename(&tmp, &target).map_err(|e| StoreError::io("rename", &target, e))
}

/// Deletes the manifest of `chain` (with its layer); a missing one is fine.
pub(super) fn remove(layout: &Layout, chain: &ChainId) -> Result<()> {
    let path = layout.manifest(chain);
    match fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StoreError::io("remove", path, e)),
        _ => Ok(()),
    }
}

/// Reads the manifest of `chain`, if one was recorded.
pub(super) fn load(layout: &Layout, chain: &ChainId) -> Result<Option<Manifest>> {
    let path = layout.manifest(chain);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Metadata(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io("read", path, e)),
    }
}

/// Chain ids with a manifest file, and stray temp files.
pub(super) fn stored(layout: &Layout) -> Result<(Vec<ChainId>, Vec<PathBuf>)> {
    let dir = layout.manifests();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(StoreError::io("read dir", &dir, e)),
    };
    let (mut chains, mut strays) = (Vec::new(), Vec::new());
    for entry in entries.flatten() {
        match Layout::manifest_chain(&entry.file_name().to_string_lossy()) {
            Some(chain) => chains.push(chain),
            None => strays.push(entry.path()),
        }
    }
    chains.sort();
    Ok((chains, strays))
}

/// Differences between what was recorded and what is there now.
pub fn compare(expected: &Manifest, actual: &Manifest) -> Vec<Mismatch> {
    let mut out = Vec::new();
    for (path, sum) in &expected.files {
        match actual.files.get(path) {
            None => out.push(Mismatch::Missing(path.clone())),
            Some(now) if now != sum => out.push(Mismatch::Changed(path.clone())),
            Some(_) => {}
        }
    }
    for path in actual.files.keys() {
        if !expected.files.contains_key(path) {
            out.push(Mismatch::Added(path.clone()));
        }
    }
    out
}

#[cfg(test)]
mod sparse_tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn holes_sum_like_zeros() {
        let dir = tempfile::tempdir().unwrap();
        for (len, writes) in [
            (0u64, vec![]),
            (5000, vec![]),
            (3 << 20, vec![(0u64, 1000usize), (2 << 20, 7000)]),
            ((1 << 20) + 123, vec![(1 << 20, 123)]),
            (10 << 20, vec![(4096 * 3 + 7, 1)]),
        ] {
            let p = dir.path().join("f");
            let f = File::create(&p).unwrap();
            f.set_len(len).unwrap();
            let mut plain = vec![0u8; len as usize];
            for (off, n) in writes {
                let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8 + 1).collect();
                f.write_all_at(&data, off).unwrap();
                plain[off as usize..off as usize + n].copy_from_slice(&data);
            }
            let sum = sum_file(&p).unwrap();
            assert_eq!(sum.size, len);
            assert_eq!(sum.crc32, crc32fast::hash(&plain), "length {len}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_names_changed_missing_and_added_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        fs::write(dir.path().join("etc/motd"), "hello").unwrap();
        fs::write(dir.path().join("gone"), "x").unwrap();
        let before = compute(dir.path()).unwrap();
        assert_eq!(before.files["/etc/motd"].size, 5);
        assert_eq!(compare(&before, &compute(dir.path()).unwrap()), vec![]);
        fs::write(dir.path().join("etc/motd"), "hellp").unwrap();
        fs::remove_file(dir.path().join("gone")).unwrap();
        fs::write(dir.path().join("new"), "y").unwrap();
        let after = compute(dir.path()).unwrap();
        assert_eq!(
            compare(&before, &after),
            vec![
                Mismatch::Changed("/etc/motd".into()),
                Mismatch::Missing("/gone".into()),
                Mismatch::Added("/new".into()),
            ]
        );
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let chain = crate::model::Digest::of(b"layer");
        let mut m = Manifest::default();
        m.files.insert("/a".into(), FileSum { size: 1, crc32: 7 });
        let session = crate::db::session::Session::begin(&dir.path().join("sessions")).unwrap();
        let layout = Layout::new(dir.path());
        save(&layout, &session, &chain, &m).unwrap();
        assert_eq!(load(&layout, &chain).unwrap(), Some(m));
        assert_eq!(stored(&layout).unwrap().0, vec![chain]);
    }
}
