//! The driver registry: opening a driver by name, and what `--driver auto`
//! picks on this host, with the reason.

use std::collections::BTreeMap;
use std::path::Path;

use strata_driver_api::{Driver, DriverConfig, Error};

/// Every driver name, in `auto`'s order of preference.
pub const DRIVER_NAMES: &[&str] = &["btrfs", "blockfile", "devmapper", "overlay2", "vfs"];

/// Opens driver `name` with its home directory and options.
pub fn open_driver(name: &str, home: &Path, options: &BTreeMap<String, String>) -> Result<Box<dyn Driver>, Error> {
    let config = DriverConfig { home, options };
    Ok(match name {
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

/// The driver `auto` picks for a store at `root`, and why.
pub fn choose_auto(root: &Path) -> (&'static str, String) {
    let _ = root;
    if kernel_has_fs("overlay") {
        return ("overlay2", "the kernel has overlayfs".into());
    }
    ("vfs", "nothing better is available: no overlayfs".into())
}
