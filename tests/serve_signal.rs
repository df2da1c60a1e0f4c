//! `serve_blocking` (what `strata serve` runs) stops cleanly on SIGTERM:
//! it returns Ok, removes its socket, and leaves snapshots for the next
//! start. Alone in its own test binary because it signals the process.

mod serve_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serve_support as common;
use strata::serve::{self, GrpcSnapshotter};
use strata::snapshotter::Snapshotter;
use strata_driver_api::testing::{require_root, ScratchDir};
use strata_driver_api::{Kind, Labels};

#[test]
fn sigterm_stops_serve_blocking_cleanly() {
    if !require_root("sigterm_stops_serve_blocking_cleanly") {
        return;
    }
    let scratch = ScratchDir::new("serve-sigterm");
    let store = common::vfs_store(&scratch);
    let socket = scratch.path().join("strata.sock");
    let server = {
        let (store, socket) = (Arc::clone(&store), socket.clone());
        std::thread::spawn(move || serve::serve_blocking(store, &socket))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let client = loop {
        if let Ok(c) = GrpcSnapshotter::connect(&socket) {
            break c;
        }
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    client.prepare(&"kept".into(), None, Labels::new()).unwrap();
    drop(client);

    nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM).unwrap();
    server
        .join()
        .expect("server thread")
        .expect("serve_blocking result");
    assert!(!socket.exists(), "socket left behind");
    assert_eq!(store.stat(&"kept".into()).unwrap().kind, Kind::Active);
}
