//! Errors of the store and its operations. `anyhow` appears only in the CLI.

use std::path::PathBuf;

/// Result alias for store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A snapshot or driver operation failed.
    #[error(transparent)]
    Snapshot(#[from] strata_driver_api::Error),
    /// Reading or applying an archive failed.
    #[error(transparent)]
    Archive(#[from] crate::archive::ArchiveError),
    /// Applying one layer of an image archive failed (a hostile or corrupt
    /// tar, a limit): names the layer and its blob.
    #[error("{layer}: {source}")]
    Layer {
        /// The layer, e.g. `layer 2/3 blob sha256:.. of manifest sha256:..`.
        layer: String,
        /// What went wrong in its tar.
        #[source]
        source: crate::archive::ArchiveError,
    },
    /// Reading or writing an image archive failed.
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// The metadata database failed.
    #[error("metadata store: {0}")]
    Metadata(String),
    /// `--root` holds no store yet.
    #[error("no store at {0}: run `strata init` first")]
    NotInitialized(PathBuf),
    /// `strata init` on an existing store with a different driver.
    #[error(
        "store at {root} already uses driver {existing}; remove it or pick --driver {existing}"
    )]
    DriverMismatch {
        /// Store root.
        root: PathBuf,
        /// Driver recorded at init.
        existing: String,
    },
    /// Another process holds the store.
    #[error("store {root} is locked by another strata process{holder}; wait for it or stop it")]
    Locked {
        /// Store root.
        root: PathBuf,
        /// ` (pid N)` when known.
        holder: String,
    },
    /// No image matches a reference or id.
    #[error("no such image: {0}")]
    UnknownImage(String),
    /// No container matches an id or name.
    #[error("no such container: {0}")]
    UnknownContainer(String),
    /// More than one object matches an id prefix.
    #[error("{0} is ambiguous: give more characters of the id")]
    Ambiguous(String),
    /// A container is mounted and the operation needs it unmounted.
    #[error("container {id} is still mounted at {path}: run `strata umount {id}` first")]
    StillMounted {
        /// Container id.
        id: String,
        /// Mount point.
        path: PathBuf,
    },
    /// An image is used by containers.
    #[error("image {image} is used by container(s) {containers}: remove them first")]
    ImageInUse {
        /// Image reference.
        image: String,
        /// Short ids of the containers.
        containers: String,
    },
    /// A name is taken.
    #[error("{0} already exists")]
    Conflict(String),
    /// Bad user input.
    #[error("{0}")]
    Invalid(String),
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// Builds [`StoreError::Io`].
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Maps a redb (or other) failure to [`StoreError::Metadata`].
pub fn meta_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Metadata(e.to_string())
}
