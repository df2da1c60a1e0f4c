//! The vfs driver: the simplest possible layer store, the baseline every other
//! driver is compared with.
//!
//! Each snapshot is a plain directory `<home>/dir/<id>`. Creating a snapshot
//! copies its nearest parent's directory in full with [`copy_tree`] (regular
//! files are reflinked with `FICLONE` where the filesystem allows, otherwise
//! copied sparsely); committing only records read-only-ness in
//! `<home>/readonly/<id>`. Mounts are one bind mount of the directory.
//!
//! Start with [`VfsDriver`] (driver.rs); the copy lives in copy.rs, every
//! syscall wrapper with `unsafe` in sys.rs.

mod config;
mod copy;
mod driver;
mod error;

pub use config::{Reflink, VfsConfig};
pub use copy::{copy_tree, copy_tree_with, CopyOptions, CopyStats};
pub use driver::VfsDriver;
pub use error::VfsError;
