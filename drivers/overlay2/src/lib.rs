//! The overlay2 driver: container layers as overlayfs directories, the way
//! Docker's overlay2 and containerd's overlayfs snapshotter keep them.
//!
//! Each snapshot owns `<home>/snapshots/<id>/fs` (its upper directory, i.e.
//! exactly its own changes, with whiteouts in overlayfs' form) and `work`
//! (overlayfs' work directory). `<home>/l/<short>` is a short symlink to the
//! `fs` directory, so lowerdir lists stay short. Mounts are a bind mount for
//! a single layer and an `overlay` mount otherwise, lowerdir nearest first.
//!
//! Start with [`Overlay2Driver`] (driver.rs); layout and link names are in
//! layout.rs, the host checks (probe mount, module parameters) in sys.rs,
//! project quotas (size limits, usage without a walk) in quota.rs.

mod config;
mod driver;
mod error;
mod layout;
mod quota;
mod quota_sys;
mod spec;
mod sys;

pub use config::Overlay2Config;
pub use driver::{Overlay2Driver, MAX_LAYERS};
pub use error::Overlay2Error;
pub use layout::{link_name, parse_link_name};
