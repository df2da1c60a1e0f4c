//! Layer tars in and out of a directory: the applier and the differ.
//!
//! Everything here works on plain directories (a mounted snapshot), readers
//! and writers, so it knows nothing about the store or the drivers beyond one
//! flag ([`ApplyOptions::overlay_whiteouts`]).
//!
//! - [`apply_layer`] unpacks an uncompressed layer tar into a root directory.
//!   The tar is untrusted: every path is resolved inside the root with
//!   `openat2(RESOLVE_IN_ROOT)` and entries are created with `*at()` calls
//!   relative to resolved parent directories (see [`sys`](self) internals).
//!   A guard in front of the `tar` crate caps header sizes, the layer's
//!   expanded size and trailing data, and writes GNU sparse entries as
//!   holes without expanding them ([`ApplyLimits`]).
//! - [`decompress`] detects gzip / zstd / plain streams by magic bytes.
//! - [`changes`] and [`changes_overlay`] compute docker-style A/C/D changes.
//! - [`write_layer`] and [`write_tree`] write reproducible tars.

mod apply;
mod beneath;
mod changes;
mod compress;
mod error;
mod format;
mod guard;
mod path;
mod sys;
mod write;
mod zeros;

pub use apply::{apply_layer, ApplyOptions, ApplyStats};
pub use beneath::{apply_beneath, apply_staged_beneath, find_in_root, write_beneath, Found};
pub use changes::{changes, changes_overlay, Change, ChangeKind};
pub use compress::{decompress, detect_compression, Compression};
pub use error::{ArchiveError, LimitExceeded, Result};
pub use format::{is_malformed_tar, Source, SourceError};
pub(crate) use guard::Guard;
pub use guard::{ApplyLimits, DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_TRAILING_BYTES};
pub use path::escape_name;
pub use write::{write_layer, write_tree};
pub(crate) use zeros::is_zero;

/// Prefix of an OCI whiteout file name: `.wh.NAME` deletes `NAME`.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of the OCI opaque-directory marker.
pub const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";
/// Xattr overlayfs uses to mark an opaque directory.
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
