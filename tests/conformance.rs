//! The shared conformance suite against every driver under the store's
//! metadata (`Snapshots`): vfs and overlay2 on /tmp and on xfs, btrfs on a
//! loop filesystem the driver makes, blockfile with ext4 and xfs images on
//! a reflink xfs, and devmapper on a loop-file pool (needs dm-thin: its
//! cases are ignored on the host and run in the VM tier,
//! `scripts/vm-test.sh`). Needs root.

#[macro_use]
mod conformance_suite;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use conformance_suite::Fixture;
use strata::db::Database;
use strata::snapshotter::{Snapshots, Snapshotter};
use strata_driver_api::testing::{require_program, require_root, skip, LoopFs, ScratchDir};
use strata_driver_api::{Driver, DriverConfig, Error, Result};

/// Options from `(key, value)` pairs.
fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Opens a driver through `open` with its home at `home` (made here).
fn open_driver<D>(
    open: fn(&DriverConfig<'_>) -> Result<D>,
    home: &Path,
    options: &BTreeMap<String, String>,
) -> Result<D> {
    std::fs::create_dir_all(home).expect("mkdir home");
    open(&DriverConfig { home, options })
}

/// `driver` under the metadata database `db`.
fn snapshots<D: Driver + 'static>(driver: D, db: &Path) -> Box<dyn Snapshotter> {
    let db = Database::open(db).expect("open metadata database");
    Box::new(Snapshots::open(driver, Arc::new(db)).expect("open snapshots"))
}

/// The driver opened by `open`, or `None` after a loud skip when the host
/// cannot run it.
fn supported<D>(test: &str, opened: Result<D>) -> Option<D> {
    match opened {
        Ok(driver) => Some(driver),
        Err(e @ Error::Unsupported { .. }) => {
            skip(test, &e.to_string());
            None
        }
        Err(e) => panic!("{test}: open driver: {e}"),
    }
}

/// An xfs loop filesystem with reflinks, or `None` after a loud skip.
fn reflink_xfs(test: &str) -> Option<LoopFs> {
    match LoopFs::new("xfs", 8 << 30, &["-m", "reflink=1"]) {
        Ok(fs) => Some(fs),
        Err(e) => {
            skip(test, &format!("no xfs loop filesystem: {e}"));
            None
        }
    }
}

/// A fixture for a driver that needs only a home, `<base>/<name>`, with
/// the base on `/tmp` or on a reflink xfs.
fn home_fixture<D: Driver + 'static>(
    test: &str,
    name: &str,
    on_xfs: bool,
    open: fn(&DriverConfig<'_>) -> Result<D>,
) -> Option<Fixture> {
    if !require_root(test) {
        return None;
    }
    let fs = if on_xfs {
        Some(reflink_xfs(test)?)
    } else {
        None
    };
    let scratch = ScratchDir::new(&format!("{name}-conformance"));
    let base = fs
        .as_ref()
        .map_or(scratch.path(), |fs| fs.path())
        .to_owned();
    let driver = supported(test, open_driver(open, &base.join(name), &BTreeMap::new()))?;
    Some(Fixture {
        snapshotter: snapshots(driver, &base.join("meta.db")),
        keep: fs.into_iter().map(|fs| Box::new(fs) as _).collect(),
        scratch,
    })
}

/// On /tmp (ext4 here: plain copies) and on xfs, where every copy is a reflink.
#[cfg(feature = "vfs")]
mod vfs {
    use strata_vfs::VfsDriver;

    conformance_tests!(|| super::home_fixture("vfs conformance", "vfs", false, VfsDriver::open));

    /// The same cases with the store on xfs.
    mod on_xfs {
        use strata_vfs::VfsDriver;

        conformance_tests!(|| super::super::home_fixture(
            "vfs conformance on xfs",
            "vfs",
            true,
            VfsDriver::open
        ));
    }
}

/// With the home on /tmp and on xfs.
#[cfg(feature = "overlay2")]
mod overlay2 {
    use strata_overlay2::Overlay2Driver;

    conformance_tests!(|| super::home_fixture(
        "overlay2 conformance",
        "overlay2",
        false,
        Overlay2Driver::open
    ));

    /// The same cases with the home on xfs.
    mod on_xfs {
        use strata_overlay2::Overlay2Driver;

        conformance_tests!(|| super::super::home_fixture(
            "overlay2 conformance on xfs",
            "overlay2",
            true,
            Overlay2Driver::open
        ));
    }
}

/// On a loop-backed btrfs made by the driver in a scratch home (quotas on).
#[cfg(feature = "btrfs")]
mod btrfs {
    use super::*;
    use strata_btrfs::BtrfsDriver;

    fn make() -> Option<Fixture> {
        let test = "btrfs conformance";
        if !require_root(test) || !require_program(test, "mkfs.btrfs") {
            return None;
        }
        let scratch = ScratchDir::new("btrfs-conf");
        let opts = options(&[("btrfs.size", "1G")]);
        let driver = open_driver(BtrfsDriver::open, &scratch.path().join("home"), &opts);
        Some(Fixture {
            snapshotter: snapshots(driver.expect("open btrfs"), &scratch.path().join("meta.db")),
            keep: Vec::new(),
            scratch,
        })
    }

    conformance_tests!(make);
}

/// With the store on a reflink xfs made by the test.
#[cfg(feature = "blockfile")]
mod blockfile {
    use super::*;
    use strata_blockfile::BlockfileDriver;

    /// A fixture whose images hold `image_fs` filesystems of `size`.
    fn make(image_fs: &str, size: &str) -> Option<Fixture> {
        let test = "blockfile conformance";
        let tools = [
            "mkfs.xfs",
            "mkfs.ext4",
            "debugfs",
            "resize2fs",
            "xfs_growfs",
        ];
        if !require_root(test) || !tools.iter().all(|p| require_program(test, p)) {
            return None;
        }
        let fs = reflink_xfs(test)?;
        let opts = options(&[("blockfile.fs", image_fs), ("blockfile.size", size)]);
        let driver = open_driver(BlockfileDriver::open, &fs.path().join("home"), &opts);
        let scratch = ScratchDir::new("blockfile-conformance");
        Some(Fixture {
            snapshotter: snapshots(
                driver.expect("open blockfile"),
                &scratch.path().join("meta.db"),
            ),
            keep: vec![Box::new(fs)],
            scratch,
        })
    }

    /// ext4 images (the default).
    mod ext4 {
        conformance_tests!(|| super::make("ext4", "64M"));
    }

    /// xfs images (`nouuid` mounts of clones).
    mod xfs {
        conformance_tests!(|| super::make("xfs", "320M"));
    }
}

/// On a loop-file pool made by the test. Needs dm-thin: ignored on the
/// host, run by `scripts/vm-test.sh` (`--include-ignored devmapper`).
#[cfg(feature = "devmapper")]
mod devmapper {
    use super::*;
    use std::path::PathBuf;
    use strata_devmapper::{dm_thin_available, teardown, DevmapperDriver};

    /// Tears the store in its home down on drop (devices, pool, loops).
    struct Teardown(PathBuf);

    impl Drop for Teardown {
        fn drop(&mut self) {
            if let Err(e) = teardown(&self.0) {
                eprintln!("teardown of {}: {e}", self.0.display());
            }
        }
    }

    /// A fixture whose thin devices hold `fs` filesystems.
    fn make(fs: &str) -> Option<Fixture> {
        let test = "devmapper conformance";
        if !require_root(test) {
            return None;
        }
        if !dm_thin_available() {
            skip(test, "no dm-thin here: run scripts/vm-test.sh");
            return None;
        }
        let tools = ["mkfs.ext4", "debugfs", "e2fsck", "resize2fs"];
        if !tools.iter().all(|p| require_program(test, p)) {
            return None;
        }
        let scratch = ScratchDir::new("dm-conformance");
        let home = scratch.path().join("home");
        let teardown = Teardown(home.clone());
        let opts = options(&[
            ("dm.data_size", "1G"),
            ("dm.basesize", "128M"),
            ("dm.autoextend_threshold", "0"),
            ("dm.fs", fs),
        ]);
        let driver = open_driver(DevmapperDriver::open, &home, &opts).expect("open devmapper");
        Some(Fixture {
            snapshotter: snapshots(driver, &scratch.path().join("meta.db")),
            keep: vec![Box::new(teardown)],
            scratch,
        })
    }

    /// ext4 on the base device (the default).
    mod ext4 {
        conformance_tests!(
            || super::make("ext4"),
            #[ignore = "needs dm-thin: runs in the VM tier"]
        );
    }
}
