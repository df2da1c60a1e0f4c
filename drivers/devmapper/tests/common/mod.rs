//! Shared fixtures of the devmapper tests: prerequisites (root, dm-thin,
//! mkfs), a driver on loop files in a scratch directory, and a guard that
//! tears the store's devices down even when a test panics.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use strata_devmapper::{dm_thin_available, teardown, DevmapperDriver};
use strata_driver_api::testing::{require_program, require_root, skip, ScratchDir};
use strata_driver_api::DriverConfig;

/// Whether the devmapper tests can run here; skips `test` loudly otherwise.
pub fn prerequisites(test: &str) -> bool {
    if !require_root(test) {
        return false;
    }
    if !dm_thin_available() {
        skip(
            test,
            "no dm-thin here (/dev/mapper/control or the thin-pool target is missing); run scripts/vm-test.sh",
        );
        return false;
    }
    ["mkfs.ext4", "debugfs", "e2fsck", "resize2fs"]
        .iter()
        .all(|p| require_program(test, p))
}

/// Options for a small pool suited to a test VM.
pub fn small_pool(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut opts: BTreeMap<String, String> = [
        ("dm.data_size", "1G"),
        ("dm.basesize", "128M"),
        ("dm.autoextend_threshold", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        opts.insert(k.to_string(), v.to_string());
    }
    opts
}

/// Opens the driver with its home at `home`.
pub fn open(
    home: &Path,
    opts: &BTreeMap<String, String>,
) -> strata_driver_api::Result<DevmapperDriver> {
    std::fs::create_dir_all(home).expect("mkdir home");
    DevmapperDriver::open(&DriverConfig {
        home,
        options: opts,
    })
}

/// Tears the store in `home` down on drop (devices, pool, loops).
pub struct Teardown(pub PathBuf);

impl Drop for Teardown {
    fn drop(&mut self) {
        if let Err(e) = teardown(&self.0) {
            eprintln!("teardown of {}: {e}", self.0.display());
        }
    }
}

/// A scratch directory with a driver home inside and its teardown guard.
pub struct Store {
    pub teardown: Teardown,
    pub scratch: ScratchDir,
}

impl Store {
    pub fn new(tag: &str) -> Self {
        let scratch = ScratchDir::new(tag);
        let home = scratch.path().join("home");
        std::fs::create_dir_all(&home).expect("mkdir home");
        Self {
            teardown: Teardown(home),
            scratch,
        }
    }

    pub fn home(&self) -> &Path {
        &self.teardown.0
    }
}
