//! Strata's devmapper driver: container layers as dm-thin snapshots.
//!
//! One thin pool per store (sparse loop files in the driver's home by
//! default, or block devices, or an existing pool). A base thin device gets
//! an ext4 or xfs filesystem once; every snapshot is a `create_snap` of its
//! parent's thin device, so prepare and commit cost the same whatever the
//! layer holds, and a write into a big file copies one pool block, not the
//! file.
//!
//! Start at [`DevmapperDriver`] (driver.rs). [`config`] parses the `dm.*`
//! options, `pool` sets up the pool and speaks its messages, `state` keeps
//! the crash-safe per-device records that `open` reconciles, and `sys` holds
//! every device-mapper ioctl (through the `devicemapper` crate: no
//! libdevmapper, no udev needed).

pub mod config;
mod driver;
mod error;
mod pool;
mod state;
mod sys;
pub mod units;

pub use config::Config;
pub use driver::{store_prefix, teardown, thin_id, DevmapperDriver};
pub use error::DmError;
pub use pool::{PoolStatus, DATA_FILE, METADATA_FILE};
pub use sys::dm_thin_available;
