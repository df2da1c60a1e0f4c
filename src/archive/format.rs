//! Telling "this is not a tar archive" from a failing source: errors of
//! the bytes' source (the file, a decompressor) are marked as they pass
//! through [`Source`]; an unmarked error of the tar reader is then the
//! archive's own malformation, which the tar crate words in its terms
//! ("failed to read entire block", "numeric field was not a number").

use std::io::{self, Read};

use super::error::{ArchiveError, LimitExceeded};
use crate::interrupt::Interrupted;

/// A reader whose errors are marked as the source's (see the module docs).
pub struct Source<R>(pub R);

/// An error of a [`Source`]'s inner reader, as it was.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(#[source] pub io::Error);

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(|e| {
            let typed = e
                .get_ref()
                .is_some_and(|i| i.is::<Interrupted>() || i.is::<LimitExceeded>());
            if typed {
                e
            } else {
                io::Error::new(e.kind(), SourceError(e))
            }
        })
    }
}

/// Whether `e`, from reading a tar through a [`Source`], is the tar
/// reader's complaint about malformed data rather than an error of the
/// source, an interruption or a limit.
pub fn is_malformed_tar(e: &ArchiveError) -> bool {
    let ArchiveError::Read(io) = e else {
        return false;
    };
    let kind_fits = matches!(
        io.kind(),
        io::ErrorKind::Other | io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
    );
    let typed = io
        .get_ref()
        .is_some_and(|i| i.is::<SourceError>() || i.is::<Interrupted>() || i.is::<LimitExceeded>());
    kind_fits && !typed
}
