//! Fixtures shared by the blockfile tests: a driver home on a loop-mounted
//! filesystem made by the test, and helpers to look inside images.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use strata_blockfile::BlockfileDriver;
use strata_driver_api::mount::{mount_all, unmount};
use strata_driver_api::testing::{require_program, require_root, LoopFs, ScratchDir};
use strata_driver_api::{DriverConfig, Mount};

/// Whether `test` can run: root plus the tools the driver calls.
pub fn prerequisites(test: &str) -> bool {
    require_root(test)
        && [
            "mkfs.xfs",
            "mkfs.ext4",
            "debugfs",
            "resize2fs",
            "xfs_growfs",
        ]
        .iter()
        .all(|p| require_program(test, p))
}

/// A loop filesystem of `fstype` (xfs gets `-m reflink=1`).
pub fn loop_fs(fstype: &str, size: u64) -> LoopFs {
    let args: &[&str] = if fstype == "xfs" {
        &["-m", "reflink=1"]
    } else {
        &[]
    };
    LoopFs::new(fstype, size, args).expect("loop filesystem")
}

/// Opens a driver in `<fs>/<name>` with `blockfile.KEY=VALUE` options.
pub fn open_driver(fs: &Path, name: &str, options: &[(&str, &str)]) -> BlockfileDriver {
    let home = fs.join(name);
    std::fs::create_dir_all(&home).expect("mkdir home");
    let options: BTreeMap<String, String> = options
        .iter()
        .map(|(k, v)| (format!("blockfile.{k}"), (*v).to_owned()))
        .collect();
    BlockfileDriver::open(&DriverConfig {
        home: &home,
        options: &options,
    })
    .expect("open blockfile driver")
}

/// A mounted snapshot, unmounted on drop.
pub struct Mounted {
    path: PathBuf,
}

impl Mounted {
    /// Mounts `mounts` on a fresh directory in `scratch`.
    pub fn new(mounts: &[Mount], scratch: &ScratchDir, name: &str) -> Self {
        let path = scratch.path().join(name);
        std::fs::create_dir_all(&path).expect("mkdir mount point");
        mount_all(mounts, &path).expect("mount snapshot");
        Self { path }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = unmount(&self.path) {
            eprintln!("unmount {}: {e}", self.path.display());
        }
    }
}
