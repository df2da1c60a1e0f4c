//! The devmapper driver's errors, each naming the device, thin id or file
//! involved. They convert into the driver interface's [`strata_driver_api::Error`].

use std::path::PathBuf;

/// Result alias inside the crate.
pub type Result<T, E = DmError> = std::result::Result<T, E>;

/// Failures of the devmapper driver.
#[derive(Debug, thiserror::Error)]
pub enum DmError {
    /// A device-mapper ioctl failed.
    #[error("{op} {device}: {source}")]
    Ioctl {
        /// What was being done (`create`, `load table`, `message`, ...).
        op: &'static str,
        /// The device-mapper device name.
        device: String,
        /// The error from the devicemapper crate.
        #[source]
        source: devicemapper::DmError,
    },
    /// A pool message (create_thin, create_snap, delete, ...) failed.
    #[error("pool {pool}: message {message:?} failed: {source}")]
    Message {
        /// Pool device name.
        pool: String,
        /// The message sent.
        message: String,
        /// The error from the devicemapper crate.
        #[source]
        source: devicemapper::DmError,
    },
    /// The pool has less free space than `dm.min_free_space` allows.
    #[error("pool {pool}: only {free_pct:.1}% of data space free ({free} bytes), below dm.min_free_space={min_pct}%; grow the pool or remove snapshots")]
    NoSpace {
        /// Pool device name.
        pool: String,
        /// Free data space in percent.
        free_pct: f64,
        /// Free data bytes.
        free: u64,
        /// The floor.
        min_pct: u8,
    },
    /// The pool or a device reported a status that could not be parsed, or
    /// is in a state that forbids the operation.
    #[error("{device}: {message}")]
    State {
        /// The device name.
        device: String,
        /// What is wrong.
        message: String,
    },
    /// A state record could not be read or written.
    #[error("state record {path}: {message}")]
    Record {
        /// The record file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The snapshot id does not fit in a 24-bit thin device id.
    #[error("snapshot id {0} does not fit in a thin device id (< 2^24 - 1)")]
    IdRange(u64),
    /// The interface's error (mounts, loop devices, commands, files).
    #[error(transparent)]
    Api(#[from] strata_driver_api::Error),
}

impl DmError {
    /// The errno behind a failed ioctl, if any.
    pub fn errno(&self) -> Option<nix::errno::Errno> {
        let source = match self {
            DmError::Ioctl { source, .. } | DmError::Message { source, .. } => source,
            _ => return None,
        };
        errno_of(source)
    }
}

/// The errno inside a devicemapper crate error.
pub fn errno_of(e: &devicemapper::DmError) -> Option<nix::errno::Errno> {
    match e {
        devicemapper::DmError::Core(devicemapper::errors::Error::Ioctl(_, _, _, errno)) => {
            Some(**errno)
        }
        _ => None,
    }
}

impl From<DmError> for strata_driver_api::Error {
    fn from(e: DmError) -> Self {
        match e {
            DmError::Api(inner) => inner,
            DmError::IdRange(_) => strata_driver_api::Error::InvalidArgument(e.to_string()),
            other => strata_driver_api::Error::driver("devmapper", other),
        }
    }
}

/// Shorthand for an [`DmError::Record`].
pub fn record_err(path: impl Into<PathBuf>, message: impl ToString) -> DmError {
    DmError::Record {
        path: path.into(),
        message: message.to_string(),
    }
}
