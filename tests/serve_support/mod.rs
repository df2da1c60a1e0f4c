//! Shared fixtures for the serve tests: a vfs `Snapshots` store in a scratch
//! directory, served on a socket inside it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use strata::serve::{self, GrpcSnapshotter, ServerHandle};
use strata::snapshotter::{Snapshots, Snapshotter};
use strata_driver_api::testing::ScratchDir;
use strata_driver_api::DriverConfig;
use strata_vfs::VfsDriver;

/// A vfs store on `scratch/store`.
pub fn vfs_store(scratch: &ScratchDir) -> Arc<dyn Snapshotter> {
    let home = scratch.path().join("store/vfs");
    std::fs::create_dir_all(&home).expect("mkdir store");
    let options = BTreeMap::new();
    let driver = VfsDriver::open(&DriverConfig {
        home: &home,
        options: &options,
    })
    .expect("open vfs driver");
    let db = strata::db::Database::open(&scratch.path().join("store/meta.db"))
        .expect("open metadata database");
    Arc::new(Snapshots::open(driver, Arc::new(db)).expect("open store"))
}

/// Serves `store` on `scratch/strata.sock` and connects a client to it.
pub fn served(
    scratch: &ScratchDir,
    store: Arc<dyn Snapshotter>,
) -> (GrpcSnapshotter, ServerHandle) {
    let socket = scratch.path().join("strata.sock");
    let server = serve::spawn(store, &socket).expect("start server");
    let client = GrpcSnapshotter::connect(&socket).expect("connect client");
    (client, server)
}
