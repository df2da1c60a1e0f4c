//! The shared conformance suite against the vfs driver, on /tmp (ext4 here:
//! plain copies) and on a reflink-capable xfs loop filesystem. Needs root.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use strata_driver_api::conformance::Fixture;
use strata_driver_api::testing::{require_root, skip, LoopFs, ScratchDir};
use strata_driver_api::{DriverConfig, Snapshots};
use strata_vfs::VfsDriver;

/// A store whose vfs home is `<base>/vfs` and metadata `<base>/meta.db`.
fn store(base: &Path) -> Box<Snapshots<VfsDriver>> {
    let home = base.join("vfs");
    std::fs::create_dir_all(&home).expect("mkdir home");
    let options = BTreeMap::new();
    let driver = VfsDriver::open(&DriverConfig {
        home: &home,
        options: &options,
    })
    .expect("open vfs");
    let db = strata_driver_api::db::Database::open(&base.join("meta.db"))
        .expect("open metadata database");
    Box::new(Snapshots::open(driver, Arc::new(db)).expect("open store"))
}

fn make_fixture() -> Option<Fixture> {
    if !require_root("vfs conformance") {
        return None;
    }
    let scratch = ScratchDir::new("vfs-conformance");
    Some(Fixture {
        snapshotter: store(scratch.path()),
        keep: Vec::new(),
        scratch,
    })
}

strata_driver_api::conformance_tests!(make_fixture);

/// The same cases with the store on xfs, where every copy is a reflink.
mod on_xfs {
    use super::*;

    fn make_fixture() -> Option<Fixture> {
        if !require_root("vfs conformance on xfs") {
            return None;
        }
        let fs = match LoopFs::new("xfs", 1 << 30, &["-m", "reflink=1"]) {
            Ok(fs) => fs,
            Err(e) => {
                skip(
                    "vfs conformance on xfs",
                    &format!("no xfs loop filesystem: {e}"),
                );
                return None;
            }
        };
        Some(Fixture {
            snapshotter: store(fs.path()),
            keep: vec![Box::new(fs)],
            scratch: ScratchDir::new("vfs-conformance-xfs"),
        })
    }

    strata_driver_api::conformance_tests!(make_fixture);
}
