//! The blockfile driver: every snapshot is a filesystem image file
//! `<store>/images/<id>.img`: sparse, 10 GiB and xfs by default (ext4 with
//! `blockfile.fs=ext4`, and below xfs' 300 MiB minimum). A new image grows
//! when the create asks for more free room (`min_free`) than its parent has.
//!
//! - A base snapshot is a reflink clone of a scratch image formatted once
//!   (`scratch-<fs>-<size>.img`); a child is a reflink clone (FICLONE) of its
//!   parent's image, so prepare is O(1) whatever the image size. Where
//!   reflink fails the driver copies the data regions instead and says so in
//!   the log and in `status()`.
//! - [`Driver::mounts`](strata_driver_api::Driver::mounts) returns a `loop`
//!   mount of the image (`ro` for views and committed layers, `nouuid` for
//!   xfs); commit makes the image read-only (mode 0444).
//! - Usage is the space the image does not physically share with its parent
//!   (FIEMAP), not its apparent size.
//! - The images live in the home directory when its filesystem can reflink,
//!   otherwise in a loop-mounted xfs `<home>/backing.img` ([`backing`]).
//!
//! Start with [`BlockfileDriver`] in `driver.rs`; `image.rs` formats, clones,
//! grows and measures image files; `sys.rs` holds every ioctl.

mod backing;
mod config;
mod driver;
mod error;
mod image;
mod sys;

pub use backing::{supports_reflink, Backing};
pub use config::{BackingMode, Config, ImageFs};
pub use driver::BlockfileDriver;
pub use error::BlockfileError;
pub use sys::{fiemap, Extent};

/// The driver's name, as `--driver` takes it.
pub const NAME: &str = "blockfile";
