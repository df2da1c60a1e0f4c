//! Errors of the applier and the differ.

use std::io;
use std::path::PathBuf;

/// Result type of the archive module.
pub type Result<T, E = ArchiveError> = std::result::Result<T, E>;

/// What went wrong while applying, diffing or writing a layer.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A filesystem operation failed on a path inside the root.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation, e.g. `mkdir`.
        op: &'static str,
        /// Path relative to the root (or the root itself).
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The tar stream itself could not be read (corrupt header, bad
    /// compression, I/O error of the reader).
    #[error("reading layer tar: {0}")]
    Read(#[source] io::Error),
    /// Writing the output tar failed.
    #[error("writing layer tar: {0}")]
    Write(#[source] io::Error),
    /// The layer is larger than a limit allows (see [`LimitExceeded`]).
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
    /// An entry's path would reach outside the root or is malformed.
    #[error("refusing tar entry \"{path}\": {reason}")]
    UnsafePath {
        /// The path as found in the archive.
        path: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A link's target would reach outside the root.
    #[error("refusing link \"{path}\" -> \"{target}\": {reason}")]
    UnsafeLink {
        /// The link's path as found in the archive.
        path: String,
        /// The link target as found in the archive.
        target: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The stream ended inside an entry's data.
    #[error(
        "truncated layer tar: entry \"{path}\" declares {declared} bytes, stream ended after {got}"
    )]
    Truncated {
        /// The entry's path.
        path: String,
        /// Size from the header.
        declared: u64,
        /// Bytes actually present.
        got: u64,
    },
    /// A signal stopped the walk or the copy at a safe point.
    #[error(transparent)]
    Interrupted(#[from] crate::interrupt::Interrupted),
    /// An entry type this applier does not handle.
    #[error("unsupported tar entry \"{path}\": type {kind:?}")]
    Unsupported {
        /// The entry's path.
        path: String,
        /// The tar type flag, as a character.
        kind: char,
    },
}

/// A layer tar over one of the size limits of
/// [`ApplyLimits`](super::ApplyLimits): refused before the excess is
/// allocated or written.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what}: {}{size} bytes is over {setting} of {limit} bytes", if *.exact { "" } else { "at least " })]
pub struct LimitExceeded {
    /// What is too big, naming the entry or part of the layer.
    pub what: String,
    /// Its size (or the size reached when it was refused).
    pub size: u64,
    /// The limit.
    pub limit: u64,
    /// Which limit, and how to set it.
    pub setting: String,
    /// Whether `size` is the full size (a declared size) rather than the
    /// point where reading stopped.
    pub exact: bool,
}

impl ArchiveError {
    /// Maps an error of the tar reader: a [`LimitExceeded`] raised by the
    /// guard becomes [`ArchiveError::Limit`], anything else
    /// [`ArchiveError::Read`].
    pub fn from_read(e: io::Error) -> Self {
        if e.get_ref().is_some_and(|i| i.is::<LimitExceeded>()) {
            if let Some(Ok(l)) = e.into_inner().map(|i| i.downcast::<LimitExceeded>()) {
                return ArchiveError::Limit(*l);
            }
            return ArchiveError::Read(io::Error::other("size limit exceeded"));
        }
        ArchiveError::Read(e)
    }

    /// Builds an [`ArchiveError::Io`].
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: impl Into<io::Error>) -> Self {
        ArchiveError::Io {
            op,
            path: path.into(),
            source: source.into(),
        }
    }
}
