//! Kept layer tars: every layer tar that enters the store (load, import,
//! commit) is kept under `<root>/layer-tars/<diff id hex>.tar`, so `save`
//! can write the exact bytes the config's diff ids name; a layer without a
//! kept tar is regenerated from its snapshot and must hash to the same
//! diff id.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::archive::ApplyLimits;
use crate::error::{Result, StoreError};
use crate::model::{ContainerId, Digest, LayerRecord};
use crate::ops::layer::apply_layer_snapshot;
use crate::Store;

/// Where the tar of layer `diff_id` is kept.
pub fn layer_tar_path(store: &Store, diff_id: &Digest) -> PathBuf {
    store
        .layout()
        .layer_tars()
        .join(format!("{}.tar", diff_id.hex()))
}

/// Deletes kept layer tars that no recorded image uses any more (after
/// `rmi`). Returns how many were deleted.
pub fn prune_layer_tars(store: &Store) -> Result<usize> {
    let dir = store.layout().layer_tars();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(StoreError::io("read directory", &dir, e)),
    };
    let used: HashSet<String> = store
        .meta()?
        .images()?
        .iter()
        .flat_map(|i| i.layers.iter().map(|l| format!("{}.tar", l.diff_id.hex())))
        .collect();
    let mut removed = 0;
    for e in entries {
        let e = e.map_err(|e| StoreError::io("read directory", &dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tar")
            && !used.contains(&name)
            && !crate::store::owned::held_by_live_session(store, &e.path())
        {
            fs::remove_file(e.path()).map_err(|err| StoreError::io("remove", e.path(), err))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Copies everything read into a file.
struct Tee<R> {
    inner: R,
    out: SparseWriter,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Writes a file leaving every all-zero 4 KiB block a hole, so a kept
/// layer tar full of zeros (padding, zero-filled files) takes no space.
struct SparseWriter {
    file: File,
    buf: Vec<u8>,
    len: u64,
}

const SPARSE_BLOCK: usize = 4096;
const SPARSE_BUF: usize = 256 * 1024;

impl SparseWriter {
    fn new(file: File) -> Self {
        SparseWriter {
            file,
            buf: Vec::with_capacity(SPARSE_BUF),
            len: 0,
        }
    }

    /// Writes out whole blocks (all of the buffer when `all`).
    fn drain(&mut self, all: bool) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let keep = if all {
            0
        } else {
            self.buf.len() % SPARSE_BLOCK
        };
        let upto = self.buf.len() - keep;
        for chunk in self.buf[..upto].chunks(SPARSE_BLOCK) {
            if !crate::archive::is_zero(chunk) {
                self.file.write_all_at(chunk, self.len)?;
            }
            self.len += chunk.len() as u64;
        }
        self.buf.drain(..upto);
        Ok(())
    }

    /// Writes what is buffered and gives the file its full length.
    fn finish(&mut self) -> io::Result<()> {
        self.drain(true)?;
        self.file.set_len(self.len)
    }
}

impl Write for SparseWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= SPARSE_BUF {
            self.drain(false)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// [`apply_layer_snapshot`] that also keeps the tar it applied (see the
/// module docs; zero blocks are left as holes), so `save` can reproduce the
/// layer byte for byte. Every
/// path that brings a foreign layer into the store (`load`, `import`)
/// goes through here; `limits` bound what the tar may expand to, and a
/// refused layer's tar is never kept.
pub fn apply_and_keep(
    store: &Store,
    parent: Option<&Digest>,
    tar: impl Read,
    limits: ApplyLimits,
) -> Result<LayerRecord> {
    let tmp = store
        .temp_dir("layer-tars")?
        .join(format!("in-{}.tar", ContainerId::generate()));
    let out = strata_driver_api::private::create_private_file(&tmp)?;
    let mut reader = Tee {
        inner: tar,
        out: SparseWriter::new(out),
    };
    let result = apply_layer_snapshot(store, parent, &mut reader, limits).and_then(|record| {
        reader
            .out
            .finish()
            .map_err(|e| StoreError::io("write", &tmp, e))?;
        keep_tar(store, &tmp, &record.diff_id)?;
        Ok(record)
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

pub(crate) fn keep_tar(store: &Store, tmp: &Path, diff_id: &Digest) -> Result<()> {
    let dst = layer_tar_path(store, diff_id);
    if let Some(dir) = dst.parent() {
        crate::perms::private_dir(dir)?;
    }
    crate::store::owned::mark(store.session(), tmp);
    fs::rename(tmp, &dst).map_err(|e| StoreError::io("rename", tmp, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn sparse_writer_keeps_bytes_and_makes_holes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        let mut data = vec![0u8; 3 << 20];
        data[10] = 1;
        data[(1 << 20) + 4095] = 2;
        data[(3 << 20) - 1] = 3;
        let mut w = SparseWriter::new(File::create(&p).unwrap());
        // Odd-sized writes, as a decompressor hands them out.
        for chunk in data.chunks(7777) {
            w.write_all(chunk).unwrap();
        }
        w.finish().unwrap();
        assert_eq!(fs::read(&p).unwrap(), data);
        let m = fs::metadata(&p).unwrap();
        assert!(
            m.blocks() * 512 < 1 << 20,
            "{} bytes allocated",
            m.blocks() * 512
        );
        // A tail of zeros still counts in the length.
        let mut w = SparseWriter::new(File::create(&p).unwrap());
        w.write_all(&[0u8; 5000]).unwrap();
        w.finish().unwrap();
        assert_eq!(fs::read(&p).unwrap(), vec![0u8; 5000]);
    }
}
