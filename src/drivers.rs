//! The driver registry: opening a driver by name, and what `--driver auto`
//! picks on this host, with the reason.

use std::collections::BTreeMap;
use std::path::Path;

use strata_driver_api::{Driver, DriverConfig, Error};

/// Every driver name, in `auto`'s order of preference.
pub const DRIVER_NAMES: &[&str] = &["btrfs", "blockfile", "devmapper", "overlay2", "vfs"];

/// Opens driver `name` with its home directory and options.
pub fn open_driver(
    name: &str,
    home: &Path,
    options: &BTreeMap<String, String>,
) -> Result<Box<dyn Driver>, Error> {
    let config = DriverConfig { home, options };
    Ok(match name {
        "btrfs" => Box::new(strata_btrfs::BtrfsDriver::open(&config)?),
        "blockfile" => Box::new(strata_blockfile::BlockfileDriver::open(&config)?),
        "devmapper" => Box::new(strata_devmapper::DevmapperDriver::open(&config)?),
        "overlay2" => Box::new(strata_overlay2::Overlay2Driver::open(&config)?),
        "vfs" => Box::new(strata_vfs::VfsDriver::open(&config)?),
        other => {
            return Err(Error::InvalidArgument(format!(
                "unknown driver {other:?}; choose one of {}",
                DRIVER_NAMES.join(", ")
            )))
        }
    })
}

/// Whether the kernel lists filesystem `fs` in /proc/filesystems.
pub fn kernel_has_fs(fs: &str) -> bool {
    std::fs::read_to_string("/proc/filesystems")
        .map(|t| t.lines().any(|l| l.split_whitespace().last() == Some(fs)))
        .unwrap_or(false)
}

/// The driver `auto` picks for a store at `root` (which exists), and why.
pub fn choose_auto(root: &Path) -> (&'static str, String) {
    if strata_btrfs::home_is_btrfs(root) {
        return (
            "btrfs",
            "the store root is on btrfs: subvolume snapshots in place".into(),
        );
    }
    if strata_blockfile::supports_reflink(root) {
        return (
            "blockfile",
            "the store root is on a reflink-capable filesystem: reflinked image files in place"
                .into(),
        );
    }
    if strata_devmapper::dm_thin_available() {
        return (
            "devmapper",
            "the store root is on neither btrfs nor reflink xfs, and the kernel has dm-thin: thin snapshots in a loop-file pool".into(),
        );
    }
    match strata_btrfs::supported(root) {
        Ok(()) => (
            "btrfs",
            "the kernel has btrfs; the store root is not on btrfs or reflink xfs, so a loop-backed btrfs file is used".into(),
        ),
        Err(why) if kernel_has_fs("overlay") => ("overlay2", format!("no block CoW driver available ({why}); overlayfs is")),
        Err(why) => ("vfs", format!("neither btrfs ({why}) nor overlayfs is available")),
    }
}
