//! Strata's driver interface.
//!
//! Start with [`Driver`]: the small trait each driver crate implements (create,
//! commit, remove storage by [`SnapshotId`], return [`Mount`] specs). Around it,
//! [`Snapshots`] gives any driver containerd's full snapshotter semantics
//! ([`Snapshotter`]): keys, parents, labels, kinds, filters, a transactional
//! metadata store (SQLite, shared by every process on the store) that records every intent before the kernel is
//! touched, and locking. [`mount`] performs mount specs. With the `testing`
//! and `conformance` features come loop-backed fixtures and the shared
//! conformance suite every driver's tests run.

mod driver;
mod error;
mod filter;
mod snapshotter;
mod types;

pub use driver::{Driver, DriverConfig, Target};
pub use error::{Error, IoContext, Result};
pub use filter::Filters;
pub use snapshotter::{Snapshotter, SnapshotterExt};
pub use types::*;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod db;
pub mod du;
pub mod failpoint;
mod fsinfo;
pub mod mount;
pub mod private;
pub mod reflink;
mod reserve;
pub mod scratch;
mod serialised;
pub mod session;
mod store;
mod sys;
#[cfg(feature = "testing")]
pub mod testing;

pub use failpoint::failpoint;
pub use fsinfo::{fs_type_name, kernel_has_fs, used_inodes};
pub use serialised::{Serialised, StepGuard, StepLock};
pub use session::Session;
pub use store::{Incomplete, Record, Snapshots, State};
