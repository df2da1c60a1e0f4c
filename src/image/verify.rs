//! Readers that check what they stream: a byte range of the archive file,
//! and a hashing reader that fails at end of stream on a digest or size
//! mismatch.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use super::error::ImageError;
use crate::model::Digest;

/// Reads `len` bytes of a shared file from `offset` with `pread`, so
/// several sections can be open at once.
pub struct Section {
    file: Arc<File>,
    pos: u64,
    end: u64,
}

impl Section {
    /// A section of `file`.
    pub fn new(file: Arc<File>, offset: u64, len: u64) -> Self {
        Section {
            file,
            pos: offset,
            end: offset + len,
        }
    }
}

impl Read for Section {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end - self.pos;
        if left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive file shorter than its index",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Hashes everything read; at end of stream checks the digest (and size if
/// given) and fails with an [`ImageError`] inside the `io::Error`.
pub struct Verify<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    expected: Option<Digest>,
    size: Option<u64>,
    what: String,
    done: bool,
}

impl<R: Read> Verify<R> {
    /// Wraps `inner`; `what` names the blob in errors.
    pub fn new(inner: R, expected: Option<Digest>, size: Option<u64>, what: String) -> Self {
        Verify {
            inner,
            hasher: Sha256::new(),
            count: 0,
            expected,
            size,
            what,
            done: false,
        }
    }

    fn check(&mut self) -> Result<(), ImageError> {
        self.done = true;
        if let Some(size) = self.size {
            if size != self.count {
                return Err(ImageError::SizeMismatch {
                    what: self.what.clone(),
                    expected: size,
                    actual: self.count,
                });
            }
        }
        let actual = Digest::from_hasher(std::mem::take(&mut self.hasher));
        match &self.expected {
            Some(expected) if *expected != actual => Err(ImageError::DigestMismatch {
                what: self.what.clone(),
                expected: expected.clone(),
                actual,
            }),
            _ => Ok(()),
        }
    }
}

impl<R: Read> Read for Verify<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.check()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            return Ok(0);
        }
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        if self.size.is_some_and(|s| self.count > s) {
            let err = ImageError::SizeMismatch {
                what: self.what.clone(),
                expected: self.size.unwrap_or(0),
                actual: self.count,
            };
            return Err(io::Error::new(io::ErrorKind::InvalidData, err));
        }
        Ok(n)
    }
}

/// Largest JSON document (index, manifest, image config, `manifest.json`)
/// Strata reads: 4 MiB, containerd's limit for manifests and indexes.
/// Real configs are a few KiB; the record of an image keeps its config.
pub const MAX_DOCUMENT_SIZE: u64 = 4 << 20;

/// Most bytes of documents read from one archive, all of them together:
/// a document named many times (one config behind every entry of a
/// `manifest.json`, one manifest behind every entry of an index) is read
/// and kept once per mention, so without this cap a few MiB of archive
/// cost memory and hashing in proportion to mentions × document size.
pub const MAX_DOCUMENTS_TOTAL: u64 = 64 << 20;

/// Reads a whole small blob (at most [`MAX_DOCUMENT_SIZE`]), verifying it.
/// A bigger one is refused before it is read.
pub fn read_verified(
    r: impl Read,
    expected: Option<Digest>,
    size: Option<u64>,
    what: &str,
) -> Result<Vec<u8>, ImageError> {
    let too_big = |n: u64| {
        ImageError::invalid(
            what,
            format!(
                "{n} bytes is over the limit of {MAX_DOCUMENT_SIZE} bytes for an index, manifest or config"
            ),
        )
    };
    if let Some(s) = size.filter(|s| *s > MAX_DOCUMENT_SIZE) {
        return Err(too_big(s));
    }
    let mut v = Verify::new(
        r.take(MAX_DOCUMENT_SIZE + 1),
        expected,
        size,
        what.to_owned(),
    );
    let mut out = Vec::new();
    v.read_to_end(&mut out)
        .map_err(|e| into_image_error(e, what))?;
    if out.len() as u64 > MAX_DOCUMENT_SIZE {
        return Err(too_big(out.len() as u64));
    }
    Ok(out)
}

/// Unwraps an [`ImageError`] carried by an `io::Error`, or wraps the
/// `io::Error` naming `what`.
pub fn into_image_error(e: io::Error, what: &str) -> ImageError {
    if e.get_ref().is_some_and(|i| i.is::<ImageError>()) {
        if let Some(inner) = e.into_inner() {
            if let Ok(img) = inner.downcast::<ImageError>() {
                return *img;
            }
        }
        return ImageError::invalid(what, "verification failed");
    }
    ImageError::io("read", what, e)
}
