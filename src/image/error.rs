//! Errors reading and writing image archives.

use std::io;
use std::path::PathBuf;

use crate::model::Digest;

/// Result type of the image module.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;

/// What went wrong with an image archive; every variant names the blob,
/// entry or file involved.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Reading or writing a file failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The file (or archive entry).
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The archive is not a tar (or compressed tar) at all.
    #[error("not a tar archive ({})", .path.display())]
    NotATar {
        /// The archive.
        path: PathBuf,
    },
    /// The archive has neither `index.json` nor `manifest.json`.
    #[error(
        "{path}: not an OCI image layout or docker save archive (no index.json or manifest.json); for a flat rootfs tar use `strata import {path} NAME[:TAG]`"
    )]
    NotAnImage {
        /// The archive.
        path: PathBuf,
    },
    /// A descriptor names a blob the archive does not contain.
    #[error("{what}: blob {digest} missing from the archive")]
    MissingBlob {
        /// Which reference (e.g. `layer 2 of manifest sha256:..`).
        what: String,
        /// The missing digest.
        digest: String,
    },
    /// Content does not hash to its descriptor's digest.
    #[error("{what}: digest mismatch: expected {expected}, content hashes to {actual}")]
    DigestMismatch {
        /// The blob (digest or path) and its role.
        what: String,
        /// Digest from the descriptor or config.
        expected: Digest,
        /// Digest of the bytes read.
        actual: Digest,
    },
    /// Content is not as long as its descriptor says.
    #[error("{what}: size mismatch: descriptor says {expected} bytes, found {actual}")]
    SizeMismatch {
        /// The blob and its role.
        what: String,
        /// Size from the descriptor.
        expected: u64,
        /// Bytes found.
        actual: u64,
    },
    /// A media type Strata cannot handle (encrypted layers, unknown types).
    #[error("{what}: unsupported media type {media_type:?}")]
    UnsupportedMediaType {
        /// The blob and its role.
        what: String,
        /// The media type.
        media_type: String,
    },
    /// A JSON document could not be parsed.
    #[error("{what}: invalid JSON: {source}")]
    Json {
        /// The document.
        what: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A signal stopped reading or writing at a safe point.
    #[error(transparent)]
    Interrupted(#[from] crate::interrupt::Interrupted),
    /// Anything else malformed, with the reason.
    #[error("{what}: {reason}")]
    Invalid {
        /// The document or blob.
        what: String,
        /// What is wrong.
        reason: String,
    },
}

impl ImageError {
    /// Builds an [`ImageError::Io`].
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ImageError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Builds an [`ImageError::Invalid`].
    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        ImageError::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// Finds an `ImageError` carried inside an `io::Error` (as the
    /// verifying readers report at end of stream).
    pub fn from_io(err: &io::Error) -> Option<&ImageError> {
        err.get_ref().and_then(|e| e.downcast_ref::<ImageError>())
    }
}
