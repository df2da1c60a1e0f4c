//! OCI image layout and `docker save` archives, without the store.
//!
//! [`ImageArchive::open`] reads either format (the outer file may be plain,
//! gzip or zstd), lists its images with tags, config bytes and layers in
//! order, and opens each layer as an uncompressed stream that verifies the
//! blob's sha256 and the config's diff id as it is read.
//! [`write_oci_archive`] writes an OCI layout archive with a docker-style
//! `manifest.json` beside `index.json`, so `docker load` and
//! `ctr image import` both accept it.

mod error;
mod read;
mod spec;
mod verify;
mod write;

pub use error::{ImageError, Result};
pub use read::{ArchiveImage, ArchiveLayer, ImageArchive, LayerReader};
pub use spec::media;
pub use write::{normalize_ref, write_oci_archive, ImageToSave, SaveOptions};
