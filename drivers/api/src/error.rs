//! The error every snapshot operation returns. Variants follow containerd's
//! errdefs so the gRPC plug-in can map them to status codes one to one.

use std::path::PathBuf;

/// Result alias for the driver interface.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of snapshot operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The snapshot (or its parent) does not exist.
    #[error("snapshot {0} does not exist")]
    NotFound(String),
    /// The key or name is already used.
    #[error("snapshot {0} already exists")]
    AlreadyExists(String),
    /// The operation is not allowed in the snapshot's current state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The request itself is malformed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The host lacks something the driver needs.
    #[error("driver {driver} is not supported here: {reason}")]
    Unsupported {
        /// Driver name.
        driver: String,
        /// What is missing.
        reason: String,
    },
    /// A filesystem or kernel call failed on a path or device.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`mkdir`, `mount`, `reflink`, ...).
        op: &'static str,
        /// The path or device involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An external command failed (mkfs, ...).
    #[error("{command} failed: {detail}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status and stderr.
        detail: String,
    },
    /// The metadata store failed (the store's database error is the source).
    #[error("metadata store: {source}")]
    Metadata {
        /// The database's own typed error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
        /// Whether the database found no room on the disk.
        out_of_space: bool,
    },
    /// A driver-specific failure; its source keeps the driver's own typed
    /// error (and through it any OS error, see [`Error::raw_os_error`]).
    #[error("{driver}: {source}")]
    Driver {
        /// Driver name.
        driver: &'static str,
        /// The driver's error, naming the object involved.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl Error {
    /// Builds an [`Error::Io`] for `op` on `path`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Builds an [`Error::Io`] from a nix errno.
    pub fn errno(op: &'static str, path: impl Into<PathBuf>, errno: nix::errno::Errno) -> Self {
        Self::io(op, path, std::io::Error::from(errno))
    }

    /// Whether the disk (or the thin pool or quota under it) is full: an
    /// I/O error `ENOSPC`/`EDQUOT`, or the metadata database finding no room.
    pub fn is_out_of_space(&self) -> bool {
        match self {
            Error::Metadata { out_of_space, .. } => *out_of_space,
            _ => matches!(self.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)),
        }
    }

    /// Wraps a driver's own error (or a message) as [`Error::Driver`].
    pub fn driver(
        driver: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Error::Driver {
            driver,
            source: source.into(),
        }
    }

    /// The OS error number behind this error, if any: of an I/O error, or
    /// of the first I/O error in a driver error's source chain.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            Error::Driver { source, .. } => {
                let mut next: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
                while let Some(e) = next {
                    if let Some(io) = e.downcast_ref::<std::io::Error>() {
                        return io.raw_os_error();
                    }
                    next = e.source();
                }
                None
            }
            _ => None,
        }
    }
}

/// Adds a path and operation to `std::io::Result`s.
pub trait IoContext<T> {
    /// Maps the error to [`Error::Io`] for `op` on `path`.
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e))
    }
}

impl<T> IoContext<T> for nix::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::errno(op, path, e))
    }
}
