//! The shared conformance suite on devmapper, with a loop-file pool made by
//! the test. Needs dm-thin: run through `scripts/vm-test.sh` on hosts
//! without it.

mod common;

use std::sync::Arc;

use strata_driver_api::conformance::Fixture;
use strata_driver_api::Snapshots;

fn make(fs: &str) -> Option<Fixture> {
    if !common::prerequisites("devmapper conformance") {
        return None;
    }
    let store = common::Store::new("dm-conformance");
    let driver = common::open(
        store.home(),
        &common::small_pool(&[("dm.fs", fs), ("dm.basesize", "128M")]),
    )
    .expect("open driver");
    let db = strata_driver_api::db::Database::open(&store.scratch.path().join("meta.db"))
        .expect("open metadata database");
    let snapshots = Snapshots::open(driver, Arc::new(db)).expect("open snapshots");
    let common::Store { teardown, scratch } = store;
    Some(Fixture {
        snapshotter: Box::new(snapshots),
        keep: vec![Box::new(teardown)],
        scratch,
    })
}

/// ext4 on the base device (the default).
mod ext4 {
    use super::*;
    strata_driver_api::conformance_tests!(|| make("ext4"));
}
