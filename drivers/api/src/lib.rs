//! Strata's driver interface.
//!
//! Start with [`Driver`]: the small trait each driver crate implements (create,
//! commit, remove storage by [`SnapshotId`], return [`Mount`] specs), the
//! types around it and the typed [`Error`] every driver returns. Around it
//! come the host helpers drivers share: [`mount`] performs mount specs and
//! manages loop-file backing, [`private`] makes root-only files, [`reflink`],
//! [`du`], [`xattr`], [`scratch`] and [`failpoint`](mod@failpoint); [`options`] reads `--opt`
//! driver options into a driver's serde config. The metadata engine that gives a
//! driver containerd's snapshotter semantics lives in the `strata` crate.
//! With the `testing` feature (for tests only) come loud skips and
//! loop-backed fixtures.

mod driver;
mod error;
mod types;

pub use driver::{Driver, DriverConfig, Target};
pub use error::{Error, IoContext, Result};
pub use types::*;
pub mod du;
pub mod failpoint;
/// FIEMAP: a file's extents, which are shared and which not yet on disk.
pub mod fiemap {
    pub use crate::sys::{fiemap, Extent};
}
mod fsinfo;
pub mod mount;
pub mod options;
pub mod private;
pub mod reflink;
pub mod scratch;
mod sys;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tree;
pub mod xattr;

pub use failpoint::failpoint;
pub use fsinfo::{fs_capacity, fs_type_name, kernel_has_fs, sync_filesystem, used_inodes};
pub use options::{parse_options, OptionError};
