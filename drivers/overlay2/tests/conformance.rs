//! The shared conformance suite against the overlay2 driver, with its home
//! on /tmp (ext4 here) and on an xfs loop filesystem. Needs root.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use strata_driver_api::conformance::Fixture;
use strata_driver_api::testing::{require_root, skip, LoopFs, ScratchDir};
use strata_driver_api::{DriverConfig, Error, Snapshots};
use strata_overlay2::Overlay2Driver;

/// A store whose overlay2 home is `<base>/overlay2`, or `None` after a loud
/// skip when the host cannot run overlay2.
fn store(test: &str, base: &Path) -> Option<Box<Snapshots<Overlay2Driver>>> {
    let home = base.join("overlay2");
    std::fs::create_dir_all(&home).expect("mkdir home");
    let options = BTreeMap::new();
    let driver = match Overlay2Driver::open(&DriverConfig {
        home: &home,
        options: &options,
    }) {
        Ok(d) => d,
        Err(e @ Error::Unsupported { .. }) => {
            skip(test, &e.to_string());
            return None;
        }
        Err(e) => panic!("open overlay2: {e}"),
    };
    let db = strata_driver_api::db::Database::open(&base.join("meta.db"))
        .expect("open metadata database");
    Some(Box::new(
        Snapshots::open(driver, Arc::new(db)).expect("open store"),
    ))
}

fn make_fixture() -> Option<Fixture> {
    let test = "overlay2 conformance";
    if !require_root(test) {
        return None;
    }
    let scratch = ScratchDir::new("overlay2-conformance");
    Some(Fixture {
        snapshotter: store(test, scratch.path())?,
        keep: Vec::new(),
        scratch,
    })
}

strata_driver_api::conformance_tests!(make_fixture);

/// The same cases with the home on xfs.
mod on_xfs {
    use super::*;

    fn make_fixture() -> Option<Fixture> {
        let test = "overlay2 conformance on xfs";
        if !require_root(test) {
            return None;
        }
        let fs = match LoopFs::new("xfs", 1 << 30, &[]) {
            Ok(fs) => fs,
            Err(e) => {
                skip(test, &format!("no xfs loop filesystem: {e}"));
                return None;
            }
        };
        Some(Fixture {
            snapshotter: store(test, fs.path())?,
            keep: vec![Box::new(fs)],
            scratch: ScratchDir::new("overlay2-conformance-xfs"),
        })
    }

    strata_driver_api::conformance_tests!(make_fixture);
}
