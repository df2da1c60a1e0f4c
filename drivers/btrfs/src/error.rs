//! The driver's own errors; each converts into [`strata_driver_api::Error`].

use std::path::PathBuf;

/// Driver name used in converted errors.
pub const DRIVER: &str = "btrfs";

/// Errors of the btrfs driver.
#[derive(Debug, thiserror::Error)]
pub enum BtrfsError {
    /// A libbtrfsutil call failed on a subvolume.
    #[error("{op} {path}: {util} ({errno})")]
    Util {
        /// What was being done.
        op: &'static str,
        /// The subvolume path.
        path: PathBuf,
        /// libbtrfsutil's error.
        util: btrfsutil::BtrfsUtilError,
        /// The errno libbtrfsutil left behind (the typed cause).
        #[source]
        errno: std::io::Error,
    },
    /// A quota ioctl failed.
    #[error("{op} qgroup 0/{subvolid} on {path}: {source}")]
    Qgroup {
        /// What was being done.
        op: &'static str,
        /// Subvolume id of the qgroup.
        subvolid: u64,
        /// The filesystem.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl BtrfsError {
    /// Wraps a libbtrfsutil failure, capturing errno at once.
    pub fn util(op: &'static str, path: impl Into<PathBuf>, e: btrfsutil::BtrfsUtilError) -> Self {
        Self::Util {
            op,
            path: path.into(),
            util: e,
            errno: std::io::Error::last_os_error(),
        }
    }
}

impl From<BtrfsError> for strata_driver_api::Error {
    fn from(e: BtrfsError) -> Self {
        match e {
            BtrfsError::Qgroup {
                op, path, source, ..
            } => strata_driver_api::Error::io(op, path, source),
            e @ BtrfsError::Util { .. } => strata_driver_api::Error::driver(DRIVER, e),
        }
    }
}
