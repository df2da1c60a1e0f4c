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
        #[cfg(feature = "btrfs")]
        "btrfs" => Box::new(strata_btrfs::BtrfsDriver::open(&config)?),
        #[cfg(feature = "blockfile")]
        "blockfile" => Box::new(strata_blockfile::BlockfileDriver::open(&config)?),
        #[cfg(feature = "devmapper")]
        "devmapper" => Box::new(strata_devmapper::DevmapperDriver::open(&config)?),
        #[cfg(feature = "overlay2")]
        "overlay2" => Box::new(strata_overlay2::Overlay2Driver::open(&config)?),
        #[cfg(feature = "vfs")]
        "vfs" => Box::new(strata_vfs::VfsDriver::open(&config)?),
        other if DRIVER_NAMES.contains(&other) => {
            return Err(Error::Unsupported {
                driver: other.to_owned(),
                reason: format!("this strata was built without the {other} feature"),
            })
        }
        other => {
            let _ = &config;
            return Err(Error::InvalidArgument(format!(
                "unknown driver {other:?}; choose one of {}",
                DRIVER_NAMES.join(", ")
            )));
        }
    })
}

/// Whether the kernel lists filesystem `fs` in /proc/filesystems.
pub fn kernel_has_fs(fs: &str) -> bool {
    strata_driver_api::kernel_has_fs(fs).unwrap_or(false)
}

/// The driver `auto` picks for a store at `root` (which exists), and why.
pub fn choose_auto(root: &Path) -> (&'static str, String) {
    #[cfg(feature = "btrfs")]
    if strata_btrfs::home_is_btrfs(root) {
        return (
            "btrfs",
            "the store root is on btrfs: subvolume snapshots in place".into(),
        );
    }
    #[cfg(feature = "blockfile")]
    if strata_blockfile::supports_reflink(root) {
        return (
            "blockfile",
            "the store root is on a reflink-capable filesystem: reflinked image files in place"
                .into(),
        );
    }
    #[cfg(feature = "devmapper")]
    if strata_devmapper::dm_thin_available() {
        return (
            "devmapper",
            "the store root is on neither btrfs nor reflink xfs, and the kernel has dm-thin: thin snapshots in a loop-file pool".into(),
        );
    }
    #[cfg(feature = "btrfs")]
    let why = match strata_btrfs::supported(root) {
        Ok(()) => return (
            "btrfs",
            "the kernel has btrfs; the store root is not on btrfs or reflink xfs, so a loop-backed btrfs file is used".into(),
        ),
        Err(why) => why,
    };
    #[cfg(not(feature = "btrfs"))]
    let why = {
        let _ = root;
        "this build has no btrfs driver".to_owned()
    };
    if cfg!(feature = "overlay2") && kernel_has_fs("overlay") {
        (
            "overlay2",
            format!("no block CoW driver available ({why}); overlayfs is"),
        )
    } else {
        (
            "vfs",
            format!("neither btrfs ({why}) nor overlayfs is available"),
        )
    }
}
