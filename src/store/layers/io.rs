//! Readers and writers a layer passes through on its way in: one hashes
//! and counts (its diff id and size), one keeps a sparse copy (the kept tar).

use std::fs::File;
use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

use crate::model::Digest;

/// A reader that hashes and counts what passes through it.
pub(super) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub(super) fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Reads the rest and returns the digest and byte count of everything read.
    pub(super) fn finish(mut self) -> io::Result<(Digest, u64)> {
        io::copy(
            &mut self.inner,
            &mut HashSink(&mut self.hasher, &mut self.count),
        )?;
        Ok((Digest::from_hasher(self.hasher), self.count))
    }
}

struct HashSink<'a>(&'a mut Sha256, &'a mut u64);

impl Write for HashSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        *self.1 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Copies everything read into a file.
pub(super) struct Tee<R> {
    pub(super) inner: R,
    pub(super) out: SparseWriter,
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
pub(super) struct SparseWriter {
    file: File,
    buf: Vec<u8>,
    len: u64,
}

const SPARSE_BLOCK: usize = 4096;
const SPARSE_BUF: usize = 256 * 1024;

impl SparseWriter {
    pub(super) fn new(file: File) -> Self {
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
    pub(super) fn finish(&mut self) -> io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
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
