//! The shared conformance suite on a loop-backed btrfs made by the driver in
//! a scratch home (quotas on).

use std::collections::BTreeMap;
use std::sync::Arc;

use strata_btrfs::BtrfsDriver;
use strata_driver_api::conformance::Fixture;
use strata_driver_api::testing::{require_program, require_root, ScratchDir};
use strata_driver_api::{DriverConfig, Snapshots};

fn make() -> Option<Fixture> {
    if !require_root("btrfs conformance") || !require_program("btrfs conformance", "mkfs.btrfs") {
        return None;
    }
    let scratch = ScratchDir::new("btrfs-conf");
    let home = scratch.path().join("home");
    std::fs::create_dir(&home).expect("mkdir home");
    let options = BTreeMap::from([("btrfs.size".to_owned(), "1G".to_owned())]);
    let driver = BtrfsDriver::open(&DriverConfig {
        home: &home,
        options: &options,
    })
    .expect("open btrfs driver");
    let db = strata_driver_api::db::Database::open(&scratch.path().join("meta.db"))
        .expect("open metadata database");
    let snapshots = Snapshots::open(driver, Arc::new(db)).expect("open store");
    Some(Fixture {
        snapshotter: Box::new(snapshots),
        keep: Vec::new(),
        scratch,
    })
}

strata_driver_api::conformance_tests!(make);
