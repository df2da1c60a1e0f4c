//! Errors of the store and its operations. `anyhow` appears only in the CLI.

use std::path::PathBuf;

use crate::archive::ArchiveError;
use crate::image::ImageError;
use crate::interrupt::Interrupted;

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
    Database(#[from] crate::db::DbError),
    /// A metadata file or record is inconsistent.
    #[error("metadata store: {0}")]
    Metadata(String),
    /// `--root` holds no store yet.
    #[error("no Strata store at {} (run strata init)", .0.display())]
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
    /// Other strata processes have the store open (`strata release`).
    #[error("other strata processes use the store {root} (sessions {sessions}, named <pid>-<n>); release it when they have exited")]
    InUse {
        /// Store root.
        root: PathBuf,
        /// Their session ids.
        sessions: String,
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
    /// A layer an image was about to be recorded with is gone: another
    /// process removed it after this one found it (an `rmi` of the image
    /// that had it).
    #[error("layer {layer} of image {image} was removed by another strata process meanwhile; run the command again")]
    LayerRemoved {
        /// The layer's snapshot key.
        layer: String,
        /// The image id.
        image: String,
    },
    /// Bad user input.
    #[error("{0}")]
    Invalid(String),
    /// A signal stopped the operation at a safe point (see
    /// [`crate::interrupt`]); it carries what the rollback undid.
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
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

    /// The interruption behind this error: the error carries one (also
    /// inside an archive, image or I/O error), or a stop was requested
    /// before the operation failed (a signal can surface as some other
    /// error, e.g. a torn read).
    pub fn interruption(&self) -> Option<Interrupted> {
        let carried = match self {
            Self::Interrupted(i) => Some(i.clone()),
            Self::Archive(ArchiveError::Interrupted(i))
            | Self::Image(ImageError::Interrupted(i)) => Some(i.clone()),
            Self::Archive(
                ArchiveError::Io { source, .. }
                | ArchiveError::Read(source)
                | ArchiveError::Write(source),
            )
            | Self::Image(ImageError::Io { source, .. })
            | Self::Io { source, .. } => source
                .get_ref()
                .and_then(|e| e.downcast_ref::<Interrupted>())
                .cloned(),
            _ => None,
        };
        carried.or_else(|| crate::interrupt::requested().map(Interrupted::new))
    }

    /// Whether this error is (or follows) an interruption.
    pub fn is_interrupted(&self) -> bool {
        self.interruption().is_some()
    }

    /// Notes what a rollback undid when this error is an interruption
    /// (turning it into [`StoreError::Interrupted`]); other errors are
    /// returned as they are.
    pub fn undone(self, what: impl Into<String>) -> Self {
        match self.interruption() {
            Some(mut i) => {
                i.undone.push(what.into());
                Self::Interrupted(i)
            }
            None => self,
        }
    }
}
