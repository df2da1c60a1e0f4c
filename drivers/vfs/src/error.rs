//! Errors specific to the vfs driver; they convert into the api's [`Error`].

use std::path::PathBuf;

use strata_driver_api::Error;

/// Failures only the vfs driver has.
#[derive(Debug, thiserror::Error)]
pub enum VfsError {
    /// The source of a copy is not a directory.
    #[error("copy source {0} is not a directory")]
    NotADirectory(PathBuf),
    /// A file type the copy cannot reproduce.
    #[error("cannot copy {path}: unknown file type (mode {mode:o})")]
    UnknownFileType {
        /// The file.
        path: PathBuf,
        /// Its st_mode.
        mode: u32,
    },
}

impl From<VfsError> for Error {
    fn from(e: VfsError) -> Self {
        Error::driver("vfs", e)
    }
}
