//! Errors specific to the blockfile driver; they convert into the interface's
//! [`strata_driver_api::Error`].

use std::path::PathBuf;

use strata_driver_api::Error;

/// The driver's own failures (I/O and commands use the interface's errors).
#[derive(Debug, thiserror::Error)]
pub enum BlockfileError {
    /// The image is still attached to a loop device (mounted somewhere).
    #[error("image {path} is still attached to {devices}; unmount it first")]
    Busy {
        /// The image file.
        path: PathBuf,
        /// The loop devices, comma separated.
        devices: String,
    },
    /// A per-snapshot size smaller than the parent's image.
    #[error("snapshot {id}: size {requested} is smaller than its parent image ({current} bytes); images only grow")]
    Shrink {
        /// Snapshot id.
        id: u64,
        /// Requested size, bytes.
        requested: u64,
        /// The parent image's size, bytes.
        current: u64,
    },
    /// A file that should be a snapshot image holds no known filesystem.
    #[error("image {0} holds neither ext4 nor xfs")]
    UnknownFs(PathBuf),
}

impl From<BlockfileError> for Error {
    fn from(e: BlockfileError) -> Self {
        match e {
            BlockfileError::Shrink { .. } => Error::InvalidArgument(e.to_string()),
            BlockfileError::Busy { .. } => Error::FailedPrecondition(e.to_string()),
            BlockfileError::UnknownFs(_) => Error::driver(crate::NAME, e),
        }
    }
}
