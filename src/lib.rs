//! Strata: container layers on copy-on-write block storage.
//!
//! Start at [`Store`] (a root directory with a driver and a metadata
//! database), then [`ops`] (the operations behind each CLI verb), [`model`]
//! (ids and records) and [`archive`] (layer tars in and out, safely). The
//! drivers live in their own crates under `drivers/`; [`drivers`] opens them
//! by name. The CLI is in `src/cli`.

pub mod archive;
pub mod bench;
pub mod check;
pub mod db;
pub mod drivers;
pub mod error;
pub mod image;
pub mod interrupt;
pub mod limits;
pub mod model;
pub mod mounts;
pub mod ops;
pub mod perms;
pub mod serve;
pub mod snapshotter;
pub mod space;
pub mod store;

pub use error::{Result, StoreError};
pub use store::Store;
pub use strata_driver_api::now_ns;
