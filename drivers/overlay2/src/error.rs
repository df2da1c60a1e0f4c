//! Errors specific to the overlay2 driver; they convert into the api's [`Error`].

use strata_driver_api::Error;

/// Failures only the overlay2 driver has.
#[derive(Debug, thiserror::Error)]
pub enum Overlay2Error {
    /// The host cannot run overlay2.
    #[error("{0}")]
    Unsupported(String),
    /// A snapshot's directory is missing.
    #[error("storage of snapshot {id} is missing: {path}")]
    Missing {
        /// Snapshot id.
        id: u64,
        /// Expected directory.
        path: String,
    },
    /// A snapshot directory's inode number does not fit a project id.
    #[error("cannot give {path} a project quota: its inode number {ino} is above 2^32")]
    ProjectId {
        /// The snapshot directory.
        path: String,
        /// Its inode number.
        ino: u64,
    },
}

impl From<Overlay2Error> for Error {
    fn from(e: Overlay2Error) -> Self {
        match e {
            Overlay2Error::Unsupported(reason) => Error::Unsupported {
                driver: "overlay2".into(),
                reason,
            },
            other => Error::driver("overlay2", other),
        }
    }
}
