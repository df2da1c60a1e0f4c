//! The shared conformance suite on blockfile, with the store on an xfs
//! (reflink=1) loop filesystem made by the test.

mod common;

use std::sync::Arc;

use strata_driver_api::conformance::Fixture;
use strata_driver_api::testing::ScratchDir;
use strata_driver_api::Snapshots;

/// A fixture whose images hold `image_fs` filesystems of `size`.
fn make(image_fs: &str, size: &str) -> Option<Fixture> {
    if !common::prerequisites("blockfile conformance") {
        return None;
    }
    let fs = common::loop_fs("xfs", 8 << 30);
    let driver = common::open_driver(fs.path(), "home", &[("fs", image_fs), ("size", size)]);
    let scratch = ScratchDir::new("blockfile-conformance");
    let db = strata_driver_api::db::Database::open(&scratch.path().join("meta.db"))
        .expect("open metadata database");
    let snapshots = Snapshots::open(driver, Arc::new(db)).expect("open snapshots");
    Some(Fixture {
        snapshotter: Box::new(snapshots),
        keep: vec![Box::new(fs)],
        scratch,
    })
}

/// ext4 images (the default).
mod ext4 {
    use super::*;
    strata_driver_api::conformance_tests!(|| make("ext4", "64M"));
}

/// xfs images (`nouuid` mounts of clones).
mod xfs {
    use super::*;
    strata_driver_api::conformance_tests!(|| make("xfs", "320M"));
}
