//! The btrfs driver: every snapshot is a btrfs subvolume.
//!
//! Start with [`BtrfsDriver`] (driver.rs). Layout: the filesystem is the
//! home itself when it is on btrfs, else the sparse loop file
//! `<home>/btrfs.img` mounted at `<home>/mnt` ([`backing`]). Snapshot `id` is
//! the subvolume `<fs>/snapshots/<id>`:
//!
//! - prepare with a parent: writable snapshot of the parent's subvolume;
//!   without: a new empty subvolume (root mode 0755);
//! - view: read-only snapshot; commit: the read-only flag (O(1));
//! - remove: deletes the subvolume and those nested in it, and returns.
//!   Their qgroups go once btrfs' cleaner has dropped the subvolumes: Linux
//!   6.10 and later remove them then; on older kernels remove records the ids
//!   durably first ([`pending`]) and a background thread destroys them
//!   (`btrfs.qgroup_cleanup`, [`quota::Cleanup`]);
//! - mounts: `btrfs` on the backing device with `subvolid=<n>` (`ro` unless
//!   active), so a caller can mount it anywhere, in any mount namespace that
//!   sees the device;
//! - sizes: qgroup limit on exclusive bytes of `0/<subvolid>` (EDQUOT beyond);
//! - usage: exclusive bytes of the qgroup (simple quotas where the kernel has
//!   them, else full qgroups), read after a transaction commit; a tree walk
//!   when quotas are off ([`quota`], [`walk`]).
//!
//! libbtrfsutil (the `btrfsutil` crate) does the subvolume work; quota
//! control, limits, qgroup numbers and nested-subvolume listing are ioctls in
//! [`sys`].

pub mod backing;
pub mod config;
mod driver;
pub mod error;
pub mod pending;
pub mod quota;
mod reclaim;
pub mod sys;

pub use config::{BtrfsConfig, CleanupSetting, QuotaSetting};
pub use driver::{home_is_btrfs, supported, BtrfsDriver, SNAPSHOTS_DIR};
pub use error::BtrfsError;
pub use quota::QuotaMode;
